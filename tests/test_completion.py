"""`dashboard-metrics completion bash|zsh`: the scripts complete commands, flags and choices
in the real shells."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard_metrics.cli.parser import COMMANDS


def script(shell: str, tmp_path: Path) -> Path:
    result = subprocess.run(
        [sys.executable, "-m", "dashboard_metrics", "completion", shell],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    path = tmp_path / f"completion.{shell}"
    path.write_text(result.stdout)
    return path


def bash_complete(path: Path, words: list[str]) -> list[str]:
    """What bash offers for the last word of ``words``."""
    quoted = " ".join(f"'{w}'" for w in words)
    program = (
        f"source {path}\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
        "_dashboard_metrics\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
        "complete -p dashboard-metrics\n"
    )
    out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "complete -o default -F _dashboard_metrics dashboard-metrics"
    return [line for line in lines[:-1] if line]


def zsh_complete(path: Path, words: list[str]) -> list[str]:
    """What zsh's completion function adds for the last word (compadd recorded)."""
    quoted = " ".join(f"'{w}'" for w in words)
    program = (
        "compadd() { [[ $1 == -- ]] && shift; print -l -- $@ }\n"
        "compdef() { : }\n"
        f"source {path}\n"
        f"words=({quoted}); CURRENT={len(words)}\n"
        "_dashboard_metrics\n"
    )
    out = subprocess.run(["zsh", "-f", "-c", program], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_offers_commands_flags_and_choices(shell: str, tmp_path: Path) -> None:
    path = script(shell, tmp_path)
    if shell == "bash":

        def complete(words: list[str]) -> list[str]:
            return bash_complete(path, words)
    else:
        text = path.read_text()
        assert text.startswith("#compdef dashboard-metrics")
        registered = subprocess.run(
            ["zsh", "-f", "-c", f'compdef() {{ print -- "compdef $*" }}; source {path}'],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert registered.stdout.strip() == "compdef _dashboard_metrics dashboard-metrics"

        def complete(words: list[str]) -> list[str]:
            offered = zsh_complete(path, words)
            prefix = words[-1]  # zsh filters by the prefix itself; do the same here
            return [o for o in offered if o.startswith(prefix)]

    assert set(complete(["dashboard-metrics", ""])) >= {*COMMANDS, "--version", "--help"}
    assert complete(["dashboard-metrics", "rep"]) == ["report"]
    assert set(complete(["dashboard-metrics", "backfill", "--d"])) == {
        "--days",
        "--dry-run",
        "--data-dir",
        "--database-url",
    }
    assert set(complete(["dashboard-metrics", "cleanup", "--tier", ""])) == {"hourly", "daily"}
    assert set(complete(["dashboard-metrics", "completion", ""])) >= {"bash", "zsh"}
    assert "--source-database-url" not in complete(["dashboard-metrics", "migrate", "--"])
    assert "--org-id" in complete(["dashboard-metrics", "report", "--"])


def test_completion_scripts_load_in_interactive_shells(tmp_path: Path) -> None:
    """`eval "$(dashboard-metrics completion …)"` in a real bash and (after compinit) zsh."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    bash = subprocess.run(
        [
            "bash",
            "-c",
            'eval "$(dashboard-metrics completion bash)" && complete -p dashboard-metrics',
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert "_dashboard_metrics dashboard-metrics" in bash.stdout, bash.stderr
    zsh = subprocess.run(
        [
            "zsh",
            "-f",
            "-c",
            "autoload -Uz compinit && compinit -u -D && "
            'eval "$(dashboard-metrics completion zsh)" && print -- $_comps[dashboard-metrics]',
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert zsh.stdout.strip() == "_dashboard_metrics", zsh.stderr
