"""A reading session that holds up: the panel driven as a reader would, with the module's own code.

Real: the MRML scene (slicer-core), Slicer's own ``slicer.util``, the parameter node, the worker
process (weight-free MIND-SSC backbone on the CPU). Stand-ins (Testing/SlicerStandIn): the Qt
widgets, the event loop and the dialogs; a modal dialog there runs the pending timers while it is
open, as Qt's nested event loop does, so re-entrancy shows. Where a test needs Slicer's real dialogs
(testing mode skips them), it turns testing mode off and, for error boxes, gives Slicer a main window.
"""

from __future__ import annotations

import numpy as np
import pytest

import qt
import slicer_standin

SHAPE, SPACING = (48, 48, 48), (5.0, 5.0, 5.0)


def _scene(slicer, n=4, extra_volume=False):
    from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
    from MedDIFTSceneLib.scene import add_volume_node, write_markups

    pair = make_pair(shape=SHAPE, spacing=SPACING, seed=5)
    fixed = add_volume_node(slicer.mrmlScene, pair.fixed, "fixed")
    moving = add_volume_node(slicer.mrmlScene, pair.moving, "moving")
    other = add_volume_node(slicer.mrmlScene, pair.moving, "other scan") if extra_volume else None
    points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "landmarks")
    write_markups(points, sample_landmarks(pair, n=n, seed=5), locked=False)
    return pair, fixed, moving, points, other


def _configure(w, fixed, moving, points):
    ui = w.ui
    ui.fixedVolumeSelector.setCurrentNode(fixed)
    ui.movingVolumeSelector.setCurrentNode(moving)
    ui.fixedLandmarksSelector.setCurrentNode(points)
    ui.backboneComboBox.setCurrentText("mind-ssc")
    ui.deviceComboBox.setCurrentText("cpu")
    ui.searchRadiusSpinBox.value = 20.0


def _run_to_end(w, timeout=300):
    assert slicer_standin.runEventLoop(lambda: w.job is None, timeout=timeout), "the job did not finish"


def _wait_live(w, timeout=60):
    assert slicer_standin.runEventLoop(lambda: not w.logic.core.live.busy() and not w.liveTimer.active,
                                       timeout=timeout), "the live match did not come back"


def _positions(node):
    return np.array([node.GetNthControlPointPositionWorld(i) for i in range(node.GetNumberOfControlPoints())])


def _ids(slicer):
    scene = slicer.mrmlScene
    return sorted(scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes()))


@pytest.fixture
def errors(monkeypatch):
    """Every error the panel shows (in testing mode Slicer's errorDisplay only logs it)."""
    import slicer

    shown = []
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, *a, **k: shown.append(text))
    return shown


@pytest.fixture
def real_dialogs(monkeypatch):
    """Slicer as a reader runs it: questions and error boxes are modal dialogs (testing mode off, a main
    window for the error boxes to sit on)."""
    import slicer

    slicer.app.setTestingEnabled(False)
    monkeypatch.setattr(slicer.util, "mainWindow", lambda: qt.QMainWindow())
    yield
    slicer.app.setTestingEnabled(True)


# --- 1. a job owns its inputs and always ends ----------------------------------------------------


def test_inputs_changed_in_the_panel_mid_job_do_not_move_the_results(module_widget, errors):
    import slicer

    w = module_widget
    pair, fixed, moving, points, other = _scene(slicer, extra_volume=True)
    others = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "other points")
    others.AddControlPoint(1.0, 2.0, 3.0, "X1")
    _configure(w, fixed, moving, points)
    w.ui.applyButton.click()
    w.ui.movingVolumeSelector.setCurrentNode(other)  # the reader looks at another scan meanwhile
    w.ui.fixedLandmarksSelector.setCurrentNode(others)
    _run_to_end(w)
    assert not errors and w.ui.applyButton.text == "Apply" and not w.timer.active
    out = w.lastJob.result.points_node
    assert out.GetNumberOfControlPoints() == points.GetNumberOfControlPoints()
    yellow = slicer.app.layoutManager().sliceWidget("Yellow").mrmlSliceCompositeNode()
    assert yellow.GetBackgroundVolumeID() == moving.GetID()  # drawn over the scan it matched, not "other scan"
    p = w._parameterNode
    assert p.movingVolume is other and p.fixedLandmarks is others and p.outputLandmarks is None  # the panel as left
    assert "the panel's selection changed while it ran" in w.ui.logTextEdit.toPlainText()
    assert others.GetNumberOfControlPoints() == 1


