"""The service's secrets: comparing presented credentials as bytes."""

from __future__ import annotations


def header_bytes(value: str) -> bytes:
    """A header value as bytes, whatever aiohttp decoded: undecodable bytes arrive as lone
    surrogates, which a plain ``encode()`` rejects (a 500). ``surrogatepass`` never fails, and
    its output is invalid UTF-8, so it can never equal a configured key."""
    return value.encode("utf-8", "surrogatepass")
