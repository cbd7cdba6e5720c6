"""What MedDIFT's logic does through Slicer itself: dependencies, the worker's interpreter and
environment, the weights download, the views. A mixin of ``MedDIFT.MedDIFTLogic`` (no state of its own)."""

from __future__ import annotations

import os
from subprocess import CalledProcessError

import qt
from slicer.i18n import tr as _

import slicer

from .install import DependencyLogicMixin
from .readerview import alignSideBySide, showPointsApart

MODULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# MedDIFTSceneLib sits next to MedDIFT.py; MedDIFTLib too once installed as an extension, or one
# folder up in a source checkout (the module folder added as an "additional module path").
# The one list of the engine's folders: MedDIFT.py puts them on sys.path, the worker gets them in PYTHONPATH.
ENGINE_DIRS = [MODULE_DIR] + (
    [os.path.dirname(MODULE_DIR)] if os.path.isdir(os.path.join(os.path.dirname(MODULE_DIR), "MedDIFTLib")) else []
)


class SlicerLogicMixin(DependencyLogicMixin):
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

    # --- weights ---------------------------------------------------------------------

    def downloadWeights(self, token: str, folder: str | None, log=None) -> str:
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
            raise RuntimeError(
                _(
                    "weights download failed (exit code {code}); the log above says why "
                    "(token, licence not accepted, network)"
                ).format(code=err.returncode)
            ) from None
        return folder or str(user_cache_dir("weights", "MEDDIFT_WEIGHTS_DIR"))

    # --- views -----------------------------------------------------------------------

    def showSideBySide(self, fixedVolume, movingVolume, fixedLandmarks, result) -> None:
        """Fixed left, moving right with the heatmap as foreground; the moving view jumps to the match.
        The nodes are the run's own (its request), not the panel's current selection."""
        lm = slicer.app.layoutManager()
        lm.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
        alignSideBySide(lm)
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
        fixedIdx = next(
            (
                i
                for i in range(fixedLandmarks.GetNumberOfControlPoints())
                if fixedLandmarks.GetNthControlPointLabel(i) == label
            ),
            None,
        )
        if fixedIdx is not None:  # the reader may have removed or renamed it meanwhile
            pos = [0.0, 0.0, 0.0]
            fixedLandmarks.GetNthControlPointPositionWorld(fixedIdx, pos)
            lm.sliceWidget("Red").sliceLogic().GetSliceNode().JumpSliceByCentering(*pos)
        showPointsApart(
            slicer.mrmlScene, fixedLandmarks, result.points_node, lm.sliceWidget("Yellow").mrmlSliceNode().GetID()
        )

    def jumpMovingViewTo(self, point) -> None:
        lm = slicer.app.layoutManager()
        if lm is None or lm.sliceWidget("Yellow") is None:
            return
        lm.sliceWidget("Yellow").sliceLogic().GetSliceNode().JumpSliceByCentering(*[float(c) for c in point])
