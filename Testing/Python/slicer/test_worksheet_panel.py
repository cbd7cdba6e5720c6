"""The worksheet section of the panel, driven as a reader would: track a baseline and two follow-ups from
the panel, measure once on the baseline, let MedDIFT propose the follow-up lines, adjust and accept them,
assess a study, export.

Real parts: the module loaded as Slicer loads it (Testing/SlicerStandIn: slicer-core's scene, Slicer's own
Python files, Qt stand-ins), the real worker process tracking the phantom (weight-free backbone), the
file writers. The "clicks" on the slice view are control points added to the line, as Slicer's place mode
adds them.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import slicer_standin
from reading_helpers import configure, run_to_end, scene_with_pair


def _track_two_follow_ups(w):
    """Track from the panel with the background registration on; month 3's field is let finish, month 6's
    is cancelled (so its line has only the point match to go by)."""
    import slicer
    from MedDIFTSceneLib.scene import add_volume_node

    pair, base, month3, points, _ = scene_with_pair(slicer)
    month6 = add_volume_node(slicer.mrmlScene, pair.moving, "month 6")
    configure(w, base, month3, points, dense_refine=True)
    w.trackModeComboBox.currentIndex = w.trackModeComboBox.findData("baseline")
    for node in (month3, month6):
        w.ui.movingVolumeSelector.setCurrentNode(node)
        w.addFollowUpButton.click()
    w.trackButton.click()
    run_to_end(w)
    first, second = w.logic.core.registrations.items
    assert slicer_standin.runEventLoop(lambda: first.done, timeout=300) and first.ready(), first.error
    second.cancel()
    return pair, w.session, first.field


def _adjust(line, index, delta):
    p = np.array(line.GetNthControlPointPositionWorld(index))
    line.SetNthControlPointPositionWorld(index, *(p + delta))


def test_reader_measures_once_adjusts_accepts_and_exports_from_the_panel(module_widget, errors, tmp_path):
    import qt

    import slicer
    from MedDIFTSceneLib import worksheet as ws
    from MedDIFTSceneLib.densefield import field_lookup

    w = module_widget
    panel = w.worksheetPanel
    pair, session, field = _track_two_follow_ups(w)
    assert [v.GetName() for v in session.volumes()] == ["fixed", "moving", "month 6"]
    # measure on the baseline: a new line, in place mode; the reader clicks the lesion's two ends
    panel.measureButton.click()
    line = panel.lineSelector.currentNode()
    assert line is not None and panel.placeWidget.currentNode() is line and panel.placeWidget.placeModeEnabled
    centre, radius = pair.anatomy.lesions[0], float(pair.anatomy.lesion_radii[0])
    for sign in (-1.0, 1.0):
        line.AddControlPointWorld(*(centre + sign * np.array([radius, 0.0, 0.0])))
    panel.organLineEdit.text = "lung"
    panel.addButton.click()
    table = panel.table
    cells = lambda: [table.item(0, c).text() for c in range(table.columnCount)]  # noqa: E731
    label = cells()[0]
    assert cells()[1:5] == ["target", "lung", "", f"{2 * radius:.1f} mm"]
    panel.proposeButton.click()
    assert not errors
    # month 3 through its pair's dense field, month 6 (no field) moved by its point match
    month3_line, month6_line = ws.follow_up_line(line, 1), ws.follow_up_line(line, 2)
    np.testing.assert_allclose(ws.line_points(month3_line), field_lookup(ws.line_points(line), *field), atol=1e-9)
    assert [x.GetAttribute("MedDIFT.worksheet.source") for x in (month3_line, month6_line)] == [
        ws.FROM_FIELD,
        ws.FROM_TRANSLATION,
    ]
    proposed = [ws.line_length(x) for x in (month3_line, month6_line)]
    assert proposed[1] == pytest.approx(2 * radius, abs=1e-9)  # a translation keeps the length
    assert cells()[5:] == [f"not yet reviewed ({mm:.1f} mm)" for mm in proposed]
    # the reader adjusts month 3's line and accepts it; month 6's is accepted as proposed
    _adjust(month3_line, 1, [-2.0, 0.0, 0.0])
    table.setCurrentCell(0, 5)
    red = slicer.app.layoutManager().sliceWidget("Red").sliceLogic()
    assert red.GetSliceCompositeNode().GetBackgroundVolumeID() == session.follow_ups[0].GetID()
    np.testing.assert_allclose(
        red.GetSliceNode().GetSliceToRAS().GetElement(2, 3), ws.line_points(month3_line)[:, 2].mean(), atol=1e-6
    )
    adjusted = ws.line_length(month3_line)
    # the table follows the drag (once it pauses)
    assert slicer_standin.runEventLoop(lambda: cells()[5] == f"adjusted, not accepted ({adjusted:.1f} mm)", 5)
    assert month3_line.GetDisplayNode().GetSelectedColor() == ws.PROPOSED_COLOUR
    table.setCurrentCell(0, 5)
    panel.acceptButton.click()
    table.setCurrentCell(0, 6)
    panel.acceptButton.click()
    assert cells()[5:] == [f"{adjusted:.1f} mm", f"{2 * radius:.1f} mm"]
    assert month3_line.GetDisplayNode().GetSelectedColor() == ws.ACCEPTED_COLOUR and month3_line.GetLocked()
    # accepted by mistake: measure again (no longer counted), then accept again
    table.setCurrentCell(0, 5)
    panel.reopenButton.click()
    assert cells()[5] == f"adjusted, not accepted ({adjusted:.1f} mm)" and not month3_line.GetLocked()
    assert panel.responseLabel.text.startswith(f"moving: NE (target response not evaluable: {label} not measured")
    panel.acceptButton.click()
    # a new lesion at month 6, recorded by the reader
    panel.timePointComboBox.currentIndex = 1
    panel.newLesionsComboBox.currentIndex = panel.newLesionsComboBox.findData("yes")
    assert panel.responseLabel.text.splitlines() == ["moving: SD", "month 6: PD (new lesion(s))"]
    # Propose again (as after a re-match): the reader's lines stay
    panel.proposeButton.click()
    assert cells()[5:] == [f"{adjusted:.1f} mm", f"{2 * radius:.1f} mm"]
    qt.answerNextDialog("QFileDialog.getSaveFileName", str(tmp_path / "worksheet.csv"))
    panel.exportButton.click()
    assert not errors
    csv = (tmp_path / "worksheet.csv").read_text().splitlines()
    assert csv[1].startswith(f"{label},target,lung,") and csv[1].endswith(
        f",no,{2 * radius:.1f},{adjusted:.1f},{2 * radius:.1f}"
    )
    html = (tmp_path / "worksheet.html").read_text()
    assert re.findall(r'alt="([^"]+)"', html) == [f"{label} at {tp}" for tp in ("fixed", "moving", "month 6")]
    assert "<td>PD</td>" in html


def test_accepting_without_a_selected_follow_up_says_what_to_do(module_widget, errors):
    w = module_widget
    panel = w.worksheetPanel
    panel.acceptButton.click()
    assert "Select a follow-up's cell of a lesion to accept its line." in w.ui.logTextEdit.toPlainText()
    panel.addButton.click()  # no session yet
    assert "Track a baseline and its follow-ups first." in w.ui.logTextEdit.toPlainText() and not errors
