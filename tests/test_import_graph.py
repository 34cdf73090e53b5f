"""The import graph of ``ace`` and ``campaigns``: no import cycles, and ``ace`` never imports
``campaigns`` (DESIGN.md: ``ace/`` is a library, ``campaigns/`` its client).

Every module is parsed with :mod:`ast` (nothing is imported). Imports inside functions count,
since they still tie the modules together; imports under ``if TYPE_CHECKING:`` do not, since
they never run. ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else
to ``pkg`` (a package's ``__init__``); ``import a.b.c`` is an edge to ``a.b.c``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ace", "campaigns")


@attrs.frozen
class Edge:
    """``source`` imports ``target`` at ``line``."""

    source: str
    target: str
    line: int
    type_checking: bool


def modules(package: str) -> dict[str, Path]:
    """Module name -> file, for every module of ``package`` (migrations left out)."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if "migrations" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement anywhere in ``tree`` (functions and classes included), with
    whether it sits under ``if TYPE_CHECKING:``."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, type_checking = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, type_checking
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend((child, True) for child in node.body)
            stack.extend((child, type_checking) for child in node.orelse)
            continue
        stack.extend((child, type_checking) for child in ast.iter_child_nodes(node))


def _known(name: str, known: set[str]) -> str | None:
    """``name``, or its longest prefix that is a known module (``None``: outside the packages)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def edges_in(name: str, source: str, known: set[str], *, is_package: bool) -> Iterator[Edge]:
    """The imports of module ``name`` (its ``source``) that resolve to ``known`` modules."""
    seen = set()
    for node, type_checking in _imports(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = name.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            targets = []
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                targets.append(submodule if submodule in known else module)
        for target in targets:
            resolved = _known(target, known)
            if resolved is not None and resolved != name and (resolved, node) not in seen:
                seen.add((resolved, node))
                yield Edge(name, resolved, node.lineno, type_checking)


def import_graph() -> list[Edge]:
    """Every import edge between modules of :data:`PACKAGES`."""
    files = {name: path for package in PACKAGES for name, path in modules(package).items()}
    known = set(files)
    return [
        edge
        for name, path in files.items()
        for edge in edges_in(
            name, path.read_text(encoding="utf-8"), known, is_package=path.name == "__init__.py"
        )
    ]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the strongly connected components of ``graph``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _describe(component: list[str], edges: list[Edge]) -> str:
    members = set(component)
    lines = [f"cycle of {len(component)} modules: {', '.join(component)}"]
    for edge in sorted(set(edges), key=lambda e: (e.source, e.line, e.target)):
        if edge.source in members and edge.target in members:
            lines.append(f"    {edge.source} (line {edge.line}) imports {edge.target}")
    return "\n".join(lines)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package):
    edges = [edge for edge in import_graph() if not edge.type_checking]
    graph: dict[str, set[str]] = {name: set() for package in PACKAGES for name in modules(package)}
    for edge in edges:
        graph[edge.source].add(edge.target)
    cycles = [
        component
        for component in strongly_connected(graph)
        if len(component) > 1
        and any(name == package or name.startswith(f"{package}.") for name in component)
    ]
    report = "\n".join(_describe(component, edges) for component in cycles)
    if report:
        print(report)
    assert not cycles, f"import cycles in {package}:\n{report}"


def test_ace_never_imports_campaigns():
    """Not even for type checking."""
    offending = [
        f"{edge.source} (line {edge.line}) imports {edge.target}"
        for edge in import_graph()
        if (edge.source == "ace" or edge.source.startswith("ace."))
        and (edge.target == "campaigns" or edge.target.startswith("campaigns."))
    ]
    assert not offending, "\n".join(offending)


def test_the_parser_sees_every_kind_of_import():
    """Imports in functions, relative imports and ``from pkg import submodule`` count;
    ``if TYPE_CHECKING:`` imports are marked, and their ``else`` branch is not."""
    known = {"pkg", "pkg.a", "pkg.sub", "pkg.sub.b", "pkg.sub.c", "pkg.typed", "pkg.other"}
    source = """
import os
import pkg.sub.b
from typing import TYPE_CHECKING
from . import c
from .. import a
from ..sub import b as bee
from pkg import Thing
if TYPE_CHECKING:
    from pkg import typed
else:
    import pkg.other

def later():
    from pkg.a import function
"""
    found = {
        (e.target, e.type_checking) for e in edges_in("pkg.sub.c2", source, known, is_package=False)
    }
    assert found == {
        ("pkg.sub.b", False),
        ("pkg.sub.c", False),
        ("pkg.a", False),
        ("pkg", False),
        ("pkg.typed", True),
        ("pkg.other", False),
    }
    # In a package's __init__, "." is the package itself.
    init = {e.target for e in edges_in("pkg.sub", "from . import b", known, is_package=True)}
    assert init == {"pkg.sub.b"}


def test_strongly_connected_components():
    components = strongly_connected(
        {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "d"}, "e": set()}
    )
    assert sorted(components) == [["a", "b", "c"], ["d"], ["e"]]