@pytest.mark.parametrize("removed", ["moving volume", "fixed landmarks"])
def test_an_input_removed_mid_job_ends_it_once_with_nothing_written(module_widget, errors, removed):
    import slicer

    w = module_widget
    pair, fixed, moving, points, _ = _scene(slicer)
    _configure(w, fixed, moving, points)
    w.ui.applyButton.click()
    slicer.mrmlScene.RemoveNode(moving if removed == "moving volume" else points)
    before = _ids(slicer)
    ticks = []
    w.timer.connect("timeout()", lambda: ticks.append(1))
    _run_to_end(w, timeout=30)
    assert len(ticks) <= 2  # ended at the first poll, not a tick later
    assert _ids(slicer) == before and slicer.mrmlScene.GetFirstNodeByName("MedDIFT matched") is None
    assert len(errors) == 1 and f"the {removed} of this run was removed from the scene" in errors[0]
    assert w.ui.applyButton.text == "Apply" and not w.timer.active and w.ui.statusLabel.text.startswith("Failed")


def test_a_failure_while_writing_results_ends_the_job_and_undoes_every_write(module_widget, errors, monkeypatch,
                                                                                 real_dialogs):
    import slicer
    import MedDIFTSceneLib.matchjob as matchjob

    w = module_widget
    pair, fixed, moving, points, _ = _scene(slicer)
    _configure(w, fixed, moving, points)
    mine = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "mine")
    mine.AddControlPoint(1.0, 2.0, 3.0, "keep")
    mine.SetAttribute("MedDIFT.status.keep", "accepted")
    w._parameterNode.outputLandmarks = mine
    before = _ids(slicer)

    def broken(*args, **kwargs):  # the last write of the results fails (a full disk, a VTK error...)
        raise RuntimeError("the display could not be set")

    monkeypatch.setattr(matchjob, "show_heatmap", broken)
    qt.answerNextDialog("QMessageBox", qt.QMessageBox.Yes)  # "replace the points of 'mine'?" - yes
    w.ui.applyButton.click()
    assert qt.asked[-1][0] == "QMessageBox" and "'mine' already has 1 points" in qt.asked[-1][1]
    _run_to_end(w)
    assert _ids(slicer) == before  # no matched list, no heatmap, no session left behind
    np.testing.assert_allclose(_positions(mine), [[1.0, 2.0, 3.0]])
    assert mine.GetNthControlPointLabel(0) == "keep" and mine.GetAttribute("MedDIFT.status.keep") == "accepted"
    assert len(errors) == 1 and "the display could not be set" in errors[0]
    assert w.ui.applyButton.text == "Apply" and not w.timer.active and w.lastJob is None


def test_the_overwrite_question_comes_first_and_no_costs_nothing(module_widget, real_dialogs):
    import slicer

    w = module_widget
    pair, fixed, moving, points, _ = _scene(slicer)
    _configure(w, fixed, moving, points)
    mine = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "mine")
    mine.AddControlPoint(1.0, 2.0, 3.0, "keep")
    w._parameterNode.outputLandmarks = mine
    qt.answerNextDialog("QMessageBox", qt.QMessageBox.No)
    w.ui.applyButton.click()
    assert [k for k, _ in qt.asked] == ["QMessageBox"]
    assert w.job is None and w.logic.client is None  # no worker started, nothing computed
    assert w.ui.applyButton.text == "Apply" and "Not started" in w.ui.statusLabel.text
    assert mine.GetNumberOfControlPoints() == 1


