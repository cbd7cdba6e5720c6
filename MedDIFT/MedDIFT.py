"""MedDIFT: training-free landmark and lesion matching between CT scans (3D Slicer module).

GUI and Slicer glue only. The work happens in a background worker process
(``MedDIFTLib.service.worker``) driven by ``MedDIFTSceneLib.logic``; all scene code
is Qt-free (``MedDIFTSceneLib.scene``, ``.tracking``) and tested outside
Slicer. The widget never blocks: a timer polls the running job.
"""

import logging
import os
import sys
import time
from typing import Annotated, Optional

import qt
import vtk
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

import slicer
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode, vtkMRMLTransformNode

MODULE_DIR = os.path.dirname(os.path.abspath(__file__))
DOCUMENTATION_URL = "https://github.com/meddift/SlicerMedDIFT#the-slicer-extension"  # the README's Slicer section
if MODULE_DIR not in sys.path:  # MedDIFTWidgetLib and MedDIFTSceneLib sit next to this file
    sys.path.insert(0, MODULE_DIR)
from MedDIFTWidgetLib.slicerlogic import ENGINE_DIRS, SlicerLogicMixin  # noqa: E402 - once the folder is on the path

for _dir in ENGINE_DIRS:  # the engine, MedDIFTLib: next to this file once installed, one folder up in a checkout
    if _dir not in sys.path:
        sys.path.insert(0, _dir)

from MedDIFTSceneLib.jobsteps import MatchRequest, OverwriteDeclined  # noqa: E402 - importable once on the path
from MedDIFTSceneLib.logic import MedDIFTLogicCore  # noqa: E402
from MedDIFTWidgetLib.actions import WidgetActionsMixin  # noqa: E402
from MedDIFTWidgetLib.compute import ComputeOnMixin  # noqa: E402
from MedDIFTWidgetLib.console import ConsoleMixin  # noqa: E402
from MedDIFTWidgetLib.densepanel import DensePanelMixin  # noqa: E402
from MedDIFTWidgetLib.panel import HeatmapLabels, distinctDefaultVolumes  # noqa: E402
from MedDIFTWidgetLib.readerview import ReaderViewMixin  # noqa: E402
from MedDIFTWidgetLib.sessions import SessionsMixin  # noqa: E402
from MedDIFTWidgetLib.trackpanel import TrackPanelMixin  # noqa: E402
from MedDIFTWidgetLib.worksheetpanel import WorksheetPanel  # noqa: E402

DOUBLE_CLICK_S = 0.5  # a second click on Apply this soon is the end of a double click, not a Cancel


class MedDIFT(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedDIFT")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Registration")]
        self.parent.dependencies = []
        self.parent.contributors = ["MedDIFT developers"]
        self.parent.helpText = _(
            "Find the same anatomical point in two CT scans without training: place landmarks on the fixed "
            "volume, press Apply, and MedDIFT places their matches on the moving volume and shows a similarity "
            "heatmap. With Live on, every new or moved landmark is matched at once. "
            "Features: MAISI v1 diffusion model (MedDIFT, arXiv 2512.05571) when its weights are installed, "
            "otherwise a weight-free MIND-SSC descriptor (named as such in the log)."
        )
        self.parent.helpText += " " + _('See the <a href="{url}">documentation</a>.').format(url=DOCUMENTATION_URL)
        self.parent.acknowledgementText = _(
            "MedDIFT (Apache License 2.0) follows arXiv 2512.05571. It uses NVIDIA's MAISI v1 networks through "
            "MONAI (Apache License 2.0); the MAISI weights are NVIDIA's, under the licence you accept for "
            "nvidia/NV-Generate-CT on Hugging Face. Without them it uses the MIND-SSC descriptor (Heinrich et al., "
            "MICCAI 2013); the dense registration follows ConvexAdam (Siebert, Hansen and Heinrich, 2021; its "
            "convexadam package, Apache License 2.0). PyTorch (BSD-style licence) comes from the PyTorch extension."
        )


#
# Parameter node
#


