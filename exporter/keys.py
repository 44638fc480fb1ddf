"""Typed application state keys shared by the service's modules."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.engine import Engine

from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.timeutil import Clock, utcnow

SETTINGS = web.AppKey("settings", Settings)
ROLLUP = web.AppKey("rollup", Engine)  # read-only use: the service never writes rollups
SOURCE = web.AppKey("source", Engine)  # live-* endpoints only
CLOCK: web.AppKey[Clock] = web.AppKey("clock", type(utcnow))
