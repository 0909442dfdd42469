"""The shape of the package: zero import cycles between cxrtool's modules.

The graph is read from the source with :mod:`ast`, not from ``sys.modules`` after an import:
an import inside a function or under ``if TYPE_CHECKING:`` is still an edge, so hiding a cycle
behind a lazy import does not make this test pass.

What an import statement depends on (module names are dotted, ``pkg`` means ``pkg/__init__.py``):

- ``import a.b.c`` and ``from a.b.c import name``: ``a.b.c`` and each package on the way
  (``a``, ``a.b``), because Python runs those ``__init__`` files first;
- ``from a.b import c`` where ``a/b/c.py`` (or ``a/b/c/``) exists: ``a.b`` and ``a.b.c``;
- ``from . import CLASSES``: the package ``__init__`` that defines the name.

One exception: a package that encloses the importing module is not an edge when only passed
through on the way to a submodule (``cxrtool.models.layers`` importing ``cxrtool.models.names``
does not depend on ``cxrtool/models/__init__.py``): Python has already run that ``__init__``
before the importer's first line, so passing through it orders nothing. Importing a *name* from
an enclosing package (``from .. import __version__``) is an edge like any other.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "cxrtool"


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``line``; ``hidden``: "in a function", "TYPE_CHECKING" or ""."""

    source: str
    target: str
    line: int
    hidden: str


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under the package folder ``root``."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _enclosing_packages(module: str, is_package: bool) -> set[str]:
    """The packages whose ``__init__`` runs before ``module``'s first line (itself if a package)."""
    parts = module.split(".")
    upto = len(parts) if is_package else len(parts) - 1
    return {".".join(parts[:i]) for i in range(1, upto + 1)}


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _hidden_lines(tree: ast.Module) -> dict[int, str]:
    """Line -> why, for import statements inside functions or ``if TYPE_CHECKING:`` blocks."""
    lines: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            why = "in a function"
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            why = "TYPE_CHECKING"
        else:
            continue
        for sub in ast.walk(node):
            if isinstance(sub, (ast.Import, ast.ImportFrom)):
                lines.setdefault(sub.lineno, why)
    return lines


