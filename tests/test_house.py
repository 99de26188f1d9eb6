"""The house: no import circles (deferred imports inside functions count too), losses/ knows nothing of the
harness, and `harness --help` / `--version` answer without importing torch or Optuna."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import losses
from harness.names import loss_names

REPO = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the modules of harness/ and losses/ it imports, wherever the import statement stands."""
    paths = {_module_name(p): p for package in ("harness", "losses") for p in (REPO / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            edges.update(t for t in targets if t in paths and t != name)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_circles_and_losses_know_nothing_of_the_harness():
    graph = _import_graph()
    assert {"harness.tables", "harness.publish", "harness.lookups", "losses.catalog"} <= set(graph)
    assert _cycles(graph) == []
    assert not [(a, b) for a, edges in graph.items() if a.startswith("losses") for b in edges
                if b.startswith("harness")]


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]


def test_help_lists_the_losses_the_registry_has_without_importing_them():
    assert loss_names() == losses.available()


def test_help_and_version_import_neither_torch_nor_optuna():
    for flag in ("--help", "--version"):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "harness.cli", flag], capture_output=True,
                              text=True, cwd=REPO, timeout=60)
        assert done.returncode == 0, done.stderr
        imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")}
        assert {"harness", "harness.names", "harness.protocol"} <= imported  # it did run the command line
        assert not {m for m in imported if m.split(".")[0] in ("torch", "optuna", "numpy", "pandas")}, flag
