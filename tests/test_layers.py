"""The import structure: one import root, layers that point down, no import cycles.

cli -> {aggregator (writer), exporter (readers), dashboards} -> core. The writer, the readers
and the dashboards never import each other; core imports none of them.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "dashboard_metrics"
LAYERS = ("aggregator", "exporter", "dashboards")
# What each part of the package may import from the package (besides itself).
ALLOWED = {
    "core": set(),
    "aggregator": {"core"},
    "exporter": {"core"},
    "dashboards": {"core"},
    "cli": {"core", *LAYERS},
}


def _modules() -> dict[str, Path]:
    """Every module of the package by its one name, found as the wheel finds them."""
    found: dict[str, Path] = {}
    for dirpath, dirs, files in os.walk(ROOT / PACKAGE, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in ("generated", "__pycache__"))
        for name in files:
            if name.endswith(".py"):
                parts = list((Path(dirpath) / name).relative_to(ROOT).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                found[".".join(parts)] = Path(dirpath) / name
    return found


MODULES = _modules()


def _imports(module: str, path: Path, *, module_level: bool) -> set[str]:
    """Absolute names ``module`` imports (relative imports resolved). With ``module_level``,
    only what runs at import time: not inside functions, not under TYPE_CHECKING."""
    tree = ast.parse(path.read_text())
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package[: len(package) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                if not module_level:
                    visit(node.body)
                visit(node.orelse)
            elif module_level and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    children = getattr(node, field, None)
                    if isinstance(children, list):
                        visit([c for c in children if isinstance(c, ast.stmt)])
                        for handler in children:
                            if isinstance(handler, ast.ExceptHandler):
                                visit(handler.body)

    visit(tree.body)
    return found


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "root"


def test_every_part_imports_only_the_layers_below_it() -> None:
    wrong = []
    for module, path in MODULES.items():
        part = _part(module)
        if part not in ALLOWED:
            continue  # dashboard_metrics itself, __main__
        for name in _imports(module, path, module_level=False):
            if not name.startswith(f"{PACKAGE}."):
                continue
            target = name.split(".")[1]
            if target != part and target not in ALLOWED[part] and target in ALLOWED:
                wrong.append(f"{module} imports {name}")
    assert wrong == []


def test_nothing_imports_the_layers_under_a_second_name() -> None:
    """`aggregator`, `exporter`, `dashboards` exist only as dashboard_metrics.<name>."""
    sources = [*MODULES.values(), *ROOT.glob("tests/*.py"), *ROOT.glob("benchmarks/*.py")]
    wrong = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sources
        for name in _imports("x", path, module_level=False)
        if name.split(".")[0] in LAYERS or name.split(".")[0] == "core"
    ]
    assert wrong == []


def test_no_import_cycles() -> None:
    """Import-time imports form no cycle, also not through a package's ``__init__`` (importing
    a module imports its parent packages first)."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        names = _imports(module, path, module_level=True)
        parents = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        graph[module] = {n for n in names | parents if n in MODULES and n != module}
    cycles: list[list[str]] = []
    done: set[str] = set()

    def walk(module: str, stack: list[str]) -> None:
        if module in stack:
            cycles.append([*stack[stack.index(module) :], module])
            return
        if module in done:
            return
        for target in sorted(graph[module]):
            walk(target, [*stack, module])
        done.add(module)

    for module in sorted(graph):
        walk(module, [])
    assert cycles == []


def test_the_installed_package_is_the_only_import_root(tmp_path: Path) -> None:
    """Outside the repository, only dashboard_metrics imports; every module loads by itself
    (no import-order dependency) and no second name appears in sys.modules."""
    names = sorted(m for m in MODULES if ".migrations" not in m)
    probe = (
        "import importlib, importlib.util, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"second = [m for m in sys.modules if m.split('.')[0] in {(*LAYERS, 'core')!r}]\n"
        f"visible = [m for m in {(*LAYERS, 'core')!r} if importlib.util.find_spec(m)]\n"
        "print('SECOND', second, 'VISIBLE', visible)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SECOND [] VISIBLE []" in result.stdout


@pytest.mark.parametrize("module", sorted(m for m in MODULES if ".migrations.versions." in m))
def test_migrations_are_frozen(module: str) -> None:
    """A migration never imports live code: a later change to it would rewrite history."""
    live = {n for n in _imports(module, MODULES[module], module_level=False) if PACKAGE in n}
    assert live == set()


def test_importing_a_module_only_defines_things() -> None:
    """No import-time side effects: no module calls anything at its top level (registries,
    logging set-up, table changes belong in functions the caller runs)."""
    calls = [
        f"{module}:{node.lineno}"
        for module, path in MODULES.items()
        if ".migrations" not in module
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call | ast.Await)
    ]
    assert calls == []


def test_import_linter_keeps_the_layers_contract() -> None:
    """The same rule as a contract of the ecosystem's tool (pyproject's [tool.importlinter]),
    which contributors run as `uv run lint-imports`."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout
