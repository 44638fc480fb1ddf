"""Structured logs: one JSON object per line on stderr."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

REDACTED = "[redacted]"
# Credentials whatever their value: a bearer token, Basic credentials, a raw header line that
# a library quotes in an error (aiohttp quotes malformed header lines).
_CREDENTIALS = re.compile(
    r"(?i)\b((?:proxy-)?authorization\s*:\s*|cookie\s*:\s*)[^\"'\r\n]+"
    r"|\b(bearer\s+|basic\s+)[^\s\"'\\]+"
)
_secrets: set[str] = set()


def redact(secrets: Iterable[str]) -> None:
    """Never write these (API keys, tokens, passwords) to a log line, in any of the forms they
    take in a message: as is, JSON-escaped, or inside a Python bytes repr."""
    for secret in secrets:
        if len(secret) < 4:
            continue  # would mangle every line; header forms are still caught by _CREDENTIALS
        raw = repr(secret.encode())[2:-1]
        _secrets.update({secret, json.dumps(secret)[1:-1], raw, json.dumps(raw)[1:-1]})


def scrub(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _CREDENTIALS.sub(lambda m: (m.group(1) or m.group(2)) + REDACTED, text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            payload["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
            payload["traceback"] = self.formatException(record.exc_info)
        return scrub(json.dumps(payload, default=str))


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
