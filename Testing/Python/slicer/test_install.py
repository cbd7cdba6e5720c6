"""Installing MedDIFT's Python dependencies in Slicer, driven through the module's own panel.

Real parts: Slicer's own ``util.py`` and ``packaging.py`` (5.12.3), this Python's installed
distributions and their metadata, Python's own import block (``sys.modules[name] = None`` makes
``importlib`` report a package as absent). No package index can be reached here, so where Slicer
would run pip, a recorder stands in and says what pip would have been given.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path
from subprocess import CalledProcessError

import pytest

REPO = Path(__file__).resolve().parents[3]
REQUIREMENTS = REPO / "MedDIFT" / "Resources" / "requirements.txt"


def _scene(w):
    import slicer
    from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
    from MedDIFTSceneLib.scene import add_volume_node, write_markups

    pair = make_pair(shape=(32, 32, 32), spacing=(4.0, 4.0, 4.0), seed=2)
    fixed = add_volume_node(slicer.mrmlScene, pair.fixed, "fixed")
    moving = add_volume_node(slicer.mrmlScene, pair.moving, "moving")
    points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "landmarks")
    write_markups(points, sample_landmarks(pair, n=2, seed=2), locked=False)
    w.ui.fixedVolumeSelector.setCurrentNode(fixed)
    w.ui.movingVolumeSelector.setCurrentNode(moving)
    w.ui.fixedLandmarksSelector.setCurrentNode(points)


class _Pip:
    """Where Slicer's pip_install would run pip: records its arguments; ``fail``: exits as pip does."""

    def __init__(self, fail: bool = False):
        self.calls, self.fail = [], fail

    def __call__(self, requirements, **kwargs):
        self.calls.append((list(requirements), kwargs))
        if self.fail:
            raise CalledProcessError(1, ["PythonSlicer", "-m", "pip", "install"])


def test_pip_install_gets_the_constraints_on_slicer_5_10_and_5_12(slicer_app, tmp_path, monkeypatch):
    """Slicer 5.10's ``pip_install(requirements)`` takes only pip's arguments (its signature, from
    the v5.10.0 tag); 5.12's takes ``constraints=``. Both get the constraints file."""
    import slicer.packaging

    from MedDIFTSceneLib.dependencies import pip_install_constrained

    constraints = tmp_path / "constraints.txt"
    given = []

    def pip_install_5_10(requirements):  # Slicer 5.10.0's signature
        given.append(requirements)

    pip_install_constrained(pip_install_5_10, ["monai>=1.6,<1.7"], constraints)
    assert given == [["monai>=1.6,<1.7", "-c", str(constraints)]]
    recorded = _Pip()
    monkeypatch.setattr(slicer.packaging, "pip_install", recorded)  # under 5.12's own slicer.util.pip_install
    pip_install_constrained(slicer_app.util.pip_install, ["monai>=1.6,<1.7"], constraints)
    assert recorded.calls == [(["monai>=1.6,<1.7"], {"constraints": str(constraints)})]


def test_the_dense_options_need_convexadam_and_testing_mode_installs_nothing(module_widget, monkeypatch):
    import slicer

    w = module_widget
    _scene(w)
    pip = _Pip()
    monkeypatch.setattr(slicer.util, "pip_install", pip)
    monkeypatch.setitem(sys.modules, "convexAdam", None)  # ConvexAdam absent, as in a fresh Slicer
    assert w.logic.ensureDependencies(dense=False)  # matching alone does not need it
    w.ui.warpMovingCheckBox.checked = True  # the warped volume needs the dense registration
    w.ui.applyButton.click()
    status = w.ui.statusLabel.text
    assert w.job is None and "convexadam is not installed" in status and "testing mode installs nothing" in status
    assert pip.calls == [] and status in w.ui.logTextEdit.toPlainText()


def test_a_torch_too_old_for_monai_is_reported_with_the_fix(module_widget, monkeypatch):
    import slicer

    w = module_widget
    _scene(w)
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "2.4.1" if name == "torch" else real(name))
    shown = []
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, *a, **k: shown.append(text))
    w.ui.applyButton.click()
    status = w.ui.statusLabel.text
    monai_needs = next(r for r in importlib.metadata.requires("monai") if r.startswith("torch"))
    assert w.job is None and f"torch 2.4.1 is too old for MONAI {real('monai')}" in status, status
    assert monai_needs.replace("torch", "") in status and "PyTorch Utils module" in status
    assert shown == [status]


def test_a_failed_install_is_shown_in_the_panel(module_widget, monkeypatch):
    import qt

    import slicer

    w = module_widget
    _scene(w)
    slicer.app.setTestingEnabled(False)  # a user's Slicer: asked, then pip runs
    monkeypatch.setitem(sys.modules, "einops", None)
    pip = _Pip(fail=True)
    monkeypatch.setattr(slicer.util, "pip_install", pip)
    qt.answerNextDialog("QMessageBox", qt.QMessageBox.Ok)  # "Install them now?"
    w.ui.applyButton.click()
    status = w.ui.statusLabel.text
    assert w.job is None and status.startswith("Installation failed: einops is not installed"), status
    assert pip.calls and any(r.startswith("einops") for r in pip.calls[0][0])


def test_versions_outside_the_requirements_are_reported(tmp_path):
    from MedDIFTSceneLib.dependencies import dependency_problems

    assert dependency_problems(REQUIREMENTS) == []  # this environment is complete
    strict = tmp_path / "requirements.txt"
    strict.write_text("monai>=99\neinops>=0.7\n")
    have = importlib.metadata.version("monai")
    assert dependency_problems(strict) == [
        f"monai {have} is installed but MedDIFT needs monai>=99: it is replaced on install"
    ]


def test_the_worker_runs_in_pythonslicer_never_in_the_slicer_binary(tmp_path):
    """A Slicer install: ``Slicer-5.10/bin/SlicerApp-real`` (what ``sys.executable`` can be inside
    Slicer) beside ``bin/PythonSlicer``; started with ``-m``, the application would open a second Slicer."""
    import shutil

    from MedDIFTSceneLib.dependencies import worker_python

    bin_dir = tmp_path / "Slicer-5.10" / "bin"
    bin_dir.mkdir(parents=True)
    app, python_slicer = bin_dir / "SlicerApp-real", bin_dir / "PythonSlicer"
    for f in (app, python_slicer):
        f.write_text("#!/bin/sh\n")
        f.chmod(0o755)
    nowhere = lambda name: shutil.which(name, path=str(tmp_path / "empty"))  # noqa: E731 - PATH without Slicer
    assert worker_python(nowhere, str(app)) == str(python_slicer)
    assert worker_python(nowhere, str(tmp_path / "Slicer-5.10" / "Slicer")) == str(python_slicer)  # the launcher
    python_slicer.unlink()
    with pytest.raises(RuntimeError, match="cannot find Slicer's PythonSlicer"):
        worker_python(nowhere, str(app))
    assert worker_python(nowhere, sys.executable) == sys.executable  # outside Slicer: a Python itself
    on_path = lambda name: str(bin_dir / name) if name == "PythonSlicer" else None  # noqa: E731
    assert worker_python(on_path, str(app)) == str(bin_dir / "PythonSlicer")
    assert os.path.basename(worker_python()) != "SlicerApp-real"
