"""Issue 14's defects 3, 6-10 and the worker-environment line, each checked where it lives.

Real: the MRML scene (slicer-core), Slicer's own ``slicer.util`` and ``packaging``, the worker
process. Replaced, and said so in each test: ``pip_install`` and ``launchConsoleProcess`` (no package
index, no network here) and, for defect 3, the answer to "which modules are missing".
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import qt

ENGINE = {"backbone": "mind-ssc", "device": "cpu", "use_cache": False}


def _phantom(scene, n=4):
    from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
    from MedDIFTSceneLib.scene import add_volume_node, write_markups

    pair = make_pair(shape=(64, 64, 64), spacing=(5.0, 5.0, 5.0), seed=5)
    fixed = add_volume_node(scene, pair.fixed, "fixed")
    moving = add_volume_node(scene, pair.moving, "moving")
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "F")
    write_markups(points, sample_landmarks(pair, n=n, seed=5), locked=False)
    return fixed, moving, points


def test_writing_volumes_never_blocks_progress_is_monotonic_and_features_go_with_the_worker(
    slicer_app, monkeypatch, tmp_path
):
    """Defect 7: both volumes were written on the GUI thread when the job was created. Here writing
    waits for an event: creating the job and polling it must still return at once. Defect 6: once the
    worker is gone, a live match says "press Apply again" instead of failing on a None client."""
    import MedDIFTSceneLib.matchjob as logic_module
    from MedDIFTLib.errors import InputError
    from MedDIFTSceneLib.logic import MatchRequest, MedDIFTLogicCore

    release = threading.Event()
    real_write = logic_module.write_volume

    def slow_write(volume, path):
        release.wait(20)
        real_write(volume, path)

    monkeypatch.setattr(logic_module, "write_volume", slow_write)
    scene = slicer_app.mrmlScene
    fixed, moving, points = _phantom(scene)
    logic = MedDIFTLogicCore(scene, env=dict(os.environ, MEDDIFT_WEIGHTS_DIR=str(tmp_path / "none")))
    try:
        t0 = time.monotonic()
        job = logic.start_match(
            MatchRequest(fixed.GetID(), moving.GetID(), points.GetID(), engine=ENGINE, matching={"radius_mm": 25.0})
        )
        for _ in range(20):
            job.poll()
        assert time.monotonic() - t0 < 3.0, "creating or polling the job waited for the volumes to be written"
        assert [s.name for s in job._steps if s.name.startswith("write")] or job.stage.startswith("write")
        release.set()
        fractions = []
        while job.poll():
            fractions.append(job.fraction)
            time.sleep(0.02)
        assert job.error is None, job.error
        fractions.append(job.fraction)
        assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(set(fractions)) > 3
        assert logic.has_features(job)
        logic.kill_worker()  # Cancel of a later job, a crash, a restart
        with pytest.raises(InputError, match="press Apply again"):
            logic.match_point(job, 0)
    finally:
        release.set()
        logic.kill_worker()


def test_worker_environment_is_read_at_each_start(module_widget):
    """The 'Also' line: the environment was captured once, so "force CPU" needed a module reload. Now
    it is read at each worker start, and a running worker started with another one is replaced."""
    w = module_widget
    logic = w.logic.core
    assert "CUDA_VISIBLE_DEVICES" not in logic.worker_env() or os.environ.get("CUDA_VISIBLE_DEVICES") == ""
    qt.QSettings().setValue("MedDIFT/ForceCPU", "true")
    assert logic.worker_env()["CUDA_VISIBLE_DEVICES"] == ""

    class RunningWorker:  # stand-in for a live WorkerClient started before the setting changed
        alive, killed = True, False

        def kill(self):
            self.killed = True

    old = RunningWorker()
    logic.client, logic._client_env = old, {"PATH": "/bin"}
    steps = logic.worker_steps({}, {})
    assert old.killed and [s.name for s in steps][:1] == ["start worker"]
    assert logic.client.env["CUDA_VISIBLE_DEVICES"] == ""
    logic.client = None


def test_worker_has_no_console_window_on_windows():
    """Defect 8: on Windows the worker's console window stayed open."""
    from MedDIFTLib.service.client import popen_options

    assert popen_options("nt")["creationflags"] & 0x08000000  # CREATE_NO_WINDOW
    assert popen_options("nt")["creationflags"] & 0x00000200  # CREATE_NEW_PROCESS_GROUP (kill takes children)
    assert popen_options("posix") == {"start_new_session": True}


