"""Each command's own flags (beside the settings flags `parser` adds) and their argparse
types. Imports nothing heavy: `--help` and completion build the parser from this."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime


def positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def non_negative(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value!r}")
    return number


def timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO-8601 date or time such as 2026-03-15 or 2026-03-15T12:00:00Z, "
            f"got {value!r}"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _aggregate_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--once", action="store_true", help="run one tick and exit")
    sub.add_argument(
        "--reconcile",
        action="store_true",
        help="with --once: also reconcile the last RECONCILE_DAYS days",
    )
    sub.add_argument(
        "--json", action="store_true", help="with --once: print the tick's record as JSON"
    )


def _backfill_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--days",
        type=positive,
        default=30,
        help="whole UTC days back from today to recompute (default 30)",
    )
    sub.add_argument("--org-id", help="only this organization (string id, e.g. org_abc123)")
    sub.add_argument("--dry-run", action="store_true", help="print per tier what would be written")
    sub.add_argument("--skip-hourly", action="store_true", help="do not write hourly rows")
    sub.add_argument("--skip-daily", action="store_true", help="do not write daily rows")
    sub.add_argument("--skip-monthly", action="store_true", help="do not write monthly rows")


def _cleanup_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--tier",
        choices=("hourly", "daily"),
        required=True,
        help="which tier to clean (monthly rows are kept forever)",
    )
    sub.add_argument(
        "--retention-days",
        type=positive,
        help="keep this many days (default: HOURLY_RETENTION_DAYS 30 or DAILY_RETENTION_DAYS 365)",
    )


def _generate_test_data_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--org-id", help="generate for this one organization (string id)")
    sub.add_argument("--orgs", type=positive, default=3, help="organizations (default 3)")
    sub.add_argument("--days", type=positive, default=7, help="days up to now (default 7)")
    sub.add_argument(
        "--records-per-day",
        type=positive,
        default=15,
        help="workflow executions per organization per day (default 15)",
    )
    sub.add_argument(
        "--clean", action="store_true", help="delete these organizations' source rows first"
    )
    sub.add_argument("--seed", type=non_negative, default=42, help="random seed (default 42)")
    sub.add_argument(
        "--until",
        type=timestamp,
        metavar="TIME",
        help="end of the generated range, ISO-8601 (2026-03-15 or 2026-03-15T12:00:00Z; "
        "naive times are UTC; default now)",
    )


def _dashboards_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--output",
        "--out",
        dest="out",
        metavar="DIR",
        help="output directory (default dashboards/generated under the working directory)",
    )
    sub.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the files on disk differ from what would be written",
    )
    sub.add_argument(
        "--runbook-base-url",
        metavar="URL",
        help="absolute http(s) URL of the README (or a copy of its runbooks) that the alerts' "
        "runbook_url points into, as URL#<alert> (default: a placeholder)",
    )


def _report_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--org-id", help="only this organization (string id)")
    sub.add_argument(
        "--days",
        type=positive,
        default=7,
        help="UTC days up to now, today included (default 7, at most 365)",
    )
    sub.add_argument("--json", action="store_true", help="print the numbers as JSON")


def _config_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--check",
        action="store_true",
        help="end with whether the configuration is valid; exit 1 when a "
        "DASHBOARD_METRICS_* variable is not a setting (a misspelt name is otherwise ignored)",
    )
    sub.add_argument("--json", action="store_true", help="print the configuration as JSON")


def batch_size(value: str) -> int:
    number = positive(value)
    if number > MAX_BATCH:
        raise argparse.ArgumentTypeError(f"at most {MAX_BATCH} (the endpoint's limit)")
    return number


MAX_BATCH = 10_000  # events a request may carry


def _push_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "file",
        metavar="FILE",
        help="JSON lines, one event a line: {id, metric, value, timestamp, labels} and "
        "optionally org_id; - reads stdin",
    )
    sub.add_argument("--org-id", metavar="ORG", help="organization of the lines without an org_id")
    sub.add_argument(
        "--url",
        metavar="URL",
        help="the service's base URL (default http://HOST:PORT from DASHBOARD_METRICS_HOST "
        "and DASHBOARD_METRICS_PORT)",
    )
    sub.add_argument(
        "--batch-size",
        type=batch_size,
        default=1000,
        metavar="N",
        help=f"events per request (default 1000, at most {MAX_BATCH}; a request also stays "
        "under 5 MB)",
    )
    sub.add_argument(
        "--retries",
        type=non_negative,
        default=5,
        metavar="N",
        help="retries of a batch after a connection error, a timeout, 429, 502, 503 or 504, "
        "with exponential backoff (default 5)",
    )
    sub.add_argument(
        "--timeout",
        type=positive,
        default=60,
        metavar="SECONDS",
        help="seconds to wait for each request's answer (default 60)",
    )


def _completion_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("shell", choices=("bash", "zsh"), help="the shell to complete for")


# Each command's own flags (beside the settings flags of _setting_groups).
COMMAND_FLAGS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "aggregate": _aggregate_flags,
    "backfill": _backfill_flags,
    "cleanup": _cleanup_flags,
    "generate-test-data": _generate_test_data_flags,
    "dashboards": _dashboards_flags,
    "report": _report_flags,
    "config": _config_flags,
    "push": _push_flags,
    "completion": _completion_flags,
}