def test_default_selection_never_has_fixed_equal_to_moving(module_widget):
    import slicer

    w = module_widget
    pair, fixed, moving, points, _ = _scene(slicer)
    p = w._parameterNode
    assert p.fixedVolume is fixed and p.movingVolume is moving  # both loaded after the panel was opened
    w.ui.fixedLandmarksSelector.setCurrentNode(points)
    assert w.ui.applyButton.enabled
    w.ui.movingVolumeSelector.setCurrentNode(fixed)
    assert not w.ui.applyButton.enabled and "same scan" in w.ui.applyButton.toolTip


def test_modal_dialogs_run_the_timers_and_a_failed_job_opens_one_box(module_widget, real_dialogs):
    """In real Qt the poll timer fires inside a modal dialog's event loop: the error box of a failed job
    used to be opened again from inside itself on every tick."""
    import slicer

    fired = []
    timer = qt.QTimer()
    timer.setInterval(100000)  # not due for a long while: the dialog's loop runs it anyway, as time passes
    timer.connect("timeout()", lambda: fired.append(1))
    timer.start()
    qt.answerNextDialog("QMessageBox.question", qt.QMessageBox.Yes)
    qt.QMessageBox.question(None, "title", "text")
    timer.stop()
    assert fired  # the stand-in's dialog spins the event loop
    del qt.asked[:]

    w = module_widget
    pair, fixed, moving, points, _ = _scene(slicer)
    _configure(w, fixed, moving, points)
    w.ui.applyButton.click()
    slicer.mrmlScene.RemoveNode(moving)
    for _ in range(4):
        qt.answerNextDialog("QMessageBox", qt.QMessageBox.Ok)  # more answers than needed: none must be used twice
    _run_to_end(w, timeout=30)
    assert [k for k, _ in qt.asked] == ["QMessageBox"] and not qt.stackedDialogs
    qt.clearDialogAnswers()


def test_a_double_click_or_a_console_match_leave_the_panel_job_alone(module_widget, errors):
    import slicer

    from MedDIFTLib.errors import InputError

    w = module_widget
    pair, fixed, moving, points, other = _scene(slicer, extra_volume=True)
    _configure(w, fixed, moving, points)
    w.ui.applyButton.click()
    w.ui.applyButton.click()  # the second click of a double click
    job = w.job
    assert job is not None and not job.cancelled and w.ui.applyButton.text == "Cancel"
    with pytest.raises(InputError, match="a MedDIFT run is in progress"):
        w.logic.match(other, moving, points)
    p = w._parameterNode
    assert (p.fixedVolume, p.movingVolume, p.fixedLandmarks, p.backbone) == (fixed, moving, points, "mind-ssc")
    _run_to_end(w)
    assert job.error is None and job.result is not None and not errors


# --- 2. a reader's verdict belongs to the position it was given for ----------------------------------


def _statuses(table):
    return [table.item(r, table.columnCount - 1).text() for r in range(table.rowCount)]


def test_a_new_position_clears_its_verdict_and_live_never_moves_a_checked_match(module_widget, real_dialogs):
    import slicer

    w = module_widget
    ui = w.ui
    pair, fixed, moving, points, _ = _scene(slicer)
    _configure(w, fixed, moving, points)
    ui.applyButton.click()
    _run_to_end(w)
    out = w._parameterNode.outputLandmarks
    ui.trackingTable.selectRow(1)
    ui.acceptButton.click()
    ui.trackingTable.selectRow(2)
    ui.correctButton.click()
    assert _statuses(ui.trackingTable) == ["proposed", "accepted", "corrected", "proposed"]
    ui.liveModeCheckBox.checked = True
    checked = _positions(out)
    fixed_pts = _positions(points)
    points.SetNthControlPointPositionWorld(1, *(fixed_pts[1] + 6.0))  # its match was accepted: kept
    assert "was accepted by you and is kept" in ui.statusLabel.text and not w.logic.core.live.busy()
    np.testing.assert_allclose(_positions(out), checked)
    points.SetNthControlPointPositionWorld(0, *(fixed_pts[0] + np.array([6.0, 0.0, 0.0])))
    _wait_live(w)
    assert not np.allclose(_positions(out)[0], checked[0]) and np.allclose(_positions(out)[1:], checked[1:])
    assert _statuses(ui.trackingTable) == ["proposed", "accepted", "corrected", "proposed"]
    ui.liveModeCheckBox.checked = False
    qt.answerNextDialog("QMessageBox", qt.QMessageBox.Yes)  # re-Apply into the same list: replace it
    ui.applyButton.click()
    _run_to_end(w)
    assert w.lastJob.result.points_node is out
    assert _statuses(ui.trackingTable) == ["proposed"] * 4  # new positions: nothing the reader has seen
    assert not [a for a in out.GetAttributeNames() if a.startswith("MedDIFT.status.")]