def test_weights_download_errors_environment_and_no_torch_in_slicer(module_widget, monkeypatch):
    """Defect 9: logProcessOutput raises CalledProcessError, so the friendlier message never ran; the
    process must get Slicer's environment (useStartupEnvironment=False, as executePythonModule does);
    and finding the default folder must not import torch into Slicer's process."""
    import slicer

    calls = []

    class Finished:
        def __init__(self, code):
            self.returncode, self.args = code, ["PythonSlicer"]
            import io

            self.stdout, self.stderr = io.StringIO("downloading\n"), None

        def wait(self):
            return self.returncode

        def poll(self):
            return self.returncode

    def launch(args, **kwargs):
        calls.append(kwargs)
        return Finished(calls[-1]["updateEnvironment"].get("EXIT", 0))

    # no network here: the launcher is replaced; Slicer's own logProcessOutput reads the finished process
    monkeypatch.setattr(slicer.util, "launchConsoleProcess", launch)
    monkeypatch.setitem(sys.modules, "torch", None)  # importing torch now fails
    for name in [m for m in sys.modules if m.startswith("MedDIFTLib.features.maisi")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setenv("MEDDIFT_WEIGHTS_DIR", "/somewhere/weights")
    folder = module_widget.logic.downloadWeights("hf_token", None)
    assert folder == "/somewhere/weights"
    assert calls[0]["useStartupEnvironment"] is False and calls[0]["updateEnvironment"]["HF_TOKEN"] == "hf_token"
    monkeypatch.setenv("EXIT", "3")
    with pytest.raises(RuntimeError, match=r"weights download failed \(exit code 3\)"):
        module_widget.logic.downloadWeights("hf_token", "/x")


def test_dependencies_install_under_constraints_pinning_slicers_packages(module_widget, monkeypatch):
    """Defect 10: only direct requirement lines were protected; MONAI could still upgrade numpy or
    torch. Slicer's pip_install gets a constraints file pinning what is installed."""
    import MedDIFTSceneLib.dependencies as deps
    import slicer

    installed = []

    def pip_install(requirements, **kwargs):  # no package index here: record what Slicer's pip would get
        installed.append((requirements, kwargs, Path(kwargs["constraints"]).read_text()))

    missing = ["monai"]
    monkeypatch.setattr(deps, "missing_modules", lambda *a: list(missing) if not installed else [])
    monkeypatch.setattr(slicer.util, "pip_install", pip_install)
    assert module_widget.logic.installDependencies() == []
    reqs, kwargs, constraints = installed[0]
    assert any(r.startswith("monai") for r in reqs) and not any(r.lower().startswith("numpy") for r in reqs)
    assert f"numpy=={np.__version__}" in constraints.splitlines()
    import torch

    assert f"torch=={torch.__version__}" in constraints.splitlines()


def test_selftest_skips_saying_why_and_installs_nothing(slicer_app, monkeypatch, caplog):
    """Defect 3, as the Extensions Index's build machines meet it: no torch, no MONAI, testing mode.
    The self-test installs nothing (no pip, no PyTorch extension) and skips with the reason: from
    ``slicer.selfTests`` (what *Reload and Test* calls, where any exception shows as a failure) it
    returns, saying so; under unittest (ctest) it is a skip. Python's own import block hides the
    packages: ``sys.modules[name] = None``."""
    import logging
    import unittest

    import slicer_standin

    from conftest import MODULE_FILE

    for name in ("torch", "monai", "PyTorchUtils"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(slicer_app.util, "pip_install", lambda *a, **k: pytest.fail("pip_install in testing mode"))
    slicer_standin.loadModule(str(MODULE_FILE))
    with caplog.at_level(logging.INFO):
        slicer_app.selfTests["MedDIFT"](msec=0)  # returns: a skip, not a failure
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Skipped:")]
    assert said and "torch is not installed" in said[0] and "monai is not installed" in said[0], caplog.text
    assert "nothing is installed in testing mode" in said[0]
    result = unittest.TestResult()
    sys.modules["MedDIFT"].MedDIFTTest("test_MatchPhantomLandmarks").run(result)
    assert [reason for _, reason in result.skipped] == [said[0][len("Skipped: ") :]] and not result.errors
    assert slicer_app.mrmlScene.GetFirstNodeByName("MedDIFT matched") is None
