"""The command line as a newcomer meets it: help, flags, one-line errors with non-zero exits,
nothing created by read-only commands, and each command's effect (as real processes)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import tomllib
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import yaml

from dashboard_metrics.cli.main import COMMANDS, main
from dashboard_metrics.core.schema import BREAKDOWN_DAILY
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.timeutil import utcnow
from tests.harness import Harness
from tests.processes import run

ROOT = Path(__file__).parent.parent


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess in ``cwd``, with no DASHBOARD_METRICS_* from the outside."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_METRICS_")}
    return subprocess.run(
        [sys.executable, "-m", "dashboard_metrics", *args],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    stderr = result.stderr.strip()
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if not line.startswith("{")]  # JSON logs
    assert len(lines) == 1, stderr
    assert re.match(r"dashboard-metrics( [a-z-]+)?: error: ", lines[0]), lines[0]
    return lines[0]


# -- help, version, flags ---------------------------------------------------------------------


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_command_has_help(command: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"] if command else ["--help"])
    assert exit_info.value.code == 0
    assert "usage: dashboard-metrics" in capsys.readouterr().out


def test_version_is_the_distribution_version(tmp_path: Path) -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = cli("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"dashboard-metrics {declared}"


def test_top_level_help_says_what_the_program_is(tmp_path: Path) -> None:
    out = cli("--help", cwd=tmp_path).stdout
    assert "usage metrics" in out and "Unstract" in out and "Prometheus" in out
    assert all(command in out for command in COMMANDS)


def test_help_imports_nothing_heavy(tmp_path: Path) -> None:
    """--help, --version and completion must answer at once: no SQLAlchemy, Alembic, aiohttp."""
    probe = (
        "import sys\n"
        "from dashboard_metrics.cli.main import main, COMMANDS\n"
        "for argv in [['--help'], ['--version'], *[[c, '--help'] for c in COMMANDS]]:\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "main(['completion', 'bash'])\n"
        "heavy = [m for m in ('sqlalchemy', 'alembic', 'aiohttp', 'psycopg') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert "HEAVY []" in result.stderr, result.stderr[-500:]


def test_log_level_is_a_general_flag_not_a_database_one(tmp_path: Path) -> None:
    out = cli("backfill", "--help", cwd=tmp_path).stdout
    sections = re.split(r"\n(?=\S)", out)
    databases = next(s for s in sections if s.startswith("databases"))
    general = next(s for s in sections if s.startswith("general"))
    assert "--log-level" in general and "--log-level" not in databases


def test_every_command_takes_the_general_flags(capsys: pytest.CaptureFixture[str]) -> None:
    for command in COMMANDS:
        if command == "completion":
            continue
        with pytest.raises(SystemExit):
            main([command, "--help"])
        general = capsys.readouterr().out.split("\ngeneral:\n")[1]
        assert "--log-level" in general and "--metrics-file" in general, command


def test_commands_accept_only_the_flags_they_use(tmp_path: Path) -> None:
    for command in ("dashboards", "migrate"):
        result = cli(command, "--source-database-url", "sqlite:///x.db", cwd=tmp_path)
        assert result.returncode == 2
        assert "unrecognized arguments: --source-database-url" in result.stderr
    assert cli("dashboards", "--database-url", "x", cwd=tmp_path).returncode == 2
    assert "--source-schema" not in cli("migrate", "--help", cwd=tmp_path).stdout
    assert not (tmp_path / ".dashboard-metrics").exists()


def test_flag_help_texts(tmp_path: Path) -> None:
    cleanup = " ".join(cli("cleanup", "--help", cwd=tmp_path).stdout.split())
    assert "--tier {hourly,daily} which tier to clean" in cleanup
    generate = " ".join(cli("generate-test-data", "--help", cwd=tmp_path).stdout.split())
    assert "--until TIME end of the generated range, ISO-8601 (2026-03-15" in generate
    bad = cli("generate-test-data", "--until", "yesterday", cwd=tmp_path)
    assert bad.returncode == 2 and "ISO-8601" in bad.stderr


def test_bad_flag_value_names_the_flag(tmp_path: Path) -> None:
    line = one_line_error(cli("migrate", "--database-url", "not a url", cwd=tmp_path))
    assert "--database-url" in line and "DASHBOARD_METRICS_DATABASE_URL" not in line
    env_line = one_line_error(
        cli("migrate", cwd=tmp_path, DASHBOARD_METRICS_DATABASE_URL="not a url")
    )
    assert "DASHBOARD_METRICS_DATABASE_URL" in env_line


def test_flags_override_the_environment(tmp_path: Path) -> None:
    env_db, flag_db = tmp_path / "env.db", tmp_path / "flag.db"
    result = cli(
        "migrate",
        "--database-url",
        f"sqlite:///{flag_db}",
        cwd=tmp_path,
        DASHBOARD_METRICS_DATABASE_URL=f"sqlite:///{env_db}",
    )
    assert result.returncode == 0, result.stderr
    assert flag_db.exists() and not env_db.exists()
    data_dir = tmp_path / "elsewhere"
    assert cli("migrate", "--data-dir", str(data_dir), cwd=tmp_path).returncode == 0
    assert (data_dir / "dashboard-metrics.db").exists()


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    for args in (("backfill", "--days", "-3"), ("nope",), (), ("cleanup",)):
        result = cli(*args, cwd=tmp_path)
        assert result.returncode == 2
        assert one_line_error(result).endswith(" --help`)")
    assert "--days" in cli("backfill", "--days", "-3", cwd=tmp_path).stderr


# -- one-line errors ---------------------------------------------------------------------------


def test_bad_url_is_a_one_line_error(tmp_path: Path) -> None:
    result = run(Settings(), "migrate", DASHBOARD_METRICS_DATABASE_URL="not a url")
    assert result.returncode == 2
    assert "DASHBOARD_METRICS_DATABASE_URL" in one_line_error(result)


def test_unsupported_database_is_a_one_line_error() -> None:
    result = run(Settings(), "migrate", DASHBOARD_METRICS_DATABASE_URL="mysql://u@h/db")
    assert result.returncode == 2
    assert "unsupported database" in one_line_error(result)


@pytest.mark.parametrize(
    "args",
    [
        ("aggregate", "--once"),
        ("migrate",),
        ("generate-test-data", "--days", "1"),
        ("report",),
        ("backfill", "--days", "1"),
        ("cleanup", "--tier", "hourly"),
    ],
)
def test_unreachable_database_is_a_one_line_error(args: tuple[str, ...], tmp_path: Path) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:9/nowhere"
    result = cli(*args, cwd=tmp_path, DASHBOARD_METRICS_DATABASE_URL=url)
    assert "is unreachable" in one_line_error(result)


def test_missing_source_tables_is_a_one_line_error(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    assert run(settings, "migrate").returncode == 0
    result = run(settings, "aggregate", "--once")
    assert result.returncode == 1
    assert "source tables missing" in one_line_error(result)


def test_unmigrated_rollups_is_a_one_line_error(db_settings: Settings, tmp_path: Path) -> None:
    gen = run(db_settings, "generate-test-data", "--days", "1", "--records-per-day", "1")
    assert gen.returncode == 0, gen.stderr
    for args in (("backfill", "--days", "1"), ("report",), ("cleanup", "--tier", "daily")):
        assert "dashboard-metrics migrate" in one_line_error(run(db_settings, *args))
    doctor = run(db_settings, "doctor")
    assert doctor.returncode == 1
    assert "rollup schema: not created yet: run `dashboard-metrics migrate`" in doctor.stdout
    assert "None" not in doctor.stdout


def test_os_errors_are_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = one_line_error(cli("dashboards", "--out", str(blocker / "sub"), cwd=tmp_path))
    assert "a-file" in line


def test_health_port_in_use_is_one_line(h: Harness, tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run(h.settings, "aggregate", "--health-port", port)
    line = one_line_error(result)
    assert port in line and "--health-port" in line


# -- the embedded database: read-only commands create nothing ------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("serve",),
        ("doctor",),
        ("report",),
        ("aggregate", "--once"),
        ("backfill", "--days", "1"),
        ("cleanup", "--tier", "hourly"),
    ],
)
def test_commands_in_another_directory_create_no_database(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 1
    expected = tmp_path.resolve() / ".dashboard-metrics" / "dashboard-metrics.db"
    if args == ("doctor",):
        assert f"no database at {expected}" in result.stdout
    else:
        assert f"no database at {expected}" in one_line_error(result)
    assert not (tmp_path / ".dashboard-metrics").exists()


def test_dashboards_needs_no_database(tmp_path: Path) -> None:
    result = cli("dashboards", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "usage-overview.json").exists()
    assert not (tmp_path / ".dashboard-metrics").exists()


def test_doctor_on_a_deleted_file_keeps_the_wal(tmp_path: Path) -> None:
    db = tmp_path / ".dashboard-metrics" / "dashboard-metrics.db"
    assert cli("migrate", cwd=tmp_path).returncode == 0
    holder = sqlite3.connect(db)  # keeps the -wal from being checkpointed away
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("PRAGMA wal_autocheckpoint=0")
    holder.execute("CREATE TABLE keep (x)")
    holder.execute("INSERT INTO keep VALUES (1)")
    holder.commit()
    wal = Path(f"{db}-wal")
    before = wal.read_bytes()
    assert before
    db.unlink()
    result = cli("doctor", cwd=tmp_path)
    assert result.returncode == 1
    assert f"no database at {db.resolve()} (nothing was created)" in result.stdout
    assert not db.exists()
    assert wal.read_bytes() == before
    holder.close()


# -- generate-test-data ----------------------------------------------------------------------


def _source_counts(settings: Settings) -> dict[str, int]:
    from sqlalchemy import func, select

    from dashboard_metrics.core import source_tables as st
    from dashboard_metrics.core.db import source_engine

    engine = source_engine(settings)
    try:
        with engine.connect() as conn:
            return {
                name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                for name, table in st.SOURCE_TABLES.items()
            }
    finally:
        engine.dispose()


def test_generate_re_run_with_the_same_seed_is_idempotent(db_settings: Settings) -> None:
    """The compose demo runs the same generate-test-data command on every start."""
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    args = compose["services"]["demo-data"]["command"]
    assert args[0] == "generate-test-data"
    args = [*args, "--days", "2", "--records-per-day", "2"]  # small; the later flags win
    first = run(db_settings, *args)
    assert first.returncode == 0, first.stderr
    counts = _source_counts(db_settings)
    assert counts["workflow_execution"] == 3 * 2 * 2
    again = run(db_settings, *args)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    message = again.stdout.strip()
    assert "already there" in message and "--clean" in message and "--seed" in message
    assert _source_counts(db_settings) == counts
    more = run(db_settings, *args, "--seed", "7")
    assert more.returncode == 0
    assert _source_counts(db_settings)["workflow_execution"] == 2 * counts["workflow_execution"]
    clean = run(db_settings, *args, "--clean")
    assert clean.returncode == 0 and "organizations:" in clean.stdout
    assert _source_counts(db_settings)["workflow_execution"] == 2 * counts["workflow_execution"]


def _env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    for key in ("DATABASE_URL", "SOURCE_DATABASE_URL", "SOURCE_SCHEMA"):
        monkeypatch.delenv(f"DASHBOARD_METRICS_{key}", raising=False)
    monkeypatch.setenv("DASHBOARD_METRICS_DATABASE_URL", settings.rollup_url)


def test_generate_is_deterministic_and_backfill_dry_run_writes_nothing(
    h: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch, h.settings)
    h.clock.now = utcnow().replace(minute=0, second=0, microsecond=0)
    args = [
        "generate-test-data",
        "--orgs",
        "2",
        "--days",
        "3",
        "--records-per-day",
        "2",
        "--seed",
        "9",
        "--until",
        h.clock.now.isoformat(),
    ]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main([*args, "--clean"]) == 0
    assert capsys.readouterr().out == first  # same seed, same organizations and row counts
    assert main(["backfill", "--days", "5", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would write" in out and "hourly" in out
    assert not h.tier_rows("hourly")
    assert main(["backfill", "--days", "5"]) == 0
    h.assert_matches_oracle()


# -- backfill, cleanup, migrate, aggregate ----------------------------------------------------


def test_backfill_for_one_organization_touches_only_it(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = h.org(), h.org()
    a.usage(h.clock().replace(hour=1))
    b.usage(h.clock().replace(hour=2))
    _env(monkeypatch, h.settings)
    h.aggregator.clock = h.clock
    assert main(["backfill", "--days", "2", "--org-id", a.string_id]) == 0
    assert {k[0] for k in h.tier_rows("daily")} <= {a.string_id}


def test_backfill_for_an_unknown_organization_is_an_error(h: Harness) -> None:
    h.org()
    result = run(h.settings, "backfill", "--days", "1", "--org-id", "org_nobody")
    line = one_line_error(result)
    assert "'org_nobody' is neither in the source nor in the rollups" in line
    assert "org_0001" in line
    assert "rows" not in result.stdout


def test_backfill_skip_flags(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    org = h.org()
    org.usage(h.clock().replace(hour=1))
    h.backfill(days=2, skip_hourly=True)
    assert not h.tier_rows("hourly") and h.tier_rows("daily") and h.tier_rows("monthly")
    # Days whose hourly tier was skipped are recomputed from the source by later ticks.
    org.usage(h.clock().replace(hour=3))
    h.aggregator.tick(reconcile=False)
    h.assert_matches_oracle(tiers=("daily", "monthly"))
    h.backfill(days=2)  # a full backfill makes the hourly tier trusted again
    h.assert_matches_oracle()
    _env(monkeypatch, h.settings)
    assert main(["backfill", "--skip-hourly", "--skip-daily", "--skip-monthly"]) == 1


def test_cleanup_and_migrate_commands(h: Harness) -> None:
    migrated = run(h.settings, "migrate")
    assert migrated.returncode == 0
    assert migrated.stdout.startswith("rollup schema is up to date (")
    assert "revision" not in migrated.stdout
    cleaned = run(h.settings, "cleanup", "--tier", "hourly", "--retention-days", "3")
    assert cleaned.stdout == "deleted 0 hourly rows older than 3 days\n"


def test_migrate_creates_then_reports_up_to_date(tmp_path: Path) -> None:
    first = cli("migrate", cwd=tmp_path)
    db = tmp_path.resolve() / ".dashboard-metrics" / "dashboard-metrics.db"
    assert first.stdout == f"rollup schema created ({db})\n"
    assert cli("migrate", cwd=tmp_path).stdout.startswith("rollup schema is up to date")


def test_aggregate_once_prints_one_human_line(h: Harness) -> None:
    org = h.org()
    when = utcnow().replace(minute=5)
    org.usage(when)
    result = run(h.settings, "aggregate", "--once")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert re.fullmatch(
        r"tick: \d+ changed hours recomputed, rows written: .*hourly.* \(\d+\.\d\d s\)", lines[0]
    ), lines[0]
    logged = [json.loads(x) for x in result.stderr.splitlines() if x.startswith("{")]
    assert any(entry["event"] == "tick" and "rows_written" in entry for entry in logged)
    as_json = run(h.settings, "aggregate", "--once", "--json")
    record = json.loads(as_json.stdout)
    assert set(record) >= {"dirty_hours", "rows_written", "duration_seconds"}
    assert "--once" in one_line_error(run(h.settings, "aggregate", "--json"))


# -- doctor -----------------------------------------------------------------------------------


def _drop_index(settings: Settings, dialect: str) -> None:
    if dialect == "sqlite":
        path = settings.rollup_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            conn.execute("DROP INDEX dm_usage_modified_at_idx")
    else:
        with psycopg.connect(settings.rollup_url.replace("+psycopg", ""), autocommit=True) as c:
            c.execute("DROP INDEX unstract.dm_usage_modified_at_idx")


def _execute(settings: Settings, dialect: str, statement: str) -> None:
    if dialect == "sqlite":
        with sqlite3.connect(settings.rollup_url.removeprefix("sqlite:///")) as conn:
            conn.execute(statement)
    else:
        with psycopg.connect(settings.rollup_url.replace("+psycopg", ""), autocommit=True) as c:
            c.execute(statement)


def test_doctor_reports_schema_lag_and_pasteable_indexes(h: Harness) -> None:
    result = run(h.settings, "doctor")
    assert result.returncode == 0, result.stdout  # no tick yet is a warning, not a failure
    assert "table usage: columns and types match" in result.stdout
    assert "no tick recorded yet" in result.stdout
    where = "schema unstract" if h.dialect == "postgresql" else "the SQLite file (no schemas)"
    assert f"source schema checked: {where}" in result.stdout
    _drop_index(h.settings, h.dialect)
    h.aggregator.tick()
    advice = run(h.settings, "doctor").stdout
    assert "aggregator lag" in advice
    target = "unstract.usage" if h.dialect == "postgresql" else "usage"
    concurrently = "CONCURRENTLY " if h.dialect == "postgresql" else ""
    statement = (
        f"CREATE INDEX {concurrently}IF NOT EXISTS usage_modified_at_idx ON {target} (modified_at);"
    )
    assert f"missing: {statement}" in advice
    _execute(h.settings, h.dialect, statement)  # pasted as printed
    assert "missing: CREATE INDEX" not in run(h.settings, "doctor").stdout


def test_doctor_reports_the_row_counts_of_every_tier_and_its_breakdowns(h: Harness) -> None:
    org = h.org()
    start = utcnow().replace(minute=0, second=0, microsecond=0)
    for hours in (3, 30):
        org.usage(start - timedelta(hours=hours))
        org.file(org.execution(start - timedelta(hours=hours), kind="api"), start)
    h.aggregator.tick()
    out = run(h.settings, "doctor").stdout
    for tier in ("hourly", "daily", "monthly"):
        rows, breakdown = len(h.tier_rows(tier)), len(h.breakdown_rows(tier))
        assert rows and breakdown
        line = (
            f"[ok  ] {tier} rows: event_metrics_{tier} {rows:,}, "
            f"event_metrics_breakdown_{tier} {breakdown:,}"
        )
        assert line in out.splitlines(), out
    # Breakdowns missing beside organization rows (a database from before them): a warning.
    with h.rollup.begin() as conn:
        conn.execute(BREAKDOWN_DAILY.table.delete())
    out = run(h.settings, "doctor").stdout
    assert "[warn] daily rows:" in out and "run `dashboard-metrics backfill`" in out
