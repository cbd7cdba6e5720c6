"""The engine's shape rules, read from the source (AST), so that a change breaking one fails here:

- no function in ``MedDIFTLib`` is over 60 lines: ``end_lineno - lineno + 1`` of each ``def`` (decorators not
  counted, the docstring counted: a function is what a reader has to hold at once);
- no import cycle among ``MedDIFTLib`` modules: module-level and function-level imports alike (an import inside
  a function hides a cycle at import time, not from a reader);
- ``MedDIFTLib`` never imports Slicer, Qt, VTK or CTK: the engine runs without Slicer (CLI, server, batch).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "MedDIFTLib"
MAX_LINES = 60
GUI_ROOTS = {"slicer", "qt", "vtk", "ctk", "PythonQt", "vtkmodules", "qSlicerBaseQTCorePythonQt"}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every Python file of the package (``pkg/__init__.py`` is ``pkg``)."""
    out = {}
    for path in sorted((REPO / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imported(module: str, path: Path, tree: ast.AST) -> set[str]:
    """Absolute names of everything ``tree`` imports, anywhere in the file: ``from .x import y`` gives
    ``pkg.x.y``, which :func:`_graph` reads as the module ``pkg.x.y`` when there is one, else ``pkg.x``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            names.update(f"{stem}.{alias.name}" for alias in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (a name resolves to the longest module prefix it has)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for imp in _imported(name, path, ast.parse(path.read_text(), str(path))):
            parts = imp.split(".")
            for end in range(len(parts), 0, -1):
                cand = ".".join(parts[:end])
                if cand in mods:
                    if cand != name:
                        deps.add(cand)
                    break
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def long_functions(limit: int = MAX_LINES) -> list[str]:
    """``file:line name (N lines)`` for every function or method over ``limit`` lines."""
    out = []
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = node.end_lineno - node.lineno + 1
                if size > limit:
                    out.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({size} lines)")
    return out


def test_no_engine_function_is_over_sixty_lines():
    found = long_functions()
    assert not found, f"functions over {MAX_LINES} lines (split them by job):\n" + "\n".join(found)


def test_engine_modules_import_without_cycles():
    found = _cycles(_graph())
    assert not found, "modules that import each other:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_engine_never_imports_slicer_qt_vtk_or_ctk():
    bad = []
    for name, path in _modules().items():
        roots = {imp.split(".")[0] for imp in _imported(name, path, ast.parse(path.read_text(), str(path)))}
        bad += [f"{path.relative_to(REPO)} imports {r}" for r in sorted(roots & GUI_ROOTS)]
    assert not bad, "\n".join(bad)


def test_cycle_finder_sees_a_cycle_and_a_chain():
    """The checker itself: a three-module loop is one component; a chain and a self-import are none."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_import_reader_resolves_relative_and_function_level_imports():
    """An import inside a function counts: it hides a cycle from Python at import time, not from a reader."""
    tree = ast.parse("from . import a\nfrom ..b import c\ndef f():\n    from .d import e\n    import x.y\n")
    assert _imported("P.q.m", Path("m.py"), tree) == {"P.q.a", "P.b.c", "P.q.d.e", "x.y"}
    assert _imported("P.q", Path("__init__.py"), ast.parse("from .r import s")) == {"P.q.r.s"}