def test_each_follow_up_gets_its_own_list_and_session(module_widget):
    import slicer

    from MedDIFTSceneLib.scene import add_volume_node

    w = module_widget
    ui = w.ui
    pair, base, month3, points, _ = _scene(slicer)
    month6 = add_volume_node(slicer.mrmlScene, pair.moving, "month 6")
    _configure(w, base, month3, points)
    ui.applyButton.click()
    _run_to_end(w)
    list3 = w._parameterNode.outputLandmarks
    ui.trackingTable.selectRow(0)
    ui.acceptButton.click()
    kept = _positions(list3)
    ui.movingVolumeSelector.setCurrentNode(month6)  # baseline -> month 6, the output selector still on month 3's list
    ui.applyButton.click()
    _run_to_end(w)
    list6 = w._parameterNode.outputLandmarks
    assert list6 is not list3 and list6.GetNumberOfControlPoints() == points.GetNumberOfControlPoints()
    np.testing.assert_allclose(_positions(list3), kept)  # month 3's list untouched
    assert list3.GetAttribute("MedDIFT.status." + points.GetNthControlPointLabel(0)) == "accepted"
    combo = w.sessionComboBox
    assert combo.count == 2 and ui.trackingTable.horizontalHeaderItem(3).text() == "month 6: status"
    combo.currentIndex = 0  # month 3's session, as it was
    assert ui.trackingTable.horizontalHeaderItem(3).text() == "moving: status"
    assert _statuses(ui.trackingTable)[0] == "accepted"


def test_the_table_follows_the_scene_and_a_rows_buttons_act_on_its_landmark(module_widget, tmp_path):
    import slicer

    w = module_widget
    ui, table = w.ui, w.ui.trackingTable
    pair, fixed, moving, points, _ = _scene(slicer)
    _configure(w, fixed, moving, points)
    ui.applyButton.click()
    _run_to_end(w)
    out = w._parameterNode.outputLandmarks
    labels = [points.GetNthControlPointLabel(i) for i in range(4)]
    points.RemoveNthControlPoint(0)
    assert [table.item(r, 0).text() for r in range(table.rowCount)] == labels[1:]
    table.selectRow(0)
    ui.acceptButton.click()  # the row showing the second landmark
    assert out.GetAttribute("MedDIFT.status." + labels[1]) == "accepted"
    assert out.GetAttribute("MedDIFT.status." + labels[2]) is None
    out.SetNthControlPointPositionWorld(2, 11.0, -22.0, 33.0)  # the reader drags a match
    assert table.item(1, 1).text() == "11.0, -22.0, 33.0"
    points.AddControlPoint(0.0, 0.0, 0.0, "new")
    assert table.rowCount == 4 and table.item(3, 0).text() == "new"

    app = slicer.app.applicationLogic()
    folder = tmp_path / "saved"
    folder.mkdir()
    assert app.SaveSceneToSlicerDataBundleDirectory(str(folder))
    assert app.Zip(str(tmp_path / "reading.mrb"), str(folder))
    slicer.mrmlScene.Clear(0)  # File > Close scene
    assert table.rowCount == 0 and w.sessionComboBox.count == 0
    (tmp_path / "unpacked").mkdir()
    assert app.OpenSlicerDataBundle(str(tmp_path / "reading.mrb"), str(tmp_path / "unpacked"))
    assert w.sessionComboBox.count == 1 and table.rowCount == 4
    assert table.item(0, 3).text() == "accepted" and table.item(1, 1).text() == "11.0, -22.0, 33.0"


