"""The module's panel driven headlessly: MedDIFT.py's own widget code over Slicer's own Python files.

Nothing of the module is replaced: the widget is built from the real ``.ui``
file by Slicer's ``loadUI``, the parameter node is Slicer's parameterNodeWrapper
on a real vtkMRMLScriptedModuleNode, Apply starts the real background worker
(weight-free MIND-SSC backbone on the CPU) and the results land in the real
MRML scene. What is a stand-in (Qt widgets, the event loop, dialogs) is listed
in Testing/SlicerStandIn/README.md. The worker runs twice in this file (2 CPUs).
"""

from __future__ import annotations

import numpy as np
import slicer_standin

SHAPE, SPACING = (64, 64, 64), (3.5, 3.5, 3.5)


def _phantom_scene(slicer, n=5):
    from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
    from MedDIFTSceneLib.scene import add_volume_node, write_markups

    pair = make_pair(shape=SHAPE, spacing=SPACING, seed=5)
    fixed = add_volume_node(slicer.mrmlScene, pair.fixed, "fixed")
    moving = add_volume_node(slicer.mrmlScene, pair.moving, "moving")
    points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "landmarks")
    write_markups(points, sample_landmarks(pair, n=n, seed=5), locked=False)
    return pair, fixed, moving, points


def _configure(w, fixed, moving, points):
    ui = w.ui
    ui.fixedVolumeSelector.setCurrentNode(fixed)
    ui.movingVolumeSelector.setCurrentNode(moving)
    ui.fixedLandmarksSelector.setCurrentNode(points)
    ui.backboneComboBox.setCurrentText("mind-ssc")
    ui.deviceComboBox.setCurrentText("cpu")
    ui.searchRadiusSpinBox.value = 20.0


class _no_error_display:
    """Fails if Slicer's errorDisplay is called (in testing mode it only logs, so a test would not see it)."""

    def __enter__(self):
        import slicer

        self.calls, self._orig = [], slicer.util.errorDisplay
        slicer.util.errorDisplay = lambda text, *a, **k: self.calls.append(text)

    def __exit__(self, *exc):
        import slicer

        slicer.util.errorDisplay = self._orig
        assert not self.calls, self.calls
        return False


def _run_to_end(w, timeout=600):
    assert slicer_standin.runEventLoop(lambda: w.job is None, timeout=timeout), "the job did not finish"


def _wait_live(w, timeout=60):
    assert slicer_standin.runEventLoop(
        lambda: not w.logic.core.live.busy() and not w.liveTimer.active, timeout=timeout
    ), "the live match did not come back"


def _past_double_click(w):
    """As if the reader clicked Cancel a second after Apply (a click sooner is the second half of a
    double click, not a Cancel); without running the event loop, which could finish a short job."""
    w._jobStartedAt -= 1.0


def test_panel_and_parameter_node_bind_both_ways(module_widget):
    import slicer

    w = module_widget
    ui, p = w.ui, w._parameterNode
    assert not ui.applyButton.enabled  # nothing selected yet
    _, fixed, moving, points = _phantom_scene(slicer)
    assert p.fixedVolume is fixed  # the volume selector allows no "None": it took the first volume
    _configure(w, fixed, moving, points)
    assert (p.movingVolume, p.fixedLandmarks, p.backbone, p.device, p.searchRadius) == (
        moving,
        points,
        "mind-ssc",
        "cpu",
        20.0,
    )
    assert ui.applyButton.enabled
    p.timestep = 35
    p.levels = "up1,up2"
    assert ui.timestepSpinBox.value == 35 and ui.levelsLineEdit.text == "up1,up2"
    p.fixedLandmarks = None
    assert not ui.applyButton.enabled and ui.fixedLandmarksSelector.currentNode() is None
    # the dense-registration options: check boxes <-> parameter node <-> the job's request
    ui.denseMatchingCheckBox.checked = True
    ui.warpMovingCheckBox.checked = True
    assert (p.denseMatching, p.outputTransform, p.warpMoving) == (True, False, True)
    p.outputTransform = True
    assert ui.outputTransformCheckBox.checked
    p.fixedLandmarks = points
    req = w.logic.requestFromParameters(p)
    assert (req.prior, req.transform, req.warp) == ("dense", True, True)


