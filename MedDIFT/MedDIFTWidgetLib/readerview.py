"""What the reader sees besides the results themselves: progress with elapsed time and an estimate
of the time left, the side-by-side views, the outputs shown in their selectors, reset to defaults,
the feature cache (where, how big, clear) and why a run did not start. A mixin of
``MedDIFT.MedDIFTWidget`` (it uses its ``ui``, ``logic``, ``_parameterNode``, ``job`` and ``_log``).

The feature cache can grow to 20 GB of features derived from patient scans, so the panel says
where it is and how much it holds, and empties it on request. It is read here without torch (Slicer's
process never imports it): the same files :class:`MedDIFTLib.features.cache.FeatureCache` writes,
``<32 hex digits>.pt`` and the ``.<name>.pt.*`` temporaries of an interrupted write; nothing else in
the folder is ever touched.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from slicer.i18n import tr as _

import slicer
from MedDIFTLib.runtime import user_cache_dir

CACHE_FILE = re.compile(r"^(?:[0-9a-f]{32}\.pt|\.[0-9a-f]{32}\.pt\..+)$")
MATCHED_COLOR = (0.2, 0.85, 0.3)  # matched points: green, apart from Slicer's default red of the fixed ones
ETA_AFTER = 0.05  # the estimate of the time left is shown once this share of the work is done


def featureCacheFolder() -> Path:
    """The feature cache the worker uses (same environment variable, same per-user default)."""
    return user_cache_dir("features", "MEDDIFT_CACHE_DIR")


def cacheFiles(folder: Path) -> list:
    """MedDIFT's own cache files in ``folder`` (see the module docstring).

    Args:
        folder: the feature cache folder.
    """
    try:
        return [p for p in folder.iterdir() if CACHE_FILE.match(p.name) and p.is_file()]
    except OSError:  # no cache yet
        return []


def humanSize(n: int) -> str:
    """``n`` bytes for the panel (decimal units, as file managers show them).

    Args:
        n: a size in bytes.
    """
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} GB"


def duration(seconds: float) -> str:
    """A time for the status line: ``"42 s"``, ``"3 min 05 s"``.

    Args:
        seconds: the time in seconds.
    """
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def alignSideBySide(layoutManager) -> None:
    """Both views of the side-by-side layout in the fixed (left, Red) view's orientation.

    Slicer's side-by-side layout asks for an axial Yellow view only as a default, which applies when
    the view node is created: a scene where Yellow already exists keeps it sagittal (axial fixed beside
    sagittal moving).

    Args:
        layoutManager: ``slicer.app.layoutManager()``, already in the side-by-side layout.
    """
    red = layoutManager.sliceWidget("Red").mrmlSliceNode()
    yellow = layoutManager.sliceWidget("Yellow").mrmlSliceNode()
    if yellow.GetOrientation() != red.GetOrientation():
        yellow.SetOrientation(red.GetOrientation())


def showPointsApart(scene, fixedPoints, matchedPoints, movingViewId: str) -> None:
    """Fixed points in every view but the moving one, matched points only there (and in 3D), in
    another colour: two sets of the same labels in one view read as one set.

    Args:
        scene: the MRML scene (its slice and 3D view nodes).
        fixedPoints: the fixed landmarks' markups node, or None.
        matchedPoints: the matched landmarks' markups node.
        movingViewId: the ID of the moving (right, Yellow) slice node.
    """
    views = [
        scene.GetNthNodeByClass(i, cls).GetID()
        for cls in ("vtkMRMLSliceNode", "vtkMRMLViewNode")
        for i in range(scene.GetNumberOfNodesByClass(cls))
    ]
    fixedDisplay = fixedPoints.GetDisplayNode() if fixedPoints else None
    if fixedDisplay:
        fixedDisplay.SetViewNodeIDs([v for v in views if v != movingViewId])
    matchedDisplay = matchedPoints.GetDisplayNode()
    if matchedDisplay:
        matchedDisplay.SetViewNodeIDs([movingViewId] + [v for v in views if v.startswith("vtkMRMLViewNode")])
        matchedDisplay.SetSelectedColor(*MATCHED_COLOR)
        matchedDisplay.SetColor(*MATCHED_COLOR)
        matchedDisplay.SetActiveColor(*MATCHED_COLOR)


class ReaderViewMixin:
    def setupReaderView(self) -> None:
        self._progressStart = (None, 0.0)  # (job, its start on the GUI's clock)
        self.ui.resetDefaultsButton.connect("clicked(bool)", self.onResetDefaults)
        self.ui.clearCacheButton.connect("clicked(bool)", self.onClearCache)
        self.ui.advancedCollapsibleButton.connect("contentsCollapsed(bool)", lambda c: c or self.refreshCacheInfo())
        self.refreshCacheInfo()

    # --- progress ----------------------------------------------------------------------

    def progressText(self, job) -> str:
        """The stage, the time since Apply and, once enough is done, an estimate of the time left
        (elapsed x remaining share / done share of the whole job's weighted progress)."""
        if self._progressStart[0] is not job:
            self._progressStart = (job, time.monotonic())
        elapsed = time.monotonic() - self._progressStart[1]
        text = _("{stage} ({elapsed} elapsed").format(stage=job.stage, elapsed=duration(elapsed))
        f = float(job.fraction)
        if ETA_AFTER <= f < 1.0:
            text += _(", about {left} left").format(left=duration(elapsed * (1.0 - f) / f))
        return text + ")"

    # --- outputs -----------------------------------------------------------------------

    def showOutputNodes(self, result) -> None:
        """The run's transform and warped volume in their selectors (a next run writes there again)."""
        if result.transform_node is not None:
            self._parameterNode.outputTransformNode = result.transform_node
        if result.warped_node is not None:
            self._parameterNode.warpedVolume = result.warped_node

    def showDependencyProblem(self) -> None:
        """Why a run did not start (missing, too old or failed to install), in the panel."""
        text = self.logic.dependencyMessage or _(
            "MedDIFT needs torch, MONAI and a few packages; installation was declined."
        )
        self.ui.statusLabel.text = text
        self._log(text)

    # --- options -----------------------------------------------------------------------

    def onResetDefaults(self) -> None:
        """Every option of the parameter node back to its declared default; nodes stay selected."""
        p = self._parameterNode
        if p is None:
            return
        with slicer.util.NodeModify(p):
            for name in p.allParameters:
                default = p.default(name).value
                if default is not None:  # node references have no default: the selection stays
                    p.setValue(name, default)
        self._log(_("Options reset to their defaults."))

    # --- feature cache -----------------------------------------------------------------

    def refreshCacheInfo(self) -> None:
        folder = featureCacheFolder()
        files = cacheFiles(folder)
        size = sum(p.stat().st_size for p in files if p.exists())
        self.ui.cacheInfoLabel.text = _("{folder}: {n} files, {size}").format(
            folder=folder, n=len(files), size=humanSize(size)
        )
        self.ui.clearCacheButton.enabled = bool(files)

    def onClearCache(self) -> None:
        if self.job is not None and not self.job.done:
            self.ui.statusLabel.text = _("The feature cache is in use by the running job: clear it when it ends.")
            return
        folder = featureCacheFolder()
        files = cacheFiles(folder)
        if not files or not slicer.util.confirmOkCancelDisplay(
            _("Delete {n} cached feature files ({size}) from {folder}? They are computed again when needed.").format(
                n=len(files), size=humanSize(sum(p.stat().st_size for p in files)), folder=folder
            )
        ):
            return
        freed = 0
        for p in files:
            try:
                size = p.stat().st_size
                p.unlink()
            except OSError:  # removed meanwhile, or not ours to remove (permissions): left as it is
                continue
            freed += size
        self._log(_("Feature cache cleared: {size} freed in {folder}").format(size=humanSize(freed), folder=folder))
        self.refreshCacheInfo()
