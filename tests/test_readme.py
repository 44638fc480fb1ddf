"""The README stays true to the code: every setting and every command is documented."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from aggregator.settings import ENV_PREFIX, Settings
from dashboard_metrics.cli import COMMANDS

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [
        f.name
        for f in fields(Settings)
        if f"{ENV_PREFIX}{f.name.upper()}" not in README and f"`_{f.name.upper()}`" not in README
    ]
    assert not missing, missing


def test_every_command_is_documented() -> None:
    assert all(f"`{command}`" in README for command in COMMANDS)


def test_the_two_set_up_commands_are_there() -> None:
    assert "uv run dashboard-metrics up" in README
    assert "uv run pytest" in README
