"""A reader's verdict belongs to the position it was given for; live clicks never wait; tracking from the
panel and the console. The panel driven as a reader would, with the module's own code over real MRML and
the real worker (weight-free backbone on the CPU); Qt, its event loop and dialogs are the stand-ins'.
"""

from __future__ import annotations

import numpy as np
import qt
import slicer_standin
from reading_helpers import configure, positions, run_to_end, scene_with_pair, wait_live

# --- 2. a reader's verdict belongs to the position it was given for ----------------------------------


def _statuses(table):
    return [table.item(r, table.columnCount - 1).text() for r in range(table.rowCount)]


def test_a_new_position_clears_its_verdict_and_live_never_moves_a_checked_match(module_widget, real_dialogs):
    import slicer

    w = module_widget
    ui = w.ui
    pair, fixed, moving, points, _ = scene_with_pair(slicer)
    configure(w, fixed, moving, points)
    ui.applyButton.click()
    run_to_end(w)
    out = w._parameterNode.outputLandmarks
    ui.trackingTable.selectRow(1)
    ui.acceptButton.click()
    ui.trackingTable.selectRow(2)
    ui.correctButton.click()
    assert _statuses(ui.trackingTable) == ["proposed", "accepted", "corrected", "proposed"]
    ui.liveModeCheckBox.checked = True
    checked = positions(out)
    fixed_pts = positions(points)
    points.SetNthControlPointPositionWorld(1, *(fixed_pts[1] + 6.0))  # its match was accepted: kept
    assert "was accepted by you and is kept" in ui.statusLabel.text and not w.logic.core.live.busy()
    np.testing.assert_allclose(positions(out), checked)
    points.SetNthControlPointPositionWorld(0, *(fixed_pts[0] + np.array([6.0, 0.0, 0.0])))
    wait_live(w)
    assert not np.allclose(positions(out)[0], checked[0]) and np.allclose(positions(out)[1:], checked[1:])
    assert _statuses(ui.trackingTable) == ["proposed", "accepted", "corrected", "proposed"]
    ui.liveModeCheckBox.checked = False
    qt.answerNextDialog("QMessageBox", qt.QMessageBox.Yes)  # re-Apply into the same list: replace it
    ui.applyButton.click()
    run_to_end(w)
    assert w.lastJob.result.points_node is out
    assert _statuses(ui.trackingTable) == ["proposed"] * 4  # new positions: nothing the reader has seen
    assert not [a for a in out.GetAttributeNames() if a.startswith("MedDIFT.status.")]


def test_each_follow_up_gets_its_own_list_and_session(module_widget):
    import slicer
    from MedDIFTSceneLib.scene import add_volume_node

    w = module_widget
    ui = w.ui
    pair, base, month3, points, _ = scene_with_pair(slicer)
    month6 = add_volume_node(slicer.mrmlScene, pair.moving, "month 6")
    configure(w, base, month3, points)
    ui.applyButton.click()
    run_to_end(w)
    list3 = w._parameterNode.outputLandmarks
    ui.trackingTable.selectRow(0)
    ui.acceptButton.click()
    kept = positions(list3)
    ui.movingVolumeSelector.setCurrentNode(month6)  # baseline -> month 6, the output selector still on month 3's list
    ui.applyButton.click()
    run_to_end(w)
    list6 = w._parameterNode.outputLandmarks
    assert list6 is not list3 and list6.GetNumberOfControlPoints() == points.GetNumberOfControlPoints()
    np.testing.assert_allclose(positions(list3), kept)  # month 3's list untouched
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
    pair, fixed, moving, points, _ = scene_with_pair(slicer)
    configure(w, fixed, moving, points)
    ui.applyButton.click()
    run_to_end(w)
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
    pair, base, month3, points, _ = scene_with_pair(slicer)
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
    pair, fixed, moving, points, _ = scene_with_pair(slicer)
    configure(w, fixed, moving, points)
    w.ui.applyButton.click()
    run_to_end(w)
    out = w._parameterNode.outputLandmarks
    w.ui.liveModeCheckBox.checked = True
    before, fixed_pts = positions(out), positions(points)
    points.SetNthControlPointPositionWorld(0, *(fixed_pts[0] + np.array([6.0, 0.0, 0.0])))
    points.SetNthControlPointPositionWorld(2, *(fixed_pts[2] + np.array([0.0, 6.0, 0.0])))
    np.testing.assert_allclose(positions(out), before)  # both clicks returned without an answer
    wait_live(w)
    after = positions(out)
    np.testing.assert_allclose(after[0], before[0])  # superseded by the newer click before its answer was used
    assert not np.allclose(after[2], before[2])
    assert w.ui.heatmapLabelComboBox.currentText == points.GetNthControlPointLabel(2)  # "heatmap for" follows