def test_apply_progress_results_table_live_export_and_cleanup(module_widget, tmp_path):
    import qt

    import slicer

    w = module_widget
    ui = w.ui
    pair, fixed, moving, points = _phantom_scene(slicer)
    _configure(w, fixed, moving, points)
    progress = []
    ui.progressBar.connect("valueChanged(int)", progress.append)
    ui.applyButton.click()
    assert ui.applyButton.text == "Cancel" and ui.progressBar.visible
    _run_to_end(w)
    assert ui.applyButton.text == "Apply" and not ui.progressBar.visible
    # the whole job's progress: it never goes back (it used to run 0..100 for every stage) and ends full
    assert progress and progress[-1] == 100 and progress == sorted(progress) and len(set(progress)) > 3
    assert (
        slicer.app.layoutManager().layoutLogic().GetLayoutNode().GetViewArrangement()
        == slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    )
    out = w._parameterNode.outputLandmarks
    assert out is not None and out.GetNumberOfControlPoints() == points.GetNumberOfControlPoints()
    matched = np.array([out.GetNthControlPointPositionWorld(i) for i in range(out.GetNumberOfControlPoints())])
    fixed_pts = np.array([points.GetNthControlPointPositionWorld(i) for i in range(points.GetNumberOfControlPoints())])
    truth = pair.true_moving_points(fixed_pts)
    assert np.median(np.linalg.norm(matched - truth, axis=1)) < np.median(np.linalg.norm(fixed_pts - truth, axis=1))
    assert w._parameterNode.heatmapVolume is not None
    yellow = slicer.app.layoutManager().sliceWidget("Yellow").mrmlSliceCompositeNode()
    assert yellow.GetForegroundVolumeID() == w._parameterNode.heatmapVolume.GetID()
    assert "Backbone:" in ui.logTextEdit.toPlainText()

    table = ui.trackingTable
    assert table.rowCount == points.GetNumberOfControlPoints()
    assert [table.item(r, 0).text() for r in range(table.rowCount)] == [
        points.GetNthControlPointLabel(i) for i in range(points.GetNumberOfControlPoints())
    ]
    # one follow-up: label, then its match, confidence and status
    assert table.columnCount == 4 and table.horizontalHeaderItem(3).text() == "moving: status"
    table.selectRow(1)
    ui.acceptButton.click()
    assert table.item(1, 3).text() == "accepted" and out.GetNthControlPointLocked(1)
    table.selectRow(2)
    ui.correctButton.click()
    assert table.item(2, 3).text() == "corrected" and not out.GetNthControlPointLocked(2)

    csv_path = tmp_path / "pairs.csv"
    qt.answerNextDialog("QFileDialog.getSaveFileName", str(csv_path))
    ui.exportCsvButton.click()
    rows = csv_path.read_text().splitlines()
    assert len(rows) == 1 + points.GetNumberOfControlPoints() and rows[2].endswith("accepted")

    # live: move a fixed landmark; the move returns at once (the observer never waits for the worker)
    # and its partner is matched again with the cached features when the answer arrives
    ui.liveModeCheckBox.checked = True
    before = np.array(out.GetNthControlPointPositionWorld(0))
    target = fixed_pts[0] + np.array([7.0, 0.0, 0.0])
    points.SetNthControlPointPositionWorld(0, *target)
    np.testing.assert_allclose(out.GetNthControlPointPositionWorld(0), before)  # not yet: nothing waited
    _wait_live(w)
    after = np.array(out.GetNthControlPointPositionWorld(0))
    assert not np.allclose(after, before)
    assert np.linalg.norm(after - pair.true_moving_points(target[None])[0]) < 8.0

    # defect 6: Cancel kills the worker and its features; a moved point then says "press Apply again"
    # (it used to fail with "'NoneType' object has no attribute 'request'" on every move)
    w._parameterNode.outputLandmarks = None  # a new list: no question about replacing this one
    ui.applyButton.click()
    _past_double_click(w)
    ui.applyButton.click()  # Cancel
    assert w.lastJob is None and "press Apply again" in ui.logTextEdit.toPlainText()
    partner = np.array(out.GetNthControlPointPositionWorld(0))
    with _no_error_display():
        points.SetNthControlPointPositionWorld(0, *(target + 3.0))
    np.testing.assert_allclose(out.GetNthControlPointPositionWorld(0), partner)
    ui.applyButton.click()  # features again, for the worker that cleanup() must stop
    _run_to_end(w)

    client = w.logic.client if hasattr(w.logic, "client") else w.logic.core.client
    proc = client.proc if hasattr(client, "proc") else client._proc
    representation = slicer.modules.meddift.widgetRepresentation()
    representation.exit()
    slicer.app.moduleManager().unloadModules()  # Slicer's exit: cleanup() stops the worker
    proc.wait(timeout=30)
    assert proc.poll() is not None


def test_cancel_and_scene_close_leave_the_scene_as_it_was(module_widget):
    import slicer

    w = module_widget
    _, fixed, moving, points = _phantom_scene(slicer)
    _configure(w, fixed, moving, points)
    count = slicer.mrmlScene.GetNumberOfNodes()
    w.ui.applyButton.click()
    _past_double_click(w)
    w.ui.applyButton.click()  # Cancel
    assert w.job is None and w.ui.applyButton.text == "Apply"
    assert slicer.mrmlScene.GetNumberOfNodes() == count
    assert "Cancelled" in w.ui.logTextEdit.toPlainText()

    w.ui.applyButton.click()
    slicer.app.processEvents()
    slicer.mrmlScene.Clear(0)  # File > Close scene while a job runs
    assert w.job is None or w.job.done
    assert w._parameterNode is not None and w._parameterNode.fixedVolume is None
    assert not w.ui.applyButton.enabled
    slicer.app.processEvents()
    assert slicer.mrmlScene.GetFirstNodeByName("MedDIFT matched") is None


def test_heatmap_list_follows_points_placed_after_the_list_was_chosen(module_widget):
    """Defect 5: placing points one by one after choosing the list left "heatmap for" empty, and the job
    silently used the first point. The list follows points added, removed and relabelled."""
    import vtk

    import slicer

    w = module_widget
    points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "lesions")
    w.ui.fixedLandmarksSelector.setCurrentNode(points)
    combo = w.ui.heatmapLabelComboBox
    assert combo.count == 0
    for i in range(5):
        points.AddControlPoint(vtk.vtkVector3d(i, 0, 0), f"L{i + 1}")
    assert [combo.itemText(i) for i in range(combo.count)] == ["L1", "L2", "L3", "L4", "L5"]
    combo.setCurrentIndex(3)
    points.SetNthControlPointLabel(0, "liver lesion")
    points.RemoveNthControlPoint(1)
    assert [combo.itemText(i) for i in range(combo.count)] == ["liver lesion", "L3", "L4", "L5"]
    assert combo.currentText == "L4"  # the user's choice is kept
