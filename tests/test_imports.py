"""The import graph of nnx and backends has no cycle, deferred imports included (only imports
for type checkers, under ``if TYPE_CHECKING:``, are left out)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("nnx", "backends")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST, known: set[str]) -> set[str]:
    """The project modules that ``tree`` imports anywhere but under ``if TYPE_CHECKING:``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from nnx import training` imports the module nnx.training
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name in known}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    known = set(files)
    return {name: imported_modules(ast.parse(path.read_text()), known) - {name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if nxt.split(".")[0] == nxt and node.startswith(nxt + "."):
                continue  # a submodule's import of its own package's __init__ (runs first anyway)
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := walk(node)):
            return cycle
    return None


def test_nnx_and_backends_have_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle_through_a_deferred_import():
    tree = ast.parse("def f():\n    from nnx import model\n")
    graph = {"nnx.model_file": imported_modules(tree, {"nnx.model", "nnx.model_file"}), "nnx.model": {"nnx.model_file"}}
    assert find_cycle(graph) == ["nnx.model", "nnx.model_file", "nnx.model"]


@pytest.mark.parametrize("package", PACKAGES)
def test_the_graph_covers_every_module(package):
    graph = import_graph()
    assert {name for name in graph if name.split(".")[0] == package} == {
        module_name(p) for p in (ROOT / package).rglob("*.py")
    }
