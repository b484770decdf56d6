"""The package's shape: each module imports only its own layer or lower ones, and no modules import each other
in a circle (issue 11; the map is README "Layout" and ../shared/DESIGN.md "Layers").

The checker reads the source (``ast``), never imports it, and counts every way one module can need another:
top-level imports, imports inside functions, ``importlib.import_module("sheetflow....")`` with a literal name,
and imports under ``if TYPE_CHECKING:``. Type-only imports count because a type annotation that names a higher
layer is the same knot in the design (the lower module would know the shape of the higher one); when a lower
module needs a type from above, the type belongs lower, or the lower module takes a ``Protocol``.

Edges go to the most precise module named: ``from sheetflow.tables import control`` is an edge to
``sheetflow.tables.control``; ``from sheetflow.tables.table import Table`` to ``sheetflow.tables.table`` (not to
the package ``sheetflow.tables``, whose ``__init__`` Python also runs: counting that would turn every package that
re-exports its modules into a cycle with them).

Two modules stand outside the layers: the package root ``sheetflow`` (the front door: ``from sheetflow import
run, check``; it imports commands on purpose) and ``sheetflow.__main__``. Nothing inside the package may import
the root.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import sheetflow

# Lowest first. A module belongs to the first entry that is itself or one of its parents; it may import from
# its own layer and lower ones. Within a layer any direction is fine; cycles are caught separately.
LAYERS: list[tuple[str, ...]] = [
    (  # vocabulary: what every layer speaks
        "sheetflow.problems",
        "sheetflow.contract",
        "sheetflow.names",
        "sheetflow.coerce",
        "sheetflow.coltypes",
        "sheetflow.data",
        "sheetflow.compose",
    ),
    ("sheetflow.book",),  # backends: RawSheet in, patches out
    ("sheetflow.tables",),  # typed tables, settings, state, records, archive, Control
    ("sheetflow.rules",),  # the when language, triggers, rule sheets, action parsing, templates
    ("sheetflow.engine",),  # context, one module per stage, plan, report
    ("sheetflow.mail",),  # delivery of the planned emails
    ("sheetflow.apply",),  # plan -> patches on the book
    ("sheetflow.commands",),  # the library API
    ("sheetflow.cli",),  # parser + output
    ("sheetflow.testing",),  # test support (emulators, stand-ins)
]
OUTSIDE = ("sheetflow", "sheetflow.__main__")  # the front door: may import anything, imported by nothing


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    how: str  # "import", "function", "type-only", "import_module"

    def __str__(self) -> str:
        return f"{self.source}:{self.line} -> {self.target} ({self.how})"


def modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package under ``root`` (the package's own folder), by dotted name."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking(test: ast.expr) -> bool:
    return ast.unparse(test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _edges_of(name: str, path: Path, known: set[str], package: str) -> Iterable[Edge]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"

    def resolve(target: str, attrs: Iterable[str]) -> list[str]:
        # the most precise module: ``from a.b import c`` is a.b.c when that is a module, else a.b
        out = []
        for attr in attrs:
            if f"{target}.{attr}" in known:
                out.append(f"{target}.{attr}")
            else:
                out.append(target)
        return out or [target]

    def visit(node: ast.AST, how: str) -> Iterable[Edge]:
        for child in ast.iter_child_nodes(node):
            child_how = how
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                child_how = "function"
            if isinstance(child, ast.If) and _type_checking(child.test):
                yield from (e for n in child.body for e in visit_one(n, "type-only"))
                yield from (e for n in child.orelse for e in visit_one(n, how))
                continue
            yield from visit_one(child, child_how)

    def visit_one(node: ast.AST, how: str) -> Iterable[Edge]:
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep] + ([node.module] if node.module else []))
            targets = resolve(base, (a.name for a in node.names))
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in ("importlib.import_module", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            targets = [node.args[0].value]
            how = "import_module"
        for target in targets:
            if target == package or target.startswith(package + "."):
                yield Edge(name, target, getattr(node, "lineno", 0), how)
        yield from visit(node, how)

    yield from visit(tree, "import")


def import_graph(root: Path, package: str) -> list[Edge]:
    """Every import between the package's own modules (see the module docstring for what counts)."""
    found = modules(root, package)
    known = set(found)
    return [edge for name, path in found.items() for edge in _edges_of(name, path, known, package)]


def layer_of(module: str, layers: list[tuple[str, ...]]) -> int | None:
    for index, members in enumerate(layers):
        if any(module == m or module.startswith(m + ".") for m in members):
            return index
    return None


def upward(edges: list[Edge], layers: list[tuple[str, ...]], outside: tuple[str, ...]) -> list[str]:
    """Each import from a higher layer (or of the front door), and each module no layer names."""
    wrong = []
    for edge in edges:
        if edge.source in outside:
            continue
        if edge.target in outside:
            wrong.append(f"{edge}: the package root is the front door, not a layer")
            continue
        mine, theirs = layer_of(edge.source, layers), layer_of(edge.target, layers)
        if mine is None or theirs is None:
            wrong.append(f"{edge}: {edge.source if mine is None else edge.target} is in no layer")
        elif theirs > mine:
            wrong.append(f"{edge}: imports from a higher layer ({layers[theirs][0]})")
    return wrong


