"""Import layering between dcpue's top-level folders, from every module's imports (ast).

Every ``import`` and ``from ... import`` in every module is counted, function-level and
``TYPE_CHECKING`` ones included (a lazy import is still a dependency). Rules (the developers'
guide): metrics never imports carbon; core imports nothing of dcpue; no cycle between
top-level folders (the ``package-dir`` packages of pyproject.toml, and bench/).

The root package ``dcpue`` (``dcpue/cli.py``, the command dispatcher, and ``__main__``) is the
entry point, not a layer: it may import any folder, and only the daemon's in-process command
runner (``service/remote_cli.py``, ``POST /api/cli`` runs ``dcpue.cli.main``) imports it back.
"""

from __future__ import annotations

import ast
import functools
import itertools
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
    "package-dir"]
#: Top-level folder of each layer (``dcpue.metrics`` -> ``metrics``), and bench/.
FOLDERS = {name.split(".")[1]: ROOT / path for name, path in PACKAGES.items() if "." in name}
FOLDERS["bench"] = ROOT / "bench"
ENTRY = "dcpue"
ENTRY_CALLERS = {"service/remote_cli.py"}


def imported(path: Path) -> set[str]:
    """Absolute module names ``path`` imports (relative imports resolved to its package)."""
    return imports_of(path.read_text(encoding="utf-8"), _module(path))


def imports_of(source: str, module: str) -> set[str]:
    """Absolute module names the source of ``module`` imports, at any depth."""
    tree = ast.parse(source, module)
    package = module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                out.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                out.add(node.module)
    return out


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    folder = rel.parts[0]
    prefix = folder if folder in ("dcpue", "bench") else f"dcpue.{folder}"
    return ".".join((prefix, *rel.parts[1:]))


def layer_of(module: str) -> str | None:
    """The folder a dcpue module name belongs to (``ENTRY`` for the root package)."""
    parts = module.split(".")
    if parts[0] == "bench":
        return "bench"
    if parts[0] != "dcpue":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in FOLDERS else ENTRY


@functools.cache
def edges() -> dict[str, dict[str, set[str]]]:
    """folder -> imported folder -> the files importing it (parsed once per test run)."""
    out: dict[str, dict[str, set[str]]] = {f: {} for f in FOLDERS}
    for folder, path in FOLDERS.items():
        for file in sorted(path.rglob("*.py")):
            for module in imported(file):
                target = layer_of(module)
                if target is not None and target != folder:
                    out[folder].setdefault(target, set()).add(
                        str(file.relative_to(ROOT)))
    return out


def test_the_checker_sees_function_level_imports():
    """The parser finds an import inside a function and resolves a relative one."""
    src = ("def f():\n    from dcpue.carbon.scope2 import total\n    return total\n"
           "from .energy import accumulated\n")
    found = imports_of(src, "dcpue.metrics.probe")
    assert {"dcpue.carbon.scope2", "dcpue.metrics.energy"} <= found
    assert layer_of("dcpue.carbon.scope2") == "carbon" and layer_of("dcpue.cli") == ENTRY


def test_metrics_never_imports_carbon():
    assert edges()["metrics"].get("carbon", set()) == set()


def test_core_imports_nothing_of_dcpue():
    assert edges()["core"] == {}


def test_only_the_remote_command_runner_imports_the_entry_point():
    callers = {f for targets in edges().values() for f in targets.get(ENTRY, set())}
    assert callers <= ENTRY_CALLERS


def test_no_cycle_between_folders():
    graph = {f: set(t) - {ENTRY} for f, t in edges().items()}
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for folder in sorted(graph):
        if folder not in state and (cycle := visit(folder)):
            where = {f"{a} -> {b}": sorted(edges()[a][b]) for a, b in itertools.pairwise(cycle)}
            raise AssertionError(f"import cycle {' -> '.join(cycle)}: {where}")