@parameterNodeWrapper
class MedDIFTParameterNode:
    fixedVolume: vtkMRMLScalarVolumeNode
    movingVolume: vtkMRMLScalarVolumeNode
    fixedLandmarks: vtkMRMLMarkupsFiducialNode
    outputLandmarks: vtkMRMLMarkupsFiducialNode
    heatmapVolume: vtkMRMLScalarVolumeNode
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    timestep: Annotated[int, WithinRange(0, 999)] = 20
    levels: str = ""
    searchRadius: Annotated[float, WithinRange(0.0, 500.0)] = 0.0
    backbone: Annotated[str, Choice(["auto", "maisi", "mind-ssc"])] = "auto"
    denseMatching: bool = False  # points from the dense registration (prior "dense")
    denseRefine: bool = True  # register in the background; provisional point matches re-placed from the field
    outputTransform: bool = False  # a grid transform node with the dense map
    warpMoving: bool = False  # the moving volume resampled onto the fixed grid through the map
    outputTransformNode: vtkMRMLTransformNode  # where the transform goes (None: a new node)
    warpedVolume: vtkMRMLScalarVolumeNode  # where the warped moving volume goes (None: a new node)
    inverseTransform: bool = False  # also the inverse transform (fixed-frame annotations onto the moving scan)


#
# Widget
#