def test_after_a_dense_run_a_live_click_uses_the_dense_map(module_widget):
    import slicer

    w = module_widget
    pair, fixed, moving, points, _ = scene_with_pair(slicer)
    configure(w, fixed, moving, points)
    w.ui.searchRadiusSpinBox.value = 0.0  # no radius: the dense map places the points itself (not the argmax)
    w.ui.denseMatchingCheckBox.checked = True
    w.ui.applyButton.click()
    run_to_end(w, timeout=600)
    job = w.lastJob
    out = job.result.points_node
    dense = positions(out)
    p0 = positions(points)[0]
    plain = w.logic.core.client.request(
        "match", fixed=job.fixed_key, moving=job.moving_key, points=[p0.tolist()], labels=["plain"], prior="none"
    )
    from MedDIFTLib.service.protocol import decode_match

    argmax = decode_match(plain)[0][0]
    assert np.linalg.norm(argmax - dense[0]) > 0.05  # the test tells the two apart
    w.ui.liveModeCheckBox.checked = True
    points.SetNthControlPointPositionWorld(0, *(p0 + 5.0))
    wait_live(w)
    points.SetNthControlPointPositionWorld(0, *p0)  # back where the run matched it
    wait_live(w)
    # the same dense map at the same point: the same match (float32 field read twice the same way)
    np.testing.assert_allclose(positions(out)[0], dense[0], atol=1e-3)


def test_tracking_from_the_panel_through_follow_ups_with_progress_and_cancel(module_widget):
    import slicer
    from MedDIFTSceneLib.scene import add_volume_node

    w = module_widget
    ui = w.ui
    pair, base, month3, points, _ = scene_with_pair(slicer)
    month6 = add_volume_node(slicer.mrmlScene, pair.moving, "month 6")
    configure(w, base, month3, points)
    w.addFollowUpButton.click()
    ui.movingVolumeSelector.setCurrentNode(month6)
    w.addFollowUpButton.click()
    assert w.followUpsLabel.text == "Follow-ups: moving, month 6"
    w.trackModeComboBox.currentIndex = w.trackModeComboBox.findData("previous")
    progress = []
    ui.progressBar.connect("valueChanged(int)", progress.append)
    w.trackButton.click()
    assert w.job is not None and w.trackButton.text == "Cancel" and ui.progressBar.visible  # returned at once
    session = w.session
    assert session is not None and [v.GetName() for v in session.follow_ups] == ["moving", "month 6"]
    run_to_end(w)
    assert w.job is None and w.trackButton.text == "Track" and ui.applyButton.text == "Apply"
    assert progress == sorted(progress) and progress[-1] == 100
    lists = [session.matched(t) for t in (1, 2)]
    assert lists[0] is not lists[1] and all(n.GetNumberOfControlPoints() == 4 for n in lists)
    assert session.source(2)[1] is lists[0]  # month 6 from month 3's matches
    assert ui.trackingTable.columnCount == 7 and ui.trackingTable.item(0, 6).text() == "proposed"
    # Cancel: the chain stops, the session keeps what was complete
    w.onClearFollowUps()
    ui.movingVolumeSelector.setCurrentNode(month6)
    w.addFollowUpButton.click()
    w.trackButton.click()
    w._jobStartedAt -= 1.0  # a second later: a Cancel, not the end of a double click
    w.trackButton.click()
    assert w.job is None and "Cancelled" in ui.logTextEdit.toPlainText() and w.trackButton.text == "Track"
