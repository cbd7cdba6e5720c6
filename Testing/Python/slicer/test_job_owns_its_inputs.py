"""A job owns its inputs and always ends: the panel driven as a reader would, with the module's own code.

Real: the MRML scene (slicer-core), Slicer's own ``slicer.util``, the parameter node, the worker
process (weight-free MIND-SSC backbone on the CPU). Stand-ins (Testing/SlicerStandIn): the Qt
widgets, the event loop and the dialogs; a modal dialog there runs the pending timers while it is
open, as Qt's nested event loop does, so re-entrancy shows. Where a test needs Slicer's real dialogs
(testing mode skips them), it uses the ``real_dialogs`` fixture.
"""

from __future__ import annotations

import numpy as np
import pytest
import qt
from reading_helpers import configure, node_ids, positions, run_to_end, scene_with_pair

# --- 1. a job owns its inputs and always ends ----------------------------------------------------


def test_inputs_changed_in_the_panel_mid_job_do_not_move_the_results(module_widget, errors):
    import slicer

    w = module_widget
    pair, fixed, moving, points, other = scene_with_pair(slicer, extra_volume=True)
    others = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "other points")
    others.AddControlPoint(1.0, 2.0, 3.0, "X1")
    configure(w, fixed, moving, points)
    w.ui.applyButton.click()
    w.ui.movingVolumeSelector.setCurrentNode(other)  # the reader looks at another scan meanwhile
    w.ui.fixedLandmarksSelector.setCurrentNode(others)
    run_to_end(w)
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
    pair, fixed, moving, points, _ = scene_with_pair(slicer)
    configure(w, fixed, moving, points)
    w.ui.applyButton.click()
    slicer.mrmlScene.RemoveNode(moving if removed == "moving volume" else points)
    before = node_ids(slicer)
    ticks = []
    w.timer.connect("timeout()", lambda: ticks.append(1))
    run_to_end(w, timeout=30)
    assert len(ticks) <= 2  # ended at the first poll, not a tick later
    assert node_ids(slicer) == before and slicer.mrmlScene.GetFirstNodeByName("MedDIFT matched") is None
    assert len(errors) == 1 and f"the {removed} of this run was removed from the scene" in errors[0]
    assert w.ui.applyButton.text == "Apply" and not w.timer.active and w.ui.statusLabel.text.startswith("Failed")


def test_a_failure_while_writing_results_ends_the_job_and_undoes_every_write(
    module_widget, errors, monkeypatch, real_dialogs
):
    import MedDIFTSceneLib.matchjob as matchjob
    import slicer

    w = module_widget
    pair, fixed, moving, points, _ = scene_with_pair(slicer)
    configure(w, fixed, moving, points)
    mine = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "mine")
    mine.AddControlPoint(1.0, 2.0, 3.0, "keep")
    mine.SetAttribute("MedDIFT.status.keep", "accepted")
    w._parameterNode.outputLandmarks = mine
    before = node_ids(slicer)

    def broken(*args, **kwargs):  # the last write of the results fails (a full disk, a VTK error...)
        raise RuntimeError("the display could not be set")

    monkeypatch.setattr(matchjob, "show_heatmap", broken)
    qt.answerNextDialog("QMessageBox", qt.QMessageBox.Yes)  # "replace the points of 'mine'?" - yes
    w.ui.applyButton.click()
    assert qt.asked[-1][0] == "QMessageBox" and "'mine' already has 1 points" in qt.asked[-1][1]
    run_to_end(w)
    assert node_ids(slicer) == before  # no matched list, no heatmap, no session left behind
    np.testing.assert_allclose(positions(mine), [[1.0, 2.0, 3.0]])
    assert mine.GetNthControlPointLabel(0) == "keep" and mine.GetAttribute("MedDIFT.status.keep") == "accepted"
    assert len(errors) == 1 and "the display could not be set" in errors[0]
    assert w.ui.applyButton.text == "Apply" and not w.timer.active and w.lastJob is None


def test_the_overwrite_question_comes_first_and_no_costs_nothing(module_widget, real_dialogs):
    import slicer

    w = module_widget
    pair, fixed, moving, points, _ = scene_with_pair(slicer)
    configure(w, fixed, moving, points)
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
    pair, fixed, moving, points, _ = scene_with_pair(slicer)
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
    pair, fixed, moving, points, _ = scene_with_pair(slicer)
    configure(w, fixed, moving, points)
    w.ui.applyButton.click()
    slicer.mrmlScene.RemoveNode(moving)
    for _ in range(4):
        qt.answerNextDialog("QMessageBox", qt.QMessageBox.Ok)  # more answers than needed: none must be used twice
    run_to_end(w, timeout=30)
    assert [k for k, _ in qt.asked] == ["QMessageBox"] and not qt.stackedDialogs
    qt.clearDialogAnswers()


def test_a_double_click_or_a_console_match_leave_the_panel_job_alone(module_widget, errors):
    import slicer
    from MedDIFTLib.errors import InputError

    w = module_widget
    pair, fixed, moving, points, other = scene_with_pair(slicer, extra_volume=True)
    configure(w, fixed, moving, points)
    w.ui.applyButton.click()
    w.ui.applyButton.click()  # the second click of a double click
    job = w.job
    assert job is not None and not job.cancelled and w.ui.applyButton.text == "Cancel"
    with pytest.raises(InputError, match="a MedDIFT run is in progress"):
        w.logic.match(other, moving, points)
    p = w._parameterNode
    assert (p.fixedVolume, p.movingVolume, p.fixedLandmarks, p.backbone) == (fixed, moving, points, "mind-ssc")
    run_to_end(w)
    assert job.error is None and job.result is not None and not errors


def test_points_placed_in_the_output_list_mid_job_are_never_replaced(module_widget, errors):
    import slicer

    w = module_widget
    pair, fixed, moving, points, _ = scene_with_pair(slicer)
    configure(w, fixed, moving, points)
    target = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "my matches")
    w._parameterNode.outputLandmarks = target  # empty: no question
    w.ui.applyButton.click()
    target.AddControlPoint(4.0, 5.0, 6.0, "placed meanwhile")
    run_to_end(w)
    assert not errors and target.GetNumberOfControlPoints() == 1
    assert target.GetNthControlPointLabel(0) == "placed meanwhile"
    out = w.lastJob.result.points_node
    assert out is not target and out.GetNumberOfControlPoints() == points.GetNumberOfControlPoints()
    assert "changed while the run went on and was kept" in w.ui.logTextEdit.toPlainText()
