"""The package's modules import each other without cycles: found by walking unrolled/, not from a list.

Every ``import unrolled...`` and ``from unrolled... import`` (relative ones
too) anywhere in a module, inside functions included, is an edge to the
module it names: ``from unrolled.data import obtain`` to ``unrolled.data``,
``from unrolled.data import registry`` to ``unrolled.data.registry``.
Imports under ``if TYPE_CHECKING:`` never run, so they are left out. A
package's own ``__init__`` being run first when one of its submodules is
imported is not an edge (Python handles a package that is still importing).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "unrolled"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

Graph = dict[str, set[str]]


def module_name(path: Path) -> str:
    """``unrolled/data/text.py`` -> ``unrolled.data.text``; ``unrolled/data/__init__.py`` -> ``unrolled.data``."""
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of the package by name, found by walking its folder."""
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def type_checking_only(tree: ast.Module) -> set[int]:
    """The ids of the nodes inside ``if TYPE_CHECKING:`` blocks."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            skipped |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    return skipped


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that the module ``name`` at ``path`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped = type_checking_only(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in known else base)
    edges = set()
    for target in targets:
        while target and target not in known:  # import unrolled.a.b.c where c is a name: the nearest module
            target = target.rpartition(".")[0]
        if target.startswith(PACKAGE) and target != name:
            edges.add(target)
    return edges


def import_graph() -> Graph:
    found = modules()
    return {name: imported(name, path, set(found)) for name, path in found.items()}


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle through each strongly connected group of two or more modules (Tarjan), as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [closed_path(graph, set(group)) for group in sorted(groups)]


def closed_path(graph: Graph, group: set[str]) -> list[str]:
    """A cycle within ``group`` from its first module back to it (breadth-first, so a shortest one)."""
    start = min(group)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for other in sorted(graph[node] & group):
                if other == start:  # node's path back to start, walked backwards, closes the cycle
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if other not in previous:
                    previous[other] = node
                    following.append(other)
        frontier = following
    return sorted(group)


def test_the_walk_finds_the_package_and_its_edges() -> None:
    graph = import_graph()
    assert {"unrolled", "unrolled.data", "unrolled.data.registry", "unrolled.atomic"} <= set(graph)
    assert "unrolled.atomic" in graph["unrolled.data.registry"]
    assert "unrolled.data.sources.debian" in graph["unrolled.data.synth"]


def test_cycles_are_found_and_printed_as_paths() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"f"}, "f": {"e"}}
    assert cycles(graph) == [["a", "b", "c", "a"], ["e", "f", "e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("scope", ["unrolled.data", "unrolled"])
def test_no_import_cycles(scope: str) -> None:
    """No module imports itself through others: the data package first, then the whole package."""
    graph = import_graph()
    def within(name: str) -> bool:
        return name == scope or name.startswith(scope + ".")

    inside = {name: {other for other in targets if within(other)} for name, targets in graph.items() if within(name)}
    found = cycles(inside)
    assert not found, f"import cycles under {scope}:\n" + "\n".join(" -> ".join(cycle) for cycle in found)
