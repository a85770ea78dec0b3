"""The package's floors, enforced: data flows one way, model → serve → observe → lab → notebook.

Every module of labkit is parsed (``ast``, nothing imported) and every import statement read —
top-level ones and those inside functions alike, since a lazy import still runs. Imports under
``if TYPE_CHECKING:`` never run, so they are left out of the cycle check (that is what they are
for: annotating with a type whose module imports yours), but they count for the floor rules: a
lower floor that so much as names a higher floor's type knows about it.

Not counted: the implicit import of a module's parent packages (``labkit/__init__.py``, the
façade, runs before any ``labkit.x``; counting it would make every module depend on everything).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "labkit"

#: Floor of each top-level name of labkit; a module may import only its own floor and lower ones.
FLOORS = {
    "errors": 0, "runtime": 0, "system": 0,
    "model": 1,
    "serve": 2,
    "observe": 3,
    "lab": 4,
    "notebook": 5,
    "cli": 6, "__init__": 6, "__main__": 6,
}
TOP_LEVEL = set(FLOORS)


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, "labkit.model.explain"
    target: str  # what it imports: a labkit module, or an outside top-level name ("aiohttp")
    line: int
    type_only: bool  # under ``if TYPE_CHECKING:``

    def __str__(self) -> str:
        return (f"{self.module} → {self.target} (line {self.line}"
                f"{', TYPE_CHECKING' if self.type_only else ''})")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))
           if "__pycache__" not in p.parts}


def floor(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:  # the package itself: the façade
        return FLOORS["__init__"]
    return FLOORS[parts[1]]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(nodes: list[ast.AST], type_only: bool = False
                ) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement under ``nodes`` — in functions, classes, try, with, loops — and
    whether it is type-only."""
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, type_only
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _statements(list(node.body), True)
            yield from _statements(list(node.orelse), type_only)
        else:
            yield from _statements(list(ast.iter_child_nodes(node)), type_only)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name of ``from <...> import`` relative to ``module``."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str, source: str | None = None, is_package: bool = False) -> list[Import]:
    if source is None:
        path = MODULES[module]
        source, is_package = path.read_text(), path.name == "__init__.py"
    out = []
    for node, type_only in _statements([ast.parse(source)]):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = _resolve(module, is_package, node)
            if base == "__future__":
                continue
            # ``from pkg import name``: the submodule when there is one, else the package.
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                     for a in node.names]
        for name in dict.fromkeys(names):
            target = name if name.split(".")[0] == "labkit" else name.split(".")[0]
            if target.startswith("labkit"):
                # ``import labkit.a.b.c`` where c is a name, not a module: the longest module
                while target not in MODULES and "." in target:
                    target = target.rsplit(".", 1)[0]
            out.append(Import(module, target, node.lineno, type_only))
    return out


ALL_IMPORTS = [imp for m in MODULES for imp in imports(m)]


# -- the reader itself -----------------------------------------------------------------------
SAMPLE = """
from __future__ import annotations
import typing
from typing import TYPE_CHECKING
import aiohttp.web
from .. import runtime
from ..model.topology import Topology
from . import display, not_a_module
import labkit.serve.pki
if TYPE_CHECKING:
    from ..lab import Lab
else:
    import json
if typing.TYPE_CHECKING:
    from ..observe import observation
class C:
    def method(self):
        try:
            from .session import shared_browser
        except ImportError:
            import IPython
        with open("x"):
            def inner():
                from labkit import Lab
"""


def test_the_reader_finds_imports_everywhere() -> None:
    """Lazy imports inside methods, TYPE_CHECKING blocks; relative imports resolved to modules."""
    found = [(i.target, i.type_only) for i in imports("labkit.notebook.runner", SAMPLE)]
    assert found == [
        ("typing", False), ("typing", False), ("aiohttp", False), ("labkit.runtime", False),
        ("labkit.model.topology", False), ("labkit.notebook.display", False),
        ("labkit.notebook", False),  # a name, not a module: the package it comes from
        ("labkit.serve.pki", False), ("labkit.lab", True), ("json", False),
        ("labkit.observe.observation", True), ("labkit.notebook.session", False),
        ("IPython", False), ("labkit", False)]
    package = imports("labkit.notebook", "from . import display\nfrom .. import lab",
                      is_package=True)
    assert [i.target for i in package] == ["labkit.notebook.display", "labkit.lab"]
    assert len(MODULES) > 40
    assert any(i.module == "labkit.serve.pki" and i.target == "trustme" for i in ALL_IMPORTS)


