"""What MedDIFT's logic does through Slicer itself: dependencies, the worker's interpreter and
environment, the weights download, the views. A mixin of ``MedDIFT.MedDIFTLogic`` (no state of its own)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from subprocess import CalledProcessError
from typing import Optional

import qt
import slicer
from slicer.i18n import tr as _

MODULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# MedDIFTSceneLib sits next to MedDIFT.py; MedDIFTLib too once installed as an extension, or one
# folder up in a source checkout (the module folder added as an "additional module path").
# The one list of the engine's folders: MedDIFT.py puts them on sys.path, the worker gets them in PYTHONPATH.
ENGINE_DIRS = [MODULE_DIR] + ([os.path.dirname(MODULE_DIR)]
                              if os.path.isdir(os.path.join(os.path.dirname(MODULE_DIR), "MedDIFTLib")) else [])


class SlicerLogicMixin:
    @staticmethod
    def workerPython() -> str:
        """Slicer's Python launcher (PythonSlicer), the interpreter the worker runs in."""
        return shutil.which("PythonSlicer") or sys.executable

    @staticmethod
    def workerEnvironment() -> dict:
        """Read at every worker start (not once at module load), so "force CPU" applies to the next run."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(ENGINE_DIRS + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        if str(qt.QSettings().value("MedDIFT/ForceCPU", "false")).lower() == "true":
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    def resourcePath(self, relativePath: str) -> str:
        return os.path.join(MODULE_DIR, "Resources", relativePath)

    # --- dependencies ----------------------------------------------------------------

    def installDependencies(self, server: bool = False) -> list[str]:
        """Install what is missing without any dialog; returns what is still missing (empty: ready).
        torch through the PyTorch extension, the rest from requirements.txt under a constraints file
        that keeps Slicer's numpy, SimpleITK, VTK (and torch) as they are. ``server``: only what the
        client of a MedDIFT server needs (no torch, no model: the server has those)."""
        from MedDIFTSceneLib.dependencies import SERVER_MODULES, SERVER_REQUIREMENTS, missing_modules, requirements

        missing = missing_modules(SERVER_MODULES) if server else missing_modules()
        if not missing:
            return []
        if server:
            return self._pipInstall(SERVER_REQUIREMENTS, lambda: missing_modules(SERVER_MODULES))
        if "torch" in missing:
            try:
                import PyTorchUtils
            except ImportError:
                return [_("torch (install the PyTorch extension in the Extensions Manager and restart Slicer)")]
            torchLogic = PyTorchUtils.PyTorchUtilsLogic()
            if not torchLogic.torchInstalled():
                if torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=">=2.8") is None:
                    return missing_modules()
        return self._pipInstall(requirements(self.resourcePath("requirements.txt")), missing_modules)

    def _pipInstall(self, reqs: list, still_missing) -> list[str]:
        """pip-install ``reqs`` under the constraints; returns ``still_missing()`` afterwards."""
        from MedDIFTSceneLib.dependencies import write_constraints

        folder = tempfile.mkdtemp(prefix="meddift-pip-")
        try:
            slicer.util.pip_install(reqs, constraints=str(write_constraints(os.path.join(folder, "constraints.txt"))))
        except Exception as err:  # pip's own message is in the log; the caller says what is missing
            import logging

            logging.error(f"MedDIFT: installing {reqs} failed: {err}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return still_missing()

    def ensureDependencies(self, askConfirmation: bool = True, server: bool = False) -> bool:
        """The GUI's check before a run: asks first (never in testing mode), then installs."""
        from MedDIFTSceneLib.dependencies import SERVER_MODULES, missing_modules

        missing = missing_modules(SERVER_MODULES) if server else missing_modules()
        if not missing:
            return True
        if askConfirmation and not slicer.app.testingEnabled() and not slicer.util.confirmOkCancelDisplay(
                _("MedDIFT needs these Python packages: {packages}. Install them now? "
                  "This can take several minutes.").format(packages=", ".join(missing))):
            return False
        with slicer.util.WaitCursor():
            still = self.installDependencies(server)
        if still:
            slicer.util.errorDisplay(_("MedDIFT could not install: {packages}").format(packages=", ".join(still)))
        return not still

    # --- weights ---------------------------------------------------------------------

    def downloadWeights(self, token: str, folder: Optional[str], log=None) -> str:
        """Download the MAISI v1 files in the worker's Python (torch is never imported into Slicer's
        process for this: the folder comes from the engine's torch-free ``runtime``)."""
        from MedDIFTLib.runtime import user_cache_dir

        cmd = [self.workerPython(), "-m", "MedDIFTLib.cli", "weights", "download", "--no-progress"]
        if folder:
            cmd += ["--dest", folder]
        env = self.workerEnvironment()
        env["HF_TOKEN"] = token  # in the environment, not on the command line (process lists show that)
        # as Slicer's executePythonModule: PythonSlicer needs Slicer's environment, not the startup one
        proc = slicer.util.launchConsoleProcess(cmd, useStartupEnvironment=False, updateEnvironment=env)
        try:
            slicer.util.logProcessOutput(proc, log)
        except CalledProcessError as err:
            raise RuntimeError(_("weights download failed (exit code {code}); the log above says why "
                                 "(token, licence not accepted, network)").format(code=err.returncode)) from None
        return folder or str(user_cache_dir("weights", "MEDDIFT_WEIGHTS_DIR"))

    # --- views -----------------------------------------------------------------------

    def showSideBySide(self, fixedVolume, movingVolume, fixedLandmarks, result) -> None:
        """Fixed left, moving right with the heatmap as foreground; the moving view jumps to the match.
        The nodes are the run's own (its request), not the panel's current selection."""
        lm = slicer.app.layoutManager()
        lm.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
        red = lm.sliceWidget("Red").sliceLogic().GetSliceCompositeNode()
        yellow = lm.sliceWidget("Yellow").sliceLogic().GetSliceCompositeNode()
        red.SetBackgroundVolumeID(fixedVolume.GetID())
        red.SetForegroundVolumeID(None)
        yellow.SetBackgroundVolumeID(movingVolume.GetID())
        yellow.SetForegroundVolumeID(result.heatmap_node.GetID())
        yellow.SetForegroundOpacity(0.5)
        for name in ("Red", "Yellow"):
            lm.sliceWidget(name).sliceLogic().FitSliceToAll()
        m = result.matched
        label = result.heatmap_label
        self.jumpMovingViewTo(m.points[m.label_index(label)])
        fixedIdx = next((i for i in range(fixedLandmarks.GetNumberOfControlPoints())
                         if fixedLandmarks.GetNthControlPointLabel(i) == label), None)
        if fixedIdx is not None:  # the reader may have removed or renamed it meanwhile
            pos = [0.0, 0.0, 0.0]
            fixedLandmarks.GetNthControlPointPositionWorld(fixedIdx, pos)
            lm.sliceWidget("Red").sliceLogic().GetSliceNode().JumpSliceByCentering(*pos)
        dn = result.points_node.GetDisplayNode()
        if dn:
            dn.SetViewNodeIDs([lm.sliceWidget("Yellow").mrmlSliceNode().GetID(), "vtkMRMLViewNode1"])

    def jumpMovingViewTo(self, point) -> None:
        lm = slicer.app.layoutManager()
        if lm is None or lm.sliceWidget("Yellow") is None:
            return
        lm.sliceWidget("Yellow").sliceLogic().GetSliceNode().JumpSliceByCentering(*[float(c) for c in point])
