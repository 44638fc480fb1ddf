"""The JSON log lines (python-json-logger with this project's field names): one object per
line, tracebacks whole, extras flattened, secrets scrubbed everywhere (tracebacks included)."""

from __future__ import annotations

import json
import logging

from dashboard_metrics.core import logs
from tests.service_support import json_logs


def _records(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_fields_and_extras_are_top_level_keys() -> None:
    with json_logs() as stream:
        logging.getLogger("t.logs").info(
            "tick %s", "done", extra={"fields": {"rows": 3}, "org": "org_1"}
        )
    [record] = _records(stream.getvalue())
    assert set(record) == {"ts", "level", "logger", "event", "rows", "org"}
    assert record["event"] == "tick done"
    assert record["level"] == "info" and record["logger"] == "t.logs"
    assert record["rows"] == 3 and record["org"] == "org_1"
    assert str(record["ts"]).endswith("+00:00")


def _fail() -> None:
    raise RuntimeError("inner-7f2a")


def test_the_whole_traceback_survives_chained_and_scrubbed() -> None:
    logs.redact(["s3cret-token-value"])
    with json_logs() as stream:
        try:
            try:
                _fail()
            except RuntimeError as exc:
                raise ValueError("outer with s3cret-token-value") from exc
        except ValueError:
            logging.getLogger("t.logs").exception("it broke", extra={"fields": {"error": "x"}})
    [record] = _records(stream.getvalue())
    assert record["error"] == "ValueError: outer with [redacted]"
    traceback = str(record["traceback"])
    assert traceback.startswith("Traceback (most recent call last):")
    assert "in _fail\n    raise RuntimeError(" in traceback  # the cause's frames too
    assert "The above exception was the direct cause" in traceback
    assert "s3cret-token-value" not in stream.getvalue()


def test_a_preformatted_exc_text_and_stack_info_are_kept() -> None:
    record = logging.LogRecord("t.logs", logging.ERROR, __file__, 1, "queued", None, None)
    record.exc_text = "Traceback (most recent call last):\n  File x\nKeyError: 'k'"
    record.stack_info = "Stack (most recent call last):\n  File y"
    payload = json.loads(logs.JsonFormatter().format(record))
    assert payload["traceback"].endswith("KeyError: 'k'")
    assert payload["stack"].startswith("Stack (most recent call last):")
