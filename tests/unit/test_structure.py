"""The shape of the code: no import cycles, packages that import only downwards, short functions.

``make lint`` runs this file. Imports are read from the source (every ``import`` statement,
inside functions and under ``TYPE_CHECKING`` too), so an import hidden in a function still
counts. docs/architecture.md ("Packages") draws the same layers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tables", "vprov", "streams", "bench")

# Bottom first. A module may import its own layer and the layers below it, never one above.
LAYERS: list[tuple[str, ...]] = [
    ("tables",),
    ("vprov.core",),
    ("vprov.config",),
    ("vprov.kafka", "vprov.reach", "vprov.webclient", "vprov.identity"),
    ("vprov.flows",),
    ("vprov.edge",),
    ("streams.repairs",),
    ("streams",),
    ("vprov.ops",),
    ("vprov.sim",),
    ("vprov.cli",),
    ("bench",),
]
# functions in the product longer than this are split (docs/development.md)
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imported(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The project's modules that ``path`` imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import module`` imports the module; ``from module import name`` the module
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(path, name, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for number, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = number, len(prefix)
    return best


def long_functions() -> Iterator[str]:
    for name, path in modules().items():
        if not name.startswith(("vprov", "streams", "bench")):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    yield f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)"


def test_the_import_graph_has_no_cycles() -> None:
    assert cycles(graph()) == []


def test_every_module_belongs_to_a_layer() -> None:
    assert [name for name in graph() if layer_of(name) < 0 and name not in PACKAGES] == []


def test_packages_import_only_their_own_layer_and_below() -> None:
    upward = [f"{name} -> {target}" for name, targets in sorted(graph().items())
              for target in sorted(targets) if layer_of(target) > layer_of(name)]
    assert upward == []


def test_no_function_in_the_product_is_longer_than_the_limit() -> None:
    assert list(long_functions()) == []


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    # the checks above can fail: a two-module cycle through a function-level import is found
    first = tmp_path / "first.py"
    first.write_text("def f():\n    from vprov.config import load\n")
    edges = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert cycles(edges) == [["a", "b"]]
    assert imported(first, "streams.first", {"vprov.config": first}) == {"vprov.config"}


@pytest.mark.parametrize("module, expected", [("vprov.flows.query", "vprov.flows"),
                                              ("streams.repairs.watchdog", "streams.repairs"),
                                              ("streams.shell", "streams")])
def test_the_longest_prefix_names_the_layer(module: str, expected: str) -> None:
    assert LAYERS[layer_of(module)] == (expected,)
