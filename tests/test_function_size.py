"""Functions that do one thing: none of the package's functions runs over 60 lines.

The exceptions are the declarative dashboard tables (a builder's ``build``, its ``sections``
and the functions returning a section's panels), which read as a table of panels however long.
"""

from __future__ import annotations

import ast
import os
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 60
BUILDERS = {
    f"dashboard_metrics/dashboards/{name}.py" for name in ("usage", "cost", "health", "history")
}
# What a declarative builder function returns: the dashboard, its sections, a section's panels.
TABLES = {"md.Dashboard", "Sections", "list[AnyPanel]"}

Function = ast.FunctionDef | ast.AsyncFunctionDef


def _files(root: Path) -> list[Path]:
    """The package's modules, through the layer symlinks as the wheel finds them."""
    found: list[Path] = []
    for dirpath, dirs, files in os.walk(root / "dashboard_metrics", followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in ("generated", "__pycache__"))
        found += [Path(dirpath) / name for name in sorted(files) if name.endswith(".py")]
    return found


def _is_table(relative: str, function: Function) -> bool:
    returns = function.returns
    return relative in BUILDERS and returns is not None and ast.unparse(returns) in TABLES


def function_lengths(root: Path = ROOT) -> dict[tuple[str, str], int]:
    """Lines per function (nested ones too, by qualified name), declarative tables left out."""
    lengths: dict[tuple[str, str], int] = {}
    for path in _files(root):
        relative = path.relative_to(root).as_posix()

        def visit(node: ast.AST, prefix: str, relative: str = relative) -> None:
            for child in ast.iter_child_nodes(node):
                name = prefix
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    name = f"{prefix}{child.name}"
                    if isinstance(child, Function) and not _is_table(relative, child):
                        assert child.end_lineno is not None
                        lengths[(relative, name)] = child.end_lineno - child.lineno + 1
                    name += "."
                visit(child, name)

        visit(ast.parse(path.read_text()), "")
    return lengths


LENGTHS = function_lengths()


def test_the_scan_sees_the_whole_package() -> None:
    relatives = {file for file, _ in LENGTHS}
    for layer in ("aggregator", "exporter", "dashboards", "cli", "core"):
        assert any(f.startswith(f"dashboard_metrics/{layer}/") for f in relatives), layer
    assert ("dashboard_metrics/aggregator/engine.py", "Aggregator.tick") in LENGTHS


def test_no_function_runs_over_60_lines() -> None:
    long = {
        f"{file}:{name} ({lines} lines)"
        for (file, name), lines in LENGTHS.items()
        if lines > MAX_LINES
    }
    assert not long, f"split these into functions that do one thing: {sorted(long)}"


def test_the_size_check_catches_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    source = (
        f"def long() -> None:\n{body}\n\n"
        "class C:\n    def method(self) -> None:\n        def inner() -> None:\n"
        f"{textwrap.indent(body, '        ')}\n\n"
        f"def sections() -> Sections:\n{body}\n"
    )
    for module in ("aggregator/engine.py", "dashboards/usage.py"):
        path = tmp_path / "dashboard_metrics" / module
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    found = {key: lines for key, lines in function_lengths(tmp_path).items() if lines > MAX_LINES}
    engine, usage = (
        "dashboard_metrics/aggregator/engine.py",
        "dashboard_metrics/dashboards/usage.py",
    )
    assert set(found) == {
        (engine, "long"),
        (engine, "C.method"),
        (engine, "C.method.inner"),
        (engine, "sections"),  # a table only in a dashboard builder
        (usage, "long"),
        (usage, "C.method"),
        (usage, "C.method.inner"),
    }
