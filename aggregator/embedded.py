"""The embedded SQLite files a configuration names, and which of them do not exist yet.

Opening a missing SQLite file creates an empty database (and resets a leftover -wal), so
commands that only use a database check these first.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from dashboard_metrics.core.settings import Settings


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names (None for other databases and in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in {None, "", ":memory:"}:
        return None
    return Path(str(parsed.database))


def missing_files(settings: Settings) -> list[Path]:
    """The rollup and source SQLite files that do not exist (absolute paths)."""
    urls = dict.fromkeys((settings.rollup_url, settings.source_url))
    files = [sqlite_file(url) for url in urls]
    return [f.resolve() for f in files if f is not None and not f.exists()]