# -- (a) the model is pure ---------------------------------------------------------------------
def test_the_model_imports_only_the_standard_library() -> None:
    """The browser's rules and the deployment are decisions without I/O: no aiohttp, Playwright,
    websockets, trustme, socket.io, cryptography or IPython below the servers."""
    stdlib = sys.stdlib_module_names
    bad = [str(i) for i in ALL_IMPORTS if i.module.startswith("labkit.model")
           and not (i.target in stdlib or i.target == "labkit.errors"
                    or i.target == "labkit.model" or i.target.startswith("labkit.model."))]
    assert not bad, "the model must stay pure:\n" + "\n".join(bad)


# -- (b) no floor imports a higher floor -------------------------------------------------------
def test_no_floor_imports_a_higher_floor() -> None:
    order = "errors/runtime/system < model < serve < observe < lab < notebook < cli/__init__"
    bad = [f"{i} — floor {floor(i.module)} imports floor {floor(i.target)}" for i in ALL_IMPORTS
           if i.target.startswith("labkit") and floor(i.target) > floor(i.module)]
    assert not bad, f"data flows one way ({order}):\n" + "\n".join(bad)


def test_errors_runtime_and_system_import_no_floor() -> None:
    base = {"labkit.errors", "labkit.runtime", "labkit.system"}
    bad = [str(i) for i in ALL_IMPORTS
           if i.module in base and i.target.startswith("labkit") and i.target not in base]
    assert not bad, "\n".join(bad)


def test_the_lower_floors_carry_no_notebook_display() -> None:
    """HTML is the notebook's business: labkit.notebook.display registers the views of the
    lower floors' types with IPython; their classes carry no _repr_html_."""
    bad = []
    for module, path in MODULES.items():
        if floor(module) >= FLOORS["notebook"]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("_repr_") \
                    and node.name != "_repr_pretty_":
                bad.append(f"{module}: {node.name} (line {node.lineno})")
    assert not bad, "\n".join(bad)


# -- (c) no cycles -----------------------------------------------------------------------------
def runtime_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for i in ALL_IMPORTS:
        if not i.type_only and i.target in MODULES and i.target != i.module:
            graph[i.module].add(i.target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each given as one
    cycle through its members, shortest first found by breadth-first search."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_one_cycle(graph, comp) for comp in components]


def _one_cycle(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    start, members = comp[0], set(comp)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    raise AssertionError(comp)


def test_the_cycle_finder_finds_a_cycle() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_has_no_cycle() -> None:
    """Counting imports inside functions: a lazy import hides a cycle from Python, not from the
    design."""
    found = cycles(runtime_graph())
    where = {(i.module, i.target): i for i in ALL_IMPORTS if not i.type_only}
    report = ["\n  ".join(str(where[a, b]) for a, b in zip(c, c[1:], strict=False))
              for c in found]
    assert not found, "import cycles:\n  " + "\n\n  ".join(report)


# -- the top level -----------------------------------------------------------------------------
def test_the_top_level_holds_the_facade_the_lifecycle_and_four_floors() -> None:
    """A stale folder holding only __pycache__ is no module; anything else is."""
    entries = {p.stem for p in PACKAGE.glob("*.py")} | {
        p.name for p in PACKAGE.iterdir()
        if p.is_dir() and p.name != "__pycache__" and any(p.rglob("*.py"))}
    assert entries == TOP_LEVEL


@pytest.mark.parametrize("floor_name", ["model", "serve", "observe", "notebook"])
def test_each_floor_is_a_package(floor_name: str) -> None:
    assert (PACKAGE / floor_name / "__init__.py").is_file()