def test_sessions_made_from_the_console_are_listed_and_tracking_never_blocks(module_widget):
    import slicer

    from MedDIFTSceneLib.scene import add_volume_node

    w = module_widget
    pair, base, month3, points, _ = _scene(slicer)
    month6 = add_volume_node(slicer.mrmlScene, pair.moving, "month 6")
    job = w.logic.track(base, points, [month3, month6], backbone="mind-ssc", device="cpu", searchRadius=20.0)
    assert not job.done  # returned at once; Slicer's event loop runs it
    assert w.sessionComboBox.count == 1 and w.sessionComboBox.currentText == job.session.name
    w.sessionComboBox.currentIndex = 0
    assert slicer_standin.runEventLoop(lambda: job.done, timeout=300)
    assert job.error is None, job.error
    table = w.ui.trackingTable
    assert table.columnCount == 7 and table.rowCount == points.GetNumberOfControlPoints()
    assert all(table.item(r, 6).text() == "proposed" for r in range(table.rowCount))


# --- 3. live click -------------------------------------------------------------------------------


def test_live_clicks_never_wait_and_the_newest_click_wins(module_widget):
    import slicer

    w = module_widget
    pair, fixed, moving, points, _ = _scene(slicer)
    _configure(w, fixed, moving, points)
    w.ui.applyButton.click()
    _run_to_end(w)
    out = w._parameterNode.outputLandmarks
    w.ui.liveModeCheckBox.checked = True
    before, fixed_pts = _positions(out), _positions(points)
    points.SetNthControlPointPositionWorld(0, *(fixed_pts[0] + np.array([6.0, 0.0, 0.0])))
    points.SetNthControlPointPositionWorld(2, *(fixed_pts[2] + np.array([0.0, 6.0, 0.0])))
    np.testing.assert_allclose(_positions(out), before)  # both clicks returned without an answer
    _wait_live(w)
    after = _positions(out)
    np.testing.assert_allclose(after[0], before[0])  # superseded by the newer click before its answer was used
    assert not np.allclose(after[2], before[2])
    assert w.ui.heatmapLabelComboBox.currentText == points.GetNthControlPointLabel(2)  # "heatmap for" follows


def test_after_a_dense_run_a_live_click_uses_the_dense_map(module_widget):
    import slicer

    w = module_widget
    pair, fixed, moving, points, _ = _scene(slicer)
    _configure(w, fixed, moving, points)
    w.ui.searchRadiusSpinBox.value = 0.0  # no radius: the dense map places the points itself (not the argmax)
    w.ui.denseMatchingCheckBox.checked = True
    w.ui.applyButton.click()
    _run_to_end(w, timeout=600)
    job = w.lastJob
    out = job.result.points_node
    dense = _positions(out)
    p0 = _positions(points)[0]
    plain = w.logic.core.client.request("match", fixed=job.fixed_key, moving=job.moving_key, points=[p0.tolist()],
                                        labels=["plain"])
    from MedDIFTLib.service.protocol import decode_match

    argmax = decode_match(plain)[0][0]
    assert np.linalg.norm(argmax - dense[0]) > 0.05  # the test tells the two apart
    w.ui.liveModeCheckBox.checked = True
    points.SetNthControlPointPositionWorld(0, *(p0 + 5.0))
    _wait_live(w)
    points.SetNthControlPointPositionWorld(0, *p0)  # back where the run matched it
    _wait_live(w)
    # the same dense map at the same point: the same match (float32 field read twice the same way)
    np.testing.assert_allclose(_positions(out)[0], dense[0], atol=1e-3)