class MedDIFTWidget(
    DensePanelMixin,
    ReaderViewMixin,
    ComputeOnMixin,
    WidgetActionsMixin,
    SessionsMixin,
    TrackPanelMixin,
    ScriptedLoadableModuleWidget,
    VTKObservationMixin,
):
    """Panel wiring and Apply/Cancel; the polled job, its results, live mode and the weights download are in
    :class:`MedDIFTWidgetLib.actions.WidgetActionsMixin`, the tracking sessions and their table in
    :class:`MedDIFTWidgetLib.sessions.SessionsMixin`, tracking through follow-ups in
    :class:`MedDIFTWidgetLib.trackpanel.TrackPanelMixin`, the "Compute on" fields in
    :class:`MedDIFTWidgetLib.compute.ComputeOnMixin`, progress, views and output nodes in
    :class:`MedDIFTWidgetLib.readerview.ReaderViewMixin`."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.job = None
        self._jobKind = "match"  # or "track": what the running job's end shows
        self.lastJob = None
        self._jobStartedAt = 0.0
        self._configureLogged = True
        self.pointEvents = None
        self.heatmapLabels = None
        self.sessionTable = None
        self.sessionComboBox = None
        self.timer = qt.QTimer()
        self.timer.setInterval(100)
        self.timer.connect("timeout()", self.onTimer)
        self.liveTimer = qt.QTimer()  # polls a live click's answer
        self.liveTimer.setInterval(50)
        self.liveTimer.connect("timeout()", self.onLiveTimer)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedDIFT.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MedDIFTLogic()
        self.setupComputeOn()
        self.setupReaderView()
        self.setupSessions()
        self.setupTrackPanel()
        self.setupDensePanel()
        self.worksheetPanel = WorksheetPanel(self)  # the lesion worksheet's section, below the rest
        self.heatmapLabels = HeatmapLabels(self.ui.heatmapLabelComboBox)
        self.ui.weightsPathLineEdit.currentPath = qt.QSettings().value("MedDIFT/WeightsDir", "")

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onVolumeAdded)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.liveModeCheckBox.connect("toggled(bool)", self.onLiveModeToggled)
        self.ui.fixedLandmarksSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onFixedLandmarksChanged)
        self.ui.downloadWeightsButton.connect("clicked(bool)", self.onDownloadWeights)
        self.ui.weightsPathLineEdit.connect(
            "currentPathChanged(QString)", lambda p: qt.QSettings().setValue("MedDIFT/WeightsDir", p)
        )
        self.ui.acceptButton.connect("clicked(bool)", lambda: self.onTrackingAction("accept"))
        self.ui.correctButton.connect("clicked(bool)", lambda: self.onTrackingAction("correct"))
        self.ui.exportCsvButton.connect("clicked(bool)", lambda: self.onExport(".csv"))
        self.ui.exportMrkButton.connect("clicked(bool)", lambda: self.onExport(".mrk.json"))
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.timer.stop()
        self.liveTimer.stop()
        self.denseTimer.stop()
        self.removeObservers()
        self._stopLive()
        self.cleanupSessions()
        self.worksheetPanel.cleanup()
        if self.heatmapLabels:
            self.heatmapLabels.remove()
        if self.logic:
            self.logic.shutdown()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        if self.job is not None:
            self.job.cancel()
            self._jobEnded()
        self._stopLive()
        self.cancelDense()
        self.lastJob = None
        self.sessionTable.setSession(None)
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        self.refreshSessions()
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        distinctDefaultVolumes(self._parameterNode, slicer.mrmlScene)

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onVolumeAdded(self, caller, event, node=None) -> None:
        """A scan loaded: it becomes the moving volume if the selectors would show one scan twice."""
        if (
            self._parameterNode is not None
            and node is not None
            and node.IsA("vtkMRMLScalarVolumeNode")
            and not slicer.mrmlScene.IsImporting()
        ):
            distinctDefaultVolumes(self._parameterNode, slicer.mrmlScene)

    def setParameterNode(self, inputParameterNode: Optional[MedDIFTParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        self.denseCheckPair()
        if self.job is not None:
            return
        p = self._parameterNode
        ok = bool(p and p.fixedVolume and p.movingVolume and p.fixedLandmarks)
        same = ok and p.fixedVolume is p.movingVolume
        self.ui.applyButton.enabled = ok and not same
        self.ui.applyButton.toolTip = (
            _("The fixed and moving volumes are the same scan: select two different volumes")
            if same
            else _("Extract features of both volumes and match every landmark")
            if ok
            else _("Select a fixed volume, a moving volume and fixed landmarks")
        )
        self._refreshHeatmapLabels()

    def onFixedLandmarksChanged(self, node) -> None:
        self.ui.fixedLandmarksPlaceWidget.setCurrentNode(node)
        self._refreshHeatmapLabels()

    def _refreshHeatmapLabels(self) -> None:
        self.heatmapLabels.setNode(self._parameterNode.fixedLandmarks if self._parameterNode else None)

    # --- Apply / Cancel ------------------------------------------------------------

    def onApplyButton(self) -> None:
        if self.job is not None:
            if time.monotonic() - self._jobStartedAt < DOUBLE_CLICK_S:
                self._log(_("Still running: the second click of a double click was not taken as Cancel."))
                return
            self.job.cancel()
            self._log(_("Cancelled: the worker was stopped; the scene is unchanged."))
            self._jobEnded()
            return
        if not self.useComputeSettings():  # a bad URL or a missing token: said in the panel, nothing started
            return
        if not self.logic.ensureDependencies(askConfirmation=True, server=self.computeSettings.where == "server"):
            self.showDependencyProblem()
            return
        self._stopLive()
        try:
            # the request is read here, once, and every question asked (the job never reads the panel again)
            job = self.logic.startMatch(
                self._parameterNode,
                self.ui.heatmapLabelComboBox.currentText,
                self.ui.weightsPathLineEdit.currentPath,
                self._confirmOverwrite,
            )
        except OverwriteDeclined as err:
            self.ui.statusLabel.text = _("Not started: {error}").format(error=err)
            self._log(self.ui.statusLabel.text)
            return
        except Exception as err:  # noqa: BLE001 - said once, nothing started
            self.ui.statusLabel.text = _("Not started: {error}").format(error=err)
            self._log(self.ui.statusLabel.text)
            slicer.util.errorDisplay(_("MedDIFT could not start: {error}").format(error=err))
            return
        self.job, self._jobKind, self._jobStartedAt, self._configureLogged = job, "match", time.monotonic(), False
        self.ui.applyButton.text = _("Cancel")
        self.ui.applyButton.toolTip = _("Stop the run; the scene stays as it was")
        self.ui.progressBar.visible = True
        self.timer.start()
        self.startDense(job.request)

    def _log(self, text: str) -> None:
        self.ui.logTextEdit.appendPlainText(text)
        logging.info(text)


#
# Logic
#


class MedDIFTLogic(ConsoleMixin, SlicerLogicMixin, ScriptedLoadableModuleLogic):
    """The module's one logic: the Qt-free scene logic in ``self.core``
    (:class:`MedDIFTSceneLib.logic.MedDIFTLogicCore`: worker, jobs, live matches, tracking sessions),
    plus what needs Slicer itself (:class:`MedDIFTWidgetLib.slicerlogic.SlicerLogicMixin`: dependencies,
    worker environment, weights, views), the console helpers (:class:`MedDIFTWidgetLib.console.ConsoleMixin`)
    and the parameter node. Usable from the Python console:

    >>> logic = slicer.modules.meddift.widgetRepresentation().self().logic  # or MedDIFTLogic()
    >>> job = logic.match(fixedVolume, movingVolume, fixedPoints)   # blocks until done
    >>> job.result.points_node, job.result.heatmap_node
    >>> tracking = logic.track(baseline, baselinePoints, [month3, month6])  # returns at once
    >>> tracking.done, tracking.fraction, tracking.session
    """

    def __init__(self) -> None:
        super().__init__()  # the mixins have no state: Slicer's logic base is the only one initialised
        # the environment is a function: read at each worker start, so "force CPU" needs no reload
        self.core = MedDIFTLogicCore(slicer.mrmlScene, python=self.workerPython(), env=self.workerEnvironment)
        self.trackingJob = None  # the console's tracking run (logic.track), polled by trackingTimer
        self.trackingTimer = qt.QTimer()
        self.trackingTimer.setInterval(100)
        self.trackingTimer.connect("timeout()", self.pollTracking)

    @property
    def client(self):
        """The worker (or server session) client in use, None when none runs."""
        return self.core.client

    def shutdown(self) -> None:
        self.trackingTimer.stop()
        self.core.shutdown()

    def getParameterNode(self):
        return MedDIFTParameterNode(super().getParameterNode())

    def engineOptions(self, p, weightsDir: str = "") -> tuple[dict, dict]:
        engine = {
            "backbone": p.backbone,
            "device": p.device,
            "timestep": p.timestep,
            "levels": [s.strip() for s in p.levels.split(",") if s.strip()] or None,
            "weights_dir": weightsDir or None,
        }
        return engine, {"radius_mm": p.searchRadius or None}

    def requestFromParameters(self, p, heatmapLabel: str = "", weightsDir: str = "") -> MatchRequest:
        engine, matching = self.engineOptions(p, weightsDir)
        return MatchRequest(
            p.fixedVolume.GetID(),
            p.movingVolume.GetID(),
            p.fixedLandmarks.GetID(),
            p.outputLandmarks.GetID() if p.outputLandmarks else None,
            heatmapLabel or None,
            engine,
            matching,
            prior="dense" if p.denseMatching else "none",
            transform=p.outputTransform,
            warp=p.warpMoving,
            transform_node_id=p.outputTransformNode.GetID() if p.outputTransformNode else None,
            warped_node_id=p.warpedVolume.GetID() if p.warpedVolume else None,
            inverse=p.outputTransform and p.inverseTransform,
        )

    def startMatch(self, p, heatmapLabel: str = "", weightsDir: str = "", overwrite=None):
        return self.core.start_match(self.requestFromParameters(p, heatmapLabel, weightsDir), overwrite)


#
# Test
#


class MedDIFTTest(ScriptedLoadableModuleTest):
    """End-to-end self-test in Slicer: phantom volumes with known breathing motion, the weight-free
    backbone on CPU, the real worker process. Run with the README's command
    (``Slicer --no-main-window --testing --additional-module-paths ... --python-code "slicer.selfTests['MedDIFT']()..."``)
    or from the module panel (Reload and Test)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Reload and Test and ``slicer.selfTests``: a skip is said, not raised (Slicer shows any
        exception there, unittest's SkipTest included, as a failure)."""
        self.setUp()
        reason = MedDIFTLogic.selfTestSkipReason()
        if reason:
            self.delayDisplay("Skipped: " + reason)
            return
        self.test_MatchPhantomLandmarks()

    def test_MatchPhantomLandmarks(self):
        """The index's build machines have no torch or MONAI and testing mode installs nothing: skip."""
        reason = MedDIFTLogic.selfTestSkipReason()
        if reason:
            self.skipTest(reason)
        import numpy as np

        from MedDIFTLib.evaluation.metrics import tre
        from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
        from MedDIFTSceneLib.scene import add_volume_node, write_markups

        self.delayDisplay("Making a phantom pair with known breathing motion")
        pair = make_pair(shape=(96, 96, 96), spacing=(2.5, 2.5, 2.5), seed=3)
        fixedNode = add_volume_node(slicer.mrmlScene, pair.fixed, "phantom fixed")
        movingNode = add_volume_node(slicer.mrmlScene, pair.moving, "phantom moving")
        landmarks = sample_landmarks(pair, n=8, seed=3)
        pointsNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "phantom landmarks")
        write_markups(pointsNode, landmarks, locked=False)

        self.delayDisplay("Matching with the weight-free backbone on CPU (background worker)")
        logic = MedDIFTLogic()
        try:
            job = logic.match(fixedNode, movingNode, pointsNode, backbone="mind-ssc", device="cpu", searchRadius=25.0)
        finally:
            logic.shutdown()
        matched = job.result.matched
        truth = pair.true_moving_points(landmarks.points)
        errors = tre(matched.points, truth)
        before = tre(landmarks.points, truth)
        self.delayDisplay(f"TRE {np.mean(errors):.2f} mm (identity {np.mean(before):.2f} mm)")
        self.assertEqual(job.result.points_node.GetNumberOfControlPoints(), len(landmarks))
        self.assertLess(np.median(errors), np.median(before))
        self.assertLess(np.median(errors), 6.0)
        hm = job.result.heatmap_node
        self.assertEqual(hm.GetImageData().GetDimensions(), movingNode.GetImageData().GetDimensions())
        self.delayDisplay("Test passed")
