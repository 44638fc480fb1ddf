"""Running blocking SQLAlchemy work from aiohttp handlers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def run_db(func: Callable[[], T]) -> T:
    return await asyncio.to_thread(func)
