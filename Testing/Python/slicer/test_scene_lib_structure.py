"""The module's Qt-free library stays easy to change: its modules import without a cycle, a job's
steps need no table entry to exist, and a job keeps all its state declared in ``__init__``.

Read from the source (``ast``) where the rule is about the source; run where it is about behaviour.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

SCENE_LIB = REPO / "MedDIFT" / "MedDIFTSceneLib"


def _sibling_imports(path: Path) -> set[str]:
    """The MedDIFTSceneLib modules ``path`` imports, wherever the import statement stands."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                out.add(node.module.split(".")[0])
            elif node.module and node.module.startswith("MedDIFTSceneLib."):
                out.add(node.module.split(".")[1])
    return out


def test_the_scene_library_has_no_import_cycle():
    graph = {p.stem: _sibling_imports(p) for p in SCENE_LIB.glob("*.py")}

    def visit(name, path):
        assert name not in path, "import cycle: " + " -> ".join(path + [name])
        for nxt in sorted(graph.get(name, ())):
            visit(nxt, path + [name])

    for name in graph:
        visit(name, [])
    assert "multiscan" in graph["logic"] and "logic" not in graph["multiscan"]  # the cycle that was there


def test_a_step_of_a_new_kind_runs_without_a_weight_entry():
    """A new worker command used to raise KeyError in the job's weight table."""
    pytest.importorskip("slicer_core", reason="slicer-core (Slicer's MRML library) is not installed")
    from MedDIFTSceneLib.jobsteps import STEP_WEIGHTS, LocalStep, WorkerStep

    step = WorkerStep("segment", "segment_lungs", {})
    assert "segment_lungs" not in STEP_WEIGHTS and step.weight == 1.0
    got = []
    local = LocalStep("compute", lambda: 42, got.append)
    local.start(None, lambda msg: None)
    while not local.finished():
        pass
    assert got == [42]


def test_a_match_job_declares_all_its_state_in_init():
    tree = ast.parse((SCENE_LIB / "matchjob.py").read_text())
    job = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MatchJob")
    declared, elsewhere = set(), {}
    for method in (n for n in job.body if isinstance(n, ast.FunctionDef)):
        for node in ast.walk(method):
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, (ast.AnnAssign, ast.AugAssign))
                else []
            )
            for t in targets:
                for e in t.elts if isinstance(t, ast.Tuple) else [t]:
                    if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and e.value.id == "self":
                        (
                            declared.add(e.attr)
                            if method.name == "__init__"
                            else elsewhere.setdefault(e.attr, method.name)
                        )
    assert not {a: m for a, m in elsewhere.items() if a not in declared}
    src = (SCENE_LIB / "matchjob.py").read_text()
    assert 'name == "' not in src and "name.endswith(" not in src  # no dispatch on step display names
