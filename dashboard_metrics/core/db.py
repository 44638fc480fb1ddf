"""Engines for the source and rollup databases, on PostgreSQL or SQLite."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError
from sqlalchemy.sql import Executable

from dashboard_metrics.core.setting_types import mask_url
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.source_tables import SOURCE_SCHEMA, SOURCE_TABLES


class DatabaseError(RuntimeError):
    """A database cannot be used; the message is one line naming which and why."""


def normalize_url(url: str) -> URL:
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    return Path(url.database) if url.database and url.database != ":memory:" else None


def _sqlite_engine(url: URL, *, create: bool) -> Engine:
    """A SQLite engine. Readers (``create=False``) open the file read-write but never create
    it: a service must not leave an empty database where the real one was moved away."""
    path = _sqlite_file(url)
    connect_args: dict[str, Any] = {"timeout": 60, "check_same_thread": False}
    if path is not None and create:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif path is not None:
        url = url.set(database=path.resolve().as_uri(), query={"mode": "rw", "uri": "true"})
    engine = create_engine(url, connect_args=connect_args)
    if path is not None:
        _follow_file(engine, path)
    return engine


def _follow_file(engine: Engine, path: Path) -> None:
    """Pooled connections hold the file they opened. When the path is replaced (restored from
    a backup) or gone, they would keep reading or writing the old file for as long as they
    live: checkout drops them, so the engine follows the path within one request."""

    def identity() -> tuple[int, int] | None:
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return (stat.st_dev, stat.st_ino)

    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi_conn: Any, record: Any) -> None:
        record.info["file"] = identity()

    @event.listens_for(engine, "checkout")
    def _on_checkout(_dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        opened = record.info.get("file")
        if opened is None or opened != identity():
            raise DisconnectionError(f"SQLite file {path} was moved, replaced or deleted")


def _sqlite_pragmas(engine: Engine, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A writer takes SQLite's write lock up front: a tick is one atomic, serialized unit.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# libpq: give up on an unreachable server quickly, and notice a silently dropped connection
# (an outage must degrade and recover, not hang a thread for the kernel's TCP timeout).
PG_CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def _sqlite_statement_timeout(engine: Engine, seconds: float) -> None:
    """SQLite has no statement_timeout: a progress handler interrupts a statement running
    longer than ``seconds`` (it raises OperationalError "interrupted", like a PostgreSQL
    cancel)."""
    started: dict[int, float] = {}

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        key = id(dbapi_conn)
        dbapi_conn.set_progress_handler(
            lambda: int(time.monotonic() - started.get(key, time.monotonic()) > seconds), 10_000
        )

    @event.listens_for(engine, "before_cursor_execute")
    def _on_execute(conn: Any, *_args: Any) -> None:
        started[id(conn.connection.driver_connection)] = time.monotonic()


def rollup_engine(
    settings: Settings, *, writer: bool = True, pool_size: int = 5, max_overflow: int = 10
) -> Engine:
    """The rollup database. Writers' transactions take SQLite's write lock when they begin;
    readers (the HTTP service) never wait for a tick. The pool sizes apply to PostgreSQL."""
    url = normalize_url(settings.rollup_url)
    if url.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url, create=writer)
        _sqlite_pragmas(engine, immediate=writer)
        return engine
    # Every table we own lives in our own schema (Unstract has event_metrics_* tables of its
    # own in the source schema): unqualified names resolve there, raw SQL included.
    schema_path = {"options": f"-c search_path={settings.rollup_schema}"}
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args={**PG_CONNECT_ARGS, **schema_path},
    )


def source_engine(settings: Settings, *, interactive: bool = False) -> Engine:
    """The Unstract source database. ``interactive`` engines (the live API endpoints) run every
    statement under the statement timeout; the aggregator's long scans do not."""
    url = normalize_url(settings.source_url)
    translate = {SOURCE_SCHEMA: settings.effective_source_schema}
    if url.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url, create=not interactive)
        _sqlite_pragmas(engine, immediate=False)
        if interactive:
            _sqlite_statement_timeout(engine, settings.statement_timeout_seconds)
    else:
        timeout_ms = int(settings.statement_timeout_seconds * 1000) if interactive else 0
        engine = create_engine(
            url,
            pool_pre_ping=True,
            connect_args={**PG_CONNECT_ARGS, "options": f"-c statement_timeout={timeout_ms}"},
        )
    return engine.execution_options(schema_translate_map=translate)


def probe(engine: Engine, query: Executable | None = None) -> str | None:
    """None when ``engine`` answers ``query`` (default ``SELECT 1``); else why not, in one line
    (the driver's message, which may name hosts: for logs and operators, not anonymous
    callers)."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1") if query is None else query).all()
    except SQLAlchemyError as exc:
        return first_line(exc)
    return None


def check_connect(engine: Engine, what: str) -> None:
    why = probe(engine)
    if why is not None:
        raise DatabaseError(f"{what} database {mask_url(str(engine.url))} is unreachable: {why}")


def missing_source_tables(engine: Engine, schema: str | None) -> list[str]:
    with engine.connect() as conn:
        present = set(inspect(conn).get_table_names(schema=schema))
    return sorted(name for name in SOURCE_TABLES if name not in present)


def require_source_tables(engine: Engine, settings: Settings) -> None:
    check_connect(engine, "source")
    schema = settings.effective_source_schema
    missing = missing_source_tables(engine, schema)
    if missing:
        where = f"schema {schema!r} of " if schema else ""
        raise DatabaseError(
            f"source tables missing in {where}{mask_url(str(engine.url))}: {', '.join(missing)} "
            "(point DASHBOARD_METRICS_SOURCE_DATABASE_URL/SOURCE_SCHEMA at an Unstract database, "
            "or run `dashboard-metrics generate-test-data`)"
        )


def first_line(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return message[0] if message else type(exc).__name__


# The embedded SQLite files a configuration names: opening a missing one creates an empty
# database (and resets a leftover -wal), so commands that only use a database check first.
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