def cycles(edges: list[Edge]) -> list[list[str]]:
    """The import cycles, one per strongly connected group of modules (Tarjan), each as a closed path."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if edge.source != edge.target:
            graph.setdefault(edge.source, set()).add(edge.target)
            graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def strong(v: str) -> None:  # recursion depth is bounded by the module count (~100)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return [_closed_path(graph, group) for group in groups]


def _closed_path(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    """One cycle through the group's first module, found breadth first (the shortest), for the message."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                return [*paths[v], start]
            if w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    return group  # unreachable for a strongly connected group


def problems(root: Path, package: str, layers: list[tuple[str, ...]], outside: tuple[str, ...]) -> list[str]:
    edges = import_graph(root, package)
    found = upward(edges, layers, outside)
    found += ["cycle: " + " -> ".join(path) for path in cycles(edges)]
    return found


ROOT = Path(sheetflow.__file__).parent


# Type-only cycles inside book/xlsx, left by its split (parallel work, issue 11): each names the modules of one
# cycle; remove the entry when the cycle is gone (the test below fails on an entry that no longer applies).
PENDING_CYCLES: list[str] = []


def test_no_upward_imports_and_no_cycles():
    found = problems(ROOT, "sheetflow", LAYERS, OUTSIDE)
    assert [p for p in found if p not in PENDING_CYCLES] == []
    assert [p for p in PENDING_CYCLES if p not in found] == []  # fixed: take it off the list


def test_every_module_is_in_a_layer_and_imports_resolve():
    found = modules(ROOT, "sheetflow")
    assert [m for m in found if m not in OUTSIDE and layer_of(m, LAYERS) is None] == []
    # a target the graph cannot resolve to a module (a typo, a module moved away) would hide an edge
    known = set(found)
    unknown = {e.target for e in import_graph(ROOT, "sheetflow") if e.target not in known}
    assert unknown == set()


# ``open_book`` picks a backend when asked: the backends with optional dependencies (xlwings, later gspread)
# load only for an address that needs them.
ON_DEMAND = {("sheetflow.book", "sheetflow.book.excel"), ("sheetflow.book", "sheetflow.book.xlsx")}
ON_DEMAND |= {("sheetflow.book", "sheetflow.book.gsheets")}


def test_no_imports_inside_functions():
    """No module hides a dependency inside a function (issue 11), the CLI included: the package root
    imports the commands (the front door), so an on-demand import in the CLI would save no start-up time.
    The one exception is the backend choice in ``open_book`` (:data:`ON_DEMAND`)."""
    hidden = [
        str(e)
        for e in import_graph(ROOT, "sheetflow")
        if e.how in ("function", "import_module") and (e.source, e.target) not in ON_DEMAND
    ]
    assert hidden == []


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_checker_finds_an_upward_import_and_a_cycle(tmp_path):
    """The checker can fail: a made-up package with each kind of fault, hidden the ways real ones hide."""
    pkg = _write(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "low/__init__.py": "",
            "low/a.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from pkg.high.c import C\n"  # type-only upward import
                "def f():\n"
                "    from pkg.low import b\n"  # function-level import closing a cycle a -> b -> a
                "    return b\n"
            ),
            "low/b.py": "import importlib\nimportlib.import_module('pkg.low.a')\n",
            "high/__init__.py": "",
            "high/c.py": "import pkg.low\nclass C: ...\n",  # downward: fine
            "high/d.py": "import pkg.high.c\n",
        },
    )
    layers = [("pkg.low",), ("pkg.high",)]
    found = problems(pkg, "pkg", layers, ("pkg",))
    assert found == [
        "pkg.low.a:3 -> pkg.high.c (type-only): imports from a higher layer (pkg.high)",
        "cycle: pkg.low.a -> pkg.low.b -> pkg.low.a",
    ]
    edges = {(e.source, e.target, e.how) for e in import_graph(pkg, "pkg")}
    assert ("pkg.low.a", "pkg.low.b", "function") in edges
    assert ("pkg.low.b", "pkg.low.a", "import_module") in edges
    assert ("pkg.high.d", "pkg.high.c", "import") in edges
    assert ("pkg.high.c", "pkg.low", "import") in edges


def test_checker_finds_a_cycle_across_layers_and_the_front_door(tmp_path):
    pkg = _write(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "low.py": "from . import high\n",  # relative, upward, and a cycle with high
            "high.py": "from pkg import low\nimport pkg\n",
            "main.py": "from pkg import high, low\n",  # outside the layers: may import anything
        },
    )
    found = problems(pkg, "pkg", [("pkg.low",), ("pkg.high",)], ("pkg", "pkg.main"))
    assert found == [
        "pkg.high:2 -> pkg (import): the package root is the front door, not a layer",
        "pkg.low:1 -> pkg.high (import): imports from a higher layer (pkg.high)",
        "cycle: pkg.high -> pkg.low -> pkg.high",
    ]


def test_layers_table_matches_the_packages():
    """Every sub-package and top-level module is named in the table exactly once (a new package must choose
    its layer), and each named one exists."""
    named = [m for layer in LAYERS for m in layer]
    assert len(named) == len(set(named))
    for name in named:
        importlib.import_module(name)
    tops = {".".join(m.split(".")[:2]) for m in modules(ROOT, "sheetflow")} - set(OUTSIDE)
    assert tops == set(named)
