"""Commands that only use a database never create one."""

from __future__ import annotations

from dashboard_metrics.cli.errors import CommandError
from dashboard_metrics.core.db import missing_files
from dashboard_metrics.core.settings import Settings


def require_existing(settings: Settings) -> None:
    """Refuse to run against a SQLite file that does not exist (SQLite would create an empty
    one, and a directory for it)."""
    missing = missing_files(settings)
    if missing:
        raise CommandError(
            f"no database at {missing[0]} (nothing was created): run this where "
            "`dashboard-metrics up` ran, or pass --data-dir or --database-url"
        )
