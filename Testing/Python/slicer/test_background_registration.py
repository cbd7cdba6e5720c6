"""The dense field behind every click: Apply and live clicks answered at once by point matching, marked
provisional, re-placed from the pair's field when its background registration (a worker of its own)
is done, and clicks after that a lookup in Slicer's process. The panel driven as a reader would, with
the module's own code over real MRML and real worker processes (weight-free backbone on the CPU); Qt,
its event loop and dialogs are the stand-ins'.
"""

from __future__ import annotations

import numpy as np
import pytest
import slicer_standin
from reading_helpers import configure, positions, run_to_end, scene_with_pair, wait_live

from MedDIFTSceneLib.densefield import FROM_FIELD, PROVISIONAL, field_lookup
from MedDIFTSceneLib.tracking import pairs_from_nodes

# --- the lookup ---------------------------------------------------------------------------------


def _oblique_grid():
    """An oblique (rotated about two axes), anisotropic (0.7, 1.3, 2.9 mm) grid with an offset origin."""
    a, b = np.deg2rad(25.0), np.deg2rad(-40.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    m = np.eye(4)
    m[:3, :3] = rz @ rx @ np.diag([0.7, 1.3, 2.9])
    m[:3, 3] = [-31.0, 12.5, 70.0]
    return m


def test_field_lookup_moves_points_by_a_known_affine_displacement_on_an_oblique_anisotropic_grid():
    ijk_to_ras = _oblique_grid()
    shape = (9, 7, 5)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    ras = (ijk_to_ras @ np.c_[ijk, np.ones(len(ijk))].T)[:3].T
    lin, shift = np.array([[0.02, -0.01, 0.03], [0.0, 0.05, -0.02], [0.01, 0.0, -0.04]]), np.array([3.0, -2.0, 5.5])
    disp = (ras @ lin.T + shift).reshape(*shape, 3)  # linear in RAS, so trilinear interpolation is exact
    rng = np.random.default_rng(0)
    inner = rng.uniform([0, 0, 0], np.array(shape) - 1, size=(50, 3))  # anywhere inside the grid, between nodes
    points = (ijk_to_ras @ np.c_[inner, np.ones(50)].T)[:3].T
    moved = field_lookup(points, disp, ijk_to_ras)
    # exact up to floating rounding of a 4x4 inverse and 8 weighted sums on values of tens of mm
    np.testing.assert_allclose(moved, points + points @ lin.T + shift, atol=1e-9)


def test_field_lookup_is_the_field_itself_at_its_nodes_and_nan_outside_its_grid():
    ijk_to_ras = _oblique_grid()
    disp = np.random.default_rng(1).normal(size=(4, 5, 6, 3)) * 4.0  # not smooth: only nodes are exact
    node = np.array([2, 3, 5])
    at = (ijk_to_ras @ np.r_[node, 1.0])[:3]
    np.testing.assert_allclose(field_lookup(at, disp, ijk_to_ras)[0], at + disp[2, 3, 5], atol=1e-9)
    outside = (ijk_to_ras @ np.array([-0.5, 1.0, 1.0, 1.0]))[:3]  # half a voxel before the first I plane
    assert np.isnan(field_lookup(outside, disp, ijk_to_ras)).all()


# --- the panel ------------------------------------------------------------------------------------


def _statuses(table):
    return [table.item(r, table.columnCount - 1).text() for r in range(table.rowCount)]


def _wait_field(w, timeout=240):
    w.denseTimer.start()
    assert slicer_standin.runEventLoop(
        lambda: w.logic.core.dense is not None and w.logic.core.dense.done and not w.denseTimer.active, timeout=timeout
    ), "no field came"
    assert w.logic.core.dense.ready(), w.logic.core.dense.error


def test_provisional_matches_are_replaced_from_the_field_and_checked_ones_kept(module_widget):
    import slicer

    w = module_widget
    ui = w.ui
    assert ui.denseRefineCheckBox.checked  # the panel's default
    pair, fixed, moving, points, _ = scene_with_pair(slicer)
    configure(w, fixed, moving, points, dense_refine=True)
    ui.applyButton.click()
    dense = w.logic.core.dense
    assert dense is not None and not dense.done and dense.client is not w.logic.core.client  # its own worker
    w.denseTimer.stop()  # the field "arrives" only when the test lets the panel read it
    run_to_end(w)
    out = w._parameterNode.outputLandmarks
    assert _statuses(ui.trackingTable) == [PROVISIONAL] * 4
    assert out.GetNthControlPointDescription(0).startswith(PROVISIONAL)
    ui.trackingTable.selectRow(1)
    ui.acceptButton.click()
    ui.trackingTable.selectRow(2)
    ui.correctButton.click()
    out.SetNthControlPointPositionWorld(2, *(positions(out)[2] + np.array([0.0, 4.0, 0.0])))  # the reader's drag
    kept = positions(out)[1:3]
    ui.liveModeCheckBox.checked = True  # a click before the field: a point match at once, provisional too
    points.SetNthControlPointPositionWorld(3, *(positions(points)[3] + np.array([5.0, 0.0, -5.0])))
    w.denseTimer.stop()  # the click asked for the pair's registration (it runs); its field still waits
    wait_live(w)
    assert _statuses(ui.trackingTable) == [PROVISIONAL, "accepted", "corrected", PROVISIONAL]
    _wait_field(w)
    assert _statuses(ui.trackingTable) == [FROM_FIELD, "accepted", "corrected", FROM_FIELD]
    expected = field_lookup(positions(points), *dense.field)
    # placed through the markups API (float64 throughout): only rounding separates them
    np.testing.assert_allclose(positions(out)[[0, 3]], expected[[0, 3]], atol=1e-6)
    np.testing.assert_allclose(positions(out)[1:3], kept)
    assert out.GetNthControlPointDescription(3).startswith(FROM_FIELD)
    assert [p.status for p in pairs_from_nodes(points, out)] == [FROM_FIELD, "accepted", "corrected", FROM_FIELD]
    assert dense.client.proc.poll() is not None  # its worker is done with and gone
    truth = pair.true_moving_points(positions(points))
    # the phantom's motion is smooth: the field's points are near the truth (5 mm voxels: within two voxels)
    assert np.all(np.linalg.norm(positions(out)[[0, 3]] - truth[[0, 3]], axis=1) < 10.0)


def test_a_click_after_the_field_is_a_lookup_without_a_worker_request(module_widget, monkeypatch):
    import slicer

    w = module_widget
    ui = w.ui
    _, fixed, moving, points, _ = scene_with_pair(slicer)
    configure(w, fixed, moving, points, dense_refine=True)
    ui.applyButton.click()
    run_to_end(w)
    _wait_field(w)
    out = w._parameterNode.outputLandmarks
    asked = []
    client = w.logic.core.client
    real_submit = client.submit
    monkeypatch.setattr(client, "submit", lambda cmd, *a, **k: asked.append(cmd) or real_submit(cmd, *a, **k))
    ui.liveModeCheckBox.checked = True
    moved_to = positions(points)[0] + np.array([4.0, -3.0, 2.0])
    points.SetNthControlPointPositionWorld(0, *moved_to)
    # answered within the observer's call: nothing in flight, no timer, no request to any worker
    assert not w.logic.core.live.busy() and not w.liveTimer.active and asked == []
    np.testing.assert_allclose(positions(out)[0], field_lookup(moved_to, *w.logic.core.dense.field)[0], atol=1e-6)
    assert _statuses(ui.trackingTable)[0] == FROM_FIELD
    assert "placed from the dense field" in ui.statusLabel.text


def test_changing_the_pair_cancels_its_registration_and_its_field_never_serves_another(module_widget):
    import slicer

    w = module_widget
    ui = w.ui
    _, fixed, moving, points, other = scene_with_pair(slicer, extra_volume=True)
    configure(w, fixed, moving, points, dense_refine=True)
    ui.applyButton.click()
    dense = w.logic.core.dense
    assert slicer_standin.runEventLoop(lambda: dense.client.alive, timeout=30)
    assert w.denseLabel.text.startswith("Dense registration:")  # its own progress line, beside Apply's
    ui.movingVolumeSelector.setCurrentNode(other)  # the reader picks another follow-up
    assert dense.cancelled and dense.client.proc.poll() is not None  # killed at once, not left running
    assert w.logic.core.dense is None and "cancelled" in w.denseLabel.text
    run_to_end(w)  # the job owns its request: fixed -> moving still finishes, as point matches
    out = w.lastJob.result.points_node
    assert _statuses(ui.trackingTable) == ["proposed"] * 4 and dense.field is None
    assert not [a for a in out.GetAttributeNames() if a.startswith("MedDIFT.source.")]
    ui.applyButton.click()  # the new pair: a registration of its own
    assert w.logic.core.dense is not dense and w.logic.core.dense.moving_id == other.GetID()
    again = w.logic.core.dense
    slicer.mrmlScene.Clear(0)  # closing the scene cancels it too
    assert again.cancelled and (again.client.proc is None or again.client.proc.poll() is not None)


@pytest.mark.parametrize("mode", ["baseline", "previous"])
def test_tracking_registers_each_follow_up_and_upgrades_its_provisional_matches(module_widget, mode):
    import slicer
    from MedDIFTSceneLib.scene import add_volume_node
    from MedDIFTSceneLib.session import MODES

    w = module_widget
    ui = w.ui
    pair, base, month3, points, _ = scene_with_pair(slicer)
    month6 = add_volume_node(slicer.mrmlScene, pair.moving, "month 6")
    configure(w, base, month3, points, dense_refine=True)
    w.trackModeComboBox.setCurrentIndex(MODES.index(mode))
    for node in (month3, month6):
        ui.movingVolumeSelector.setCurrentNode(node)
        w.addFollowUpButton.click()
    w.trackButton.click()
    regs = list(w.logic.core.registrations.items)
    second_from = base if mode == "baseline" else month3  # each follow-up's pair is the one it is matched on
    assert [(d.fixed_id, d.moving_id) for d in regs] == [
        (base.GetID(), month3.GetID()),
        (second_from.GetID(), month6.GetID()),
    ]
    w.denseTimer.stop()  # the fields come after the point matches, when the test lets them
    run_to_end(w)
    table = ui.trackingTable
    status_columns = [c for c in range(table.columnCount) if table.horizontalHeaderItem(c).text().endswith(": status")]
    assert len(status_columns) == 2
    column = lambda c: [table.item(r, c).text() for r in range(table.rowCount)]  # noqa: E731
    assert all(column(c) == [PROVISIONAL] * 4 for c in status_columns)
    w.denseTimer.start()
    assert slicer_standin.runEventLoop(lambda: all(d.done for d in regs) and not w.denseTimer.active, timeout=300)
    assert all(d.ready() for d in regs), [d.error for d in regs]
    assert all(column(c) == [FROM_FIELD] * 4 for c in status_columns)
    for d in regs:  # each follow-up's list: its own pair's field at its source's (already re-placed) points
        ((out, source),) = d.targets
        np.testing.assert_allclose(positions(out), field_lookup(positions(source), *d.field), atol=1e-6)


def test_a_registration_that_fails_leaves_the_point_matches_as_the_answer(module_widget, tmp_path):
    import slicer
    from MedDIFTLib.service.client import WorkerClient

    w = module_widget
    ui = w.ui
    _, fixed, moving, points, _ = scene_with_pair(slicer)
    configure(w, fixed, moving, points, dense_refine=True)
    # a real worker client whose interpreter is not there: its start fails as a broken install would
    w.logic.core.registrations.client_factory = lambda: WorkerClient(python=str(tmp_path / "no-python"))
    ui.applyButton.click()
    w.denseTimer.stop()
    run_to_end(w)
    out = w._parameterNode.outputLandmarks
    placed = positions(out)
    assert _statuses(ui.trackingTable) == [PROVISIONAL] * 4
    w.denseTimer.start()
    assert slicer_standin.runEventLoop(lambda: not w.denseTimer.active, timeout=30)
    assert w.logic.core.dense.error is not None and "failed" in w.denseLabel.text
    assert _statuses(ui.trackingTable) == ["proposed"] * 4  # no field will come: nothing says provisional
    assert not out.GetNthControlPointDescription(0).startswith(PROVISIONAL)
    np.testing.assert_allclose(positions(out), placed)
