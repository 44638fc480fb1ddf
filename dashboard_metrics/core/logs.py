"""Structured logs: one JSON object per line on stderr."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger import json as jsonlogger
from pythonjsonlogger.core import RESERVED_ATTRS

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


class JsonFormatter(jsonlogger.JsonFormatter):
    """python-json-logger's formatter with this project's field names (``ts``, ``level``,
    ``logger``, ``event``, the record's ``fields`` and any other ``extra`` flattened in, and for
    an exception ``error`` plus the whole ``traceback``), every line scrubbed of secrets."""

    def __init__(self) -> None:
        # No format fields: add_fields names them. "fields" is merged by add_fields itself;
        # every other LogRecord attribute stays out.
        super().__init__(fmt=[], reserved_attrs=[*RESERVED_ATTRS, "fields"], json_default=str)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["ts"] = datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds"
        )
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        log_data["event"] = record.message
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            log_data.update(fields)
        # message_dict holds the formatted exc_info/stack_info; the extras come after them.
        traceback = message_dict.pop("exc_info", None)
        stack = message_dict.pop("stack_info", None)
        super().add_fields(log_data, record, message_dict)
        if record.exc_info and record.exc_info[0] is not None:
            log_data["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        if traceback:
            log_data["traceback"] = traceback
        if stack:
            log_data["stack"] = stack

    def serialize_log_record(self, log_data: dict[str, Any]) -> str:
        return scrub(super().serialize_log_record(log_data))


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
