"""The API's cache: Redis when configured, an in-process TTL cache otherwise.

`ResilientCache` is what the handlers use. Any Redis failure is logged (once per outage) and
counted as a cache error; the request then goes to the database. After a failure Redis is left
alone for `retry_seconds`, then tried again automatically, so an outage costs one failed call
per period, not one per request.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Protocol

from aiohttp import web

from dashboard_metrics.core.db import first_line
from dashboard_metrics.exporter.stats import ServiceStats

log = logging.getLogger("dashboard_metrics.cache")


class Backend(Protocol):
    name: str

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]: ...

    async def setex_many(self, items: Sequence[tuple[str, int, bytes]]) -> None: ...

    async def ping(self) -> None: ...

    def generation_passed(self) -> None:
        """The aggregator moved on: entries of past generations can never be hit again."""

    async def close(self) -> None: ...


DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # both in-process layers together (see `ResilientCache`)
# What an entry costs beyond its key and value: the dict slot, the tuple, the float, headers.
ENTRY_OVERHEAD = 200


class MemoryBackend:
    """Same interface and TTL semantics as Redis, bounded in bytes (least recently used go
    first) and emptied when the aggregator's generation moves on."""

    name = "memory"

    def __init__(
        self,
        max_bytes: int = DEFAULT_MAX_BYTES // 2,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes
        self._monotonic = monotonic

    @property
    def size(self) -> int:
        """Bytes held, as counted against the bound."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        now = self._monotonic()
        out: list[bytes | None] = []
        for key in keys:
            entry = self._data.get(key)
            if entry is not None and entry[0] <= now:
                self._drop(key)
                entry = None
            elif entry is not None:
                self._data.move_to_end(key)
            out.append(None if entry is None else entry[1])
        return out

    async def setex_many(self, items: Sequence[tuple[str, int, bytes]]) -> None:
        now = self._monotonic()
        for key, ttl, value in items:
            if key in self._data:
                self._drop(key)
            cost = _cost(key, value)
            if cost > self._max:
                continue
            self._data[key] = (now + ttl, value)
            self._bytes += cost
        while self._bytes > self._max:
            self._drop(next(iter(self._data)))

    def _drop(self, key: str) -> None:
        self._bytes -= _cost(key, self._data.pop(key)[1])

    async def ping(self) -> None:
        return None

    def generation_passed(self) -> None:
        self._data.clear()
        self._bytes = 0

    async def close(self) -> None:
        self.generation_passed()


def _cost(key: str, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD


class RedisBackend:
    name = "redis"

    def __init__(self, url: str, timeout: float = 0.5) -> None:
        from redis.asyncio import Redis

        self._client = Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
        )

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values = await self._client.mget(list(keys))
        return [v.encode() if isinstance(v, str) else v for v in values]

    async def setex_many(self, items: Sequence[tuple[str, int, bytes]]) -> None:
        if not items:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for key, ttl, value in items:
                pipe.set(key, value, ex=ttl)  # SETEX
            await pipe.execute()

    async def ping(self) -> None:
        await self._client.ping()

    def generation_passed(self) -> None:
        return None  # Redis entries expire by their TTLs (and Redis's own maxmemory policy)

    async def close(self) -> None:
        await self._client.aclose()


class BodyCache:
    """In-process layer in front of the backend: final response bodies (bytes) by key.

    Every entry belongs to one aggregator generation. Seeing a newer generation empties the
    layer at once, so nothing cached before a tick is served after its generation is known;
    an older generation (a lagging read) neither hits nor stores. Entries also expire (the
    Unstract's TTL policy) and the layer is bounded in bytes (least recently used go first).
    """

    def __init__(
        self,
        max_bytes: int = DEFAULT_MAX_BYTES // 2,
        max_entry_bytes: int = 4 * 1024 * 1024,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._data: OrderedDict[Hashable, tuple[float, bytes]] = OrderedDict()
        self._generation = -1
        self._bytes = 0
        self._max = max_bytes
        self._max_entry = max_entry_bytes
        self._monotonic = monotonic

    def _at(self, generation: int) -> bool:
        """Whether ``generation`` is the layer's current one (after emptying it if newer)."""
        if generation != self._generation:
            if generation < self._generation:
                return False
            self.clear()
            self._generation = generation
        return True

    def get(self, generation: int, key: Hashable) -> bytes | None:
        if not self._at(generation):
            return None
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[0] <= self._monotonic():
            self._drop(key)
            return None
        self._data.move_to_end(key)
        return entry[1]

    def put(self, generation: int, key: Hashable, ttl: float, body: bytes) -> None:
        if len(body) > self._max_entry or not self._at(generation):
            return
        if key in self._data:
            self._drop(key)
        self._data[key] = (self._monotonic() + ttl, body)
        self._bytes += len(body) + ENTRY_OVERHEAD
        while self._bytes > self._max:
            self._drop(next(iter(self._data)))

    def _drop(self, key: Hashable) -> None:
        self._bytes -= len(self._data.pop(key)[1]) + ENTRY_OVERHEAD

    @property
    def size(self) -> int:
        return self._bytes

    def clear(self) -> None:
        self._data.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._data)


class ResilientCache:
    """What the handlers use. In-process memory is bounded by ``max_bytes`` in all: half for
    the final response bodies, half for the in-process backend when there is no Redis."""

    def __init__(
        self,
        backend: Backend,
        stats: ServiceStats,
        *,
        enabled: bool = True,
        retry_seconds: float = 1.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.stats = stats
        self.enabled = enabled
        self.retry_seconds = retry_seconds
        self._monotonic = monotonic
        self._down_until: float | None = None
        self.last_error: str | None = None
        self.bodies = BodyCache(max_bytes // 2, monotonic=monotonic)
        self._generation = -1

    def observe_generation(self, generation: int) -> None:
        """Called with each aggregator generation read: a newer one evicts the older ones."""
        if generation > self._generation:
            self._generation = generation
            self.backend.generation_passed()

    @property
    def available(self) -> bool:
        return self._down_until is None or self._monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        if self._down_until is None:
            log.warning(
                "cache unavailable; serving from the database",
                extra={"fields": {"backend": self.backend.name, "error": first_line(exc)}},
            )
        self.last_error = first_line(exc)
        self._down_until = self._monotonic() + self.retry_seconds
        self.stats.cache_request("error")

    def _recovered(self) -> None:
        if self._down_until is not None:
            log.info("cache available again", extra={"fields": {"backend": self.backend.name}})
        self._down_until = None
        self.last_error = None

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """Cached values (None: miss). Hits and misses are counted per key."""
        if not self.enabled or not keys:
            return [None] * len(keys)
        if not self.available:
            self.stats.cache_request("error")
            return [None] * len(keys)
        try:
            values = await self.backend.mget(keys)
        except Exception as exc:  # any client failure: the database answers instead
            self._failed(exc)
            return [None] * len(keys)
        self._recovered()
        hits = sum(value is not None for value in values)
        if hits:
            self.stats.cache_request("hit", hits)
        if hits < len(keys):
            self.stats.cache_request("miss", len(keys) - hits)
        return values

    async def get(self, key: str) -> bytes | None:
        return (await self.mget([key]))[0]

    async def setex_many(self, items: Sequence[tuple[str, int, bytes]]) -> None:
        if not self.enabled or not items or not self.available:
            return
        try:
            await self.backend.setex_many(items)
        except Exception as exc:
            self._failed(exc)
            return
        self._recovered()

    def body(self, generation: int, key: Hashable) -> bytes | None:
        """A final response body from the in-process layer (None: compute it)."""
        if not self.enabled:
            return None
        body = self.bodies.get(generation, key)
        if body is not None:
            self.stats.cache_request("hit")
        return body

    def keep_body(self, generation: int, key: Hashable, ttl: float, body: bytes) -> None:
        if self.enabled:
            self.bodies.put(generation, key, ttl, body)

    async def check(self) -> dict[str, str]:
        """Readiness: ok, disabled, or degraded (the service still answers from the DB)."""
        if not self.enabled:
            return {"status": "disabled", "backend": self.backend.name}
        try:
            await self.backend.ping()
        except Exception as exc:
            self._failed(exc)
            return {"status": "degraded", "backend": self.backend.name, "message": first_line(exc)}
        self._recovered()
        return {"status": "ok", "backend": self.backend.name}

    async def close(self) -> None:
        self.bodies.clear()
        try:
            await self.backend.close()
        except Exception as exc:  # closing a broken connection must not fail shutdown
            log.debug("cache close failed", extra={"fields": {"error": first_line(exc)}})


def make_backend(redis_url: str, max_bytes: int = DEFAULT_MAX_BYTES) -> Backend:
    return RedisBackend(redis_url) if redis_url else MemoryBackend(max_bytes // 2)


RESPONSE_CACHE = web.AppKey("cache", ResilientCache)
