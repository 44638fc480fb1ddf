"""The command line: help, one-line errors with non-zero exits, and each command's effect."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.settings import Settings
from aggregator.timeutil import utcnow
from dashboard_metrics.cli import COMMANDS, main
from tests.harness import Harness
from tests.processes import run


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_command_has_help(command: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"] if command else ["--help"])
    assert exit_info.value.code == 0
    assert "usage: dashboard-metrics" in capsys.readouterr().out


def _one_line_error(result: object) -> str:
    stderr = result.stderr.strip()  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_bad_url_is_a_one_line_error(tmp_path: Path) -> None:
    result = run(Settings(database_url="not a url"), "migrate")
    assert result.returncode == 2
    assert "DASHBOARD_METRICS_DATABASE_URL" in _one_line_error(result)


def test_unsupported_database_is_a_one_line_error() -> None:
    result = run(Settings(), "migrate", DASHBOARD_METRICS_DATABASE_URL="mysql://u@h/db")
    assert result.returncode == 2
    assert "unsupported database" in _one_line_error(result)


def test_unreachable_database_is_a_one_line_error() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:9/nowhere"
    result = run(Settings(), "aggregate", "--once", DASHBOARD_METRICS_DATABASE_URL=url)
    assert result.returncode == 1
    assert "unreachable" in _one_line_error(result)


def test_missing_source_tables_is_a_one_line_error(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    assert run(settings, "migrate").returncode == 0
    result = run(settings, "aggregate", "--once")
    assert result.returncode == 1
    assert "source tables missing" in _one_line_error(result)


def test_unmigrated_rollups_is_a_one_line_error(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}")
    result = run(settings, "backfill", "--days", "1")
    assert result.returncode == 1
    assert "dashboard-metrics migrate" in _one_line_error(result)


def test_bad_flag_value_exits_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["backfill", "--days", "-3"])
    assert exit_info.value.code == 2
    assert "--days" in capsys.readouterr().err


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


def test_cleanup_and_migrate_commands(
    h: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch, h.settings)
    assert main(["migrate"]) == 0
    assert "revision" in capsys.readouterr().out
    assert main(["cleanup", "--tier", "hourly", "--retention-days", "3"]) == 0
    assert "deleted 0 hourly rows older than 3 days" in capsys.readouterr().out


def test_doctor_reports_schema_and_lag(
    h: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch, h.settings)
    assert main(["doctor"]) == 0  # no tick yet is a warning, not a failure
    out = capsys.readouterr().out
    assert "table usage: columns and types match" in out
    assert "no tick recorded yet" in out
    h.aggregator.tick()
    assert main(["doctor"]) == 0
    assert "aggregator lag" in capsys.readouterr().out


def test_interactive_sqlite_reads_have_a_statement_timeout(tmp_path: Path) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from aggregator.db import source_engine

    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 't.db'}", statement_timeout_seconds=0.2
    )
    slow = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
        "SELECT count(*) FROM (SELECT i FROM n LIMIT 100000000)"
    )
    engine = source_engine(settings, interactive=True)
    with pytest.raises(OperationalError, match="interrupted"), engine.connect() as conn:
        conn.execute(text(slow))
    with engine.connect() as conn:  # the next statement gets its own budget
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()