def _from_base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The module a ``from X import ...`` reads from, relative levels resolved."""
    if not node.level:
        return node.module or ""
    parts = (module if is_package else module.rpartition(".")[0]).split(".")
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def import_edges(root: Path) -> list[Edge]:
    """Every import between modules of the package at ``root``, at any depth in the code."""
    modules = module_names(root)
    edges: list[Edge] = []
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        already_run = _enclosing_packages(module, is_package)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        hidden = _hidden_lines(tree)
        for node in ast.walk(tree):
            names_from: set[str] = set()  # packages whose __init__ this statement reads names from
            if isinstance(node, ast.Import):
                targets = {t for alias in node.names for t in _with_parents(alias.name)}
            elif isinstance(node, ast.ImportFrom):
                base = _from_base(module, is_package, node)
                targets = set(_with_parents(base))
                for alias in node.names:
                    if f"{base}.{alias.name}" in modules:
                        targets.add(f"{base}.{alias.name}")  # a submodule: ``base`` only passed through
                    else:
                        names_from.add(base)  # a name (or ``*``) defined in base's __init__
            else:
                continue
            for target in sorted(targets):
                if target not in modules or target == module:
                    continue
                if target in already_run and target not in names_from:
                    continue
                edges.append(Edge(module, target, node.lineno, hidden.get(node.lineno, "")))
    return edges


def _graph(edges: list[Edge]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    return graph


def tangles(edges: list[Edge]) -> list[set[str]]:
    """Strongly connected components of more than one module: each is one or more cycles."""
    graph = _graph(edges)

    # Tarjan's strongly connected components (iterative: no recursion limit on big graphs)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[set[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return sorted(components, key=min)


def find_cycles(edges: list[Edge]) -> list[list[str]]:
    """One shortest cycle (``[a, b, ..., a]``) through the first module of each tangle."""
    graph = _graph(edges)
    cycles = []
    for component in tangles(edges):
        first = min(component)
        # breadth-first search from `first` back to itself, inside the component
        came_from: dict[str, str] = {}
        frontier = [first]
        found = None
        while frontier and found is None:
            next_frontier = []
            for node in frontier:
                for child in sorted(graph[node] & component):
                    if child == first:
                        found = node
                        break
                    if child not in came_from:
                        came_from[child] = node
                        next_frontier.append(child)
                if found is not None:
                    break
            frontier = next_frontier
        path = [first]
        node = found
        while node != first:
            path.append(node)
            node = came_from[node]
        cycles.append([first, *reversed(path[1:]), first])
    return sorted(cycles)


def describe(cycle: list[str], edges: list[Edge]) -> str:
    """``a -> b -> a``, then every import between the modules of its tangle (line, and whether hidden)."""
    members = next(t for t in tangles(edges) if cycle[0] in t)
    steps = []
    for source, target in sorted({(e.source, e.target) for e in edges if {e.source, e.target} <= members}):
        where = sorted({(e.line, e.hidden) for e in edges if e.source == source and e.target == target})
        lines = ", ".join(f"line {line}{f' ({hidden})' if hidden else ''}" for line, hidden in where)
        steps.append(f"    {source} imports {target}: {lines}")
    return " -> ".join(cycle) + "\n" + "\n".join(steps)


# --------------------------------------------------------------------------- the real package


def test_package_has_no_import_cycles():
    edges = import_edges(PACKAGE_ROOT)
    assert ("cxrtool.cli.app", "cxrtool.console") in _pairs(edges), "the import walker misses plain imports"
    cycles = find_cycles(edges)
    assert not cycles, f"{len(cycles)} import cycle(s) in cxrtool/:\n" + "\n".join(describe(c, edges) for c in cycles)


# --------------------------------------------------------------------------- the walker itself


def _package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "pkg"
    for rel, text in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


def _pairs(edges: list[Edge]) -> set[tuple[str, str]]:
    return {(e.source, e.target) for e in edges}


def test_walker_resolves_relative_absolute_lazy_and_type_checking_imports(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "VERSION = '1'\n",
            "a.py": "from . import b\nfrom .sub import c\n",
            "b.py": "def f():\n    from .sub.c import thing\n",
            "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.e\n",
            "e.py": "from . import VERSION\nimport os\n",
            "sub/__init__.py": "",
            "sub/c.py": "from ..b import f\nfrom . import helper\n",
            "sub/helper.py": "",
        },
    )
    edges = import_edges(pkg)
    assert _pairs(edges) == {
        ("pkg.a", "pkg.b"),
        ("pkg.a", "pkg.sub"),  # passing through a package that does not enclose pkg.a
        ("pkg.a", "pkg.sub.c"),
        ("pkg.b", "pkg.sub"),
        ("pkg.b", "pkg.sub.c"),
        ("pkg.d", "pkg.e"),
        ("pkg.e", "pkg"),  # a name from the package __init__
        ("pkg.sub.c", "pkg.b"),
        ("pkg.sub.c", "pkg.sub.helper"),  # its own package only passed through: no edge
    }
    hidden = {(e.source, e.target, e.hidden) for e in edges if e.hidden}
    assert hidden == {
        ("pkg.b", "pkg.sub", "in a function"),
        ("pkg.b", "pkg.sub.c", "in a function"),
        ("pkg.d", "pkg.e", "TYPE_CHECKING"),
    }
    assert {e.line for e in edges if e.source == "pkg.d"} == {3}


def test_cycle_hidden_in_a_function_is_found(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "",
            "dataset.py": "from .report import write\n",
            "report.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .figures import Fig\n",
            "figures.py": "def draw():\n    from . import dataset\n",
            "leaf.py": "from . import dataset\n",
        },
    )
    edges = import_edges(pkg)
    cycles = find_cycles(edges)
    assert cycles == [["pkg.dataset", "pkg.report", "pkg.figures", "pkg.dataset"]]
    text = describe(cycles[0], edges)
    assert "pkg.figures imports pkg.dataset: line 2 (in a function)" in text
    assert "pkg.report imports pkg.figures: line 3 (TYPE_CHECKING)" in text


def test_cycle_through_a_package_init_is_found(tmp_path):
    """artifact -> models.layers passes through models/__init__, which imports artifact."""
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "",
            "artifact.py": "def load():\n    from .models import layers\n",
            "models/__init__.py": "from ..artifact import read\n",
            "models/layers.py": "from ..backend import keras\n",
            "backend.py": "",
        },
    )
    assert find_cycles(import_edges(pkg)) == [["pkg.artifact", "pkg.models", "pkg.artifact"]]


def test_names_from_the_top_package_make_a_cycle_only_if_it_imports_back(tmp_path):
    files = {
        "__init__.py": "VERSION = '1'\n",
        "a.py": "from . import VERSION\nfrom .b import g\n",
        "b.py": "g = 1\n",
    }
    assert find_cycles(import_edges(_package(tmp_path / "acyclic", files))) == []
    # a lazy facade in __init__ (``def load(): from .a import ...``) closes a cycle with a.py
    files["__init__.py"] = "VERSION = '1'\ndef load():\n    from .a import g\n"
    cycles = find_cycles(import_edges(_package(tmp_path / "facade", files)))
    assert cycles == [["pkg", "pkg.a", "pkg"]]


def test_no_cycle_in_a_tree_or_a_diamond(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "",
            "top.py": "from . import left, right\n",
            "left.py": "from .base import x\n",
            "right.py": "import pkg.base\n",
            "base.py": "x = 1\n",
        },
    )
    edges = import_edges(pkg)
    assert _pairs(edges) == {
        ("pkg.top", "pkg.left"),
        ("pkg.top", "pkg.right"),
        ("pkg.left", "pkg.base"),
        ("pkg.right", "pkg.base"),
    }
    assert find_cycles(edges) == []


@pytest.mark.parametrize("length", [2, 3, 7])
def test_every_cycle_length_is_found_and_spelled_out(tmp_path, length):
    names = [f"m{i}" for i in range(length)]
    files = {"__init__.py": ""}
    for i, name in enumerate(names):
        files[f"{name}.py"] = f"from . import {names[(i + 1) % length]}\n"
    cycles = find_cycles(import_edges(_package(tmp_path, files)))
    assert cycles == [[f"pkg.{n}" for n in names] + ["pkg.m0"]]
