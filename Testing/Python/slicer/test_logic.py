"""The module's Qt-free logic: jobs through the real worker into a real MRML scene (slicer-core).

The Qt widget itself cannot run here (no Slicer application); everything it
calls is this logic, the scene code and the worker, all tested for real.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (Slicer's MRML library) is not installed")
vtk = pytest.importorskip("vtk")

from MedDIFTLib.errors import InputError  # noqa: E402
from MedDIFTLib.evaluation.metrics import tre  # noqa: E402
from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks  # noqa: E402
from MedDIFTSceneLib.logic import MatchRequest, MedDIFTLogicCore  # noqa: E402
from MedDIFTSceneLib.scene import add_volume_node, pointset_from_markups, write_markups  # noqa: E402
from MedDIFTSceneLib.tracking import (  # noqa: E402
    accept,
    export_pairs,
    pairs_from_nodes,
    start_correction,
)

ENGINE = {"backbone": "mind-ssc", "device": "cpu", "use_cache": False}


@pytest.fixture(scope="module")
def pair():
    return make_pair(shape=(64, 64, 64), spacing=(5.0, 5.0, 5.0), seed=5)


@pytest.fixture
def setup(pair, tmp_path):
    scene = slicer.vtkMRMLScene()
    fixed = add_volume_node(scene, pair.fixed, "fixed")
    moving = add_volume_node(scene, pair.moving, "moving")
    lm = sample_landmarks(pair, n=6, seed=5)
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "F")
    write_markups(points, lm, locked=False)
    env = dict(os.environ, MEDDIFT_WEIGHTS_DIR=str(tmp_path / "none"))
    logic = MedDIFTLogicCore(scene, env=env)
    yield scene, logic, fixed, moving, points, lm
    logic.kill_worker()


def _request(fixed, moving, points, **kw):
    return MatchRequest(
        fixed.GetID(), moving.GetID(), points.GetID(), engine=ENGINE, matching={"radius_mm": 25.0}, **kw
    )


def _node_ids(scene):
    return sorted(scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes()))


def test_job_puts_matches_and_heatmap_into_the_scene(setup, pair):
    scene, logic, fixed, moving, points, lm = setup
    job = logic.start_match(_request(fixed, moving, points)).run(timeout=300)
    assert job.error is None, job.error
    out = job.result.points_node
    matched = pointset_from_markups(out)
    assert matched.labels == lm.labels
    truth = pair.true_moving_points(lm.points)
    assert np.median(tre(matched.points, truth)) < np.median(tre(lm.points, truth))
    assert all(out.GetNthControlPointLocked(i) for i in range(out.GetNumberOfControlPoints()))
    assert "similarity=" in out.GetNthControlPointDescription(0)
    hm = job.result.heatmap_node
    assert hm.GetImageData().GetDimensions() == moving.GetImageData().GetDimensions()
    assert hm.GetAttribute("MedDIFT.Heatmap") == "1"
    assert not job.tmp.exists()  # temporary volumes removed
    # a second run reuses the module's heatmap node, and creates a new point list (not overwriting)
    job2 = logic.start_match(_request(fixed, moving, points)).run(timeout=300)
    assert job2.result.heatmap_node is hm and job2.result.points_node is not out


def test_existing_user_points_are_asked_about_before_any_work(setup):
    """The question comes first: "No" starts nothing (no worker, no temporary files), "Yes" replaces."""
    from MedDIFTSceneLib.jobsteps import OverwriteDeclined

    scene, logic, fixed, moving, points, lm = setup
    user = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "mine")
    user.AddControlPoint(vtk.vtkVector3d(1, 2, 3), "keep")
    asked = []
    with pytest.raises(OverwriteDeclined, match="'mine' already has points and was kept"):
        logic.start_match(
            _request(fixed, moving, points, output_points_id=user.GetID()),
            overwrite=lambda node: asked.append(node) or False,
        )
    assert asked == [user] and logic.client is None and not logic.busy()
    assert user.GetNumberOfControlPoints() == 1 and user.GetNthControlPointLabel(0) == "keep"
    job = logic.start_match(
        _request(fixed, moving, points, output_points_id=user.GetID()), overwrite=lambda node: True
    ).run(timeout=300)
    assert job.error is None and user.GetNumberOfControlPoints() == len(lm)


def test_cancel_leaves_the_scene_as_it_was(setup):
    scene, logic, fixed, moving, points, lm = setup
    before = _node_ids(scene)
    job = logic.start_match(_request(fixed, moving, points))
    job.poll()  # the first request is on its way
    job.cancel()
    assert job.cancelled and job.done and job.result is None
    assert _node_ids(scene) == before
    assert not job.tmp.exists()
    assert logic.client is None  # killed; the next job starts a fresh worker
    job = logic.start_match(_request(fixed, moving, points)).run(timeout=300)
    assert job.error is None


def test_crashed_worker_is_reported_and_nothing_half_written(setup):
    import signal

    scene, logic, fixed, moving, points, lm = setup
    before = _node_ids(scene)
    job = logic.start_match(_request(fixed, moving, points))
    job.poll()
    os.kill(logic.client.pid, signal.SIGKILL)
    job.run(timeout=60)
    assert job.error is not None and "the worker process ended" in str(job.error)
    assert _node_ids(scene) == before and not job.tmp.exists()


def test_empty_point_list_is_refused_before_anything_starts(setup, monkeypatch, tmp_path):
    import tempfile

    scene, logic, fixed, moving, points, lm = setup
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the job's temporary folders go here
    empty = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "nothing yet")
    before = _node_ids(scene)
    with pytest.raises(InputError, match="the point list 'nothing yet' has no placed points"):
        logic.start_match(MatchRequest(fixed.GetID(), moving.GetID(), empty.GetID(), engine=ENGINE))
    assert _node_ids(scene) == before and not logic.busy()
    assert not list(tmp_path.glob("meddift-job-*"))  # no temporary folder left


def test_two_runs_at_once_are_refused_and_the_first_finishes(setup):
    """Both would share the one worker and write the same nodes: the second start (and a live
    match) is refused while the first runs; it then finishes normally and a new run may start."""
    scene, logic, fixed, moving, points, lm = setup
    first = logic.start_match(_request(fixed, moving, points))
    first.poll()
    with pytest.raises(
        InputError,
        match=r"cannot start another run: a MedDIFT run is in progress \((start worker|configure|load fixed)\); "
        r"wait for it to finish or cancel it first",
    ):
        logic.start_match(_request(fixed, moving, points))
    first.run(timeout=300)
    assert first.error is None and first.result is not None
    second = logic.start_match(_request(fixed, moving, points))
    with pytest.raises(InputError, match="cannot match a point live: a MedDIFT run is in progress"):
        logic.match_point(first, 0)
    assert second.run(timeout=300).error is None


def test_input_warnings_reach_the_job(setup, pair):
    """A scan without air (here: HU + 1024, an unrescaled CT) is matched, and the engine's warning
    with its remedy comes back through the worker into the job's result and log."""
    from MedDIFTLib.data.geometry import Volume

    scene, logic, fixed, moving, points, lm = setup
    raw = add_volume_node(scene, Volume(pair.moving.array + 1024.0, pair.moving.ijk_to_ras, "raw"), "raw moving")
    job = logic.start_match(_request(fixed, raw, points)).run(timeout=300)
    assert job.error is None
    assert len(job.result.warnings) == 1 and "moving volume 'raw moving'" in job.result.warnings[0]
    # said in the panel's words (no CLI flag): the correction belongs to the scan it names
    assert "correct this scan: add -1024 to the" in job.result.warnings[0]
    assert "--" not in job.result.warnings[0]
    assert any(line.startswith("warning: moving volume") for line in job.log)


def test_live_match_moves_the_partner_and_updates_the_heatmap(setup, pair):
    scene, logic, fixed, moving, points, lm = setup
    job = logic.start_match(_request(fixed, moving, points)).run(timeout=300)
    out = job.result.points_node
    from MedDIFTSceneLib.scene import volume_from_node

    hm_before = volume_from_node(job.result.heatmap_node).array.copy()
    # the user drags landmark 2 onto landmark 4's position: its partner must follow to 4's match
    target = lm.points[4]
    points.SetNthControlPointPositionWorld(2, *target)
    res = logic.match_point(job, 2)
    p = [0.0, 0.0, 0.0]
    out.GetNthControlPointPositionWorld(2, p)
    np.testing.assert_allclose(p, res["point"])
    q = [0.0, 0.0, 0.0]
    out.GetNthControlPointPositionWorld(4, q)
    assert np.linalg.norm(np.array(p) - np.array(q)) < 5.0 * np.sqrt(3)
    hm_after = volume_from_node(job.result.heatmap_node).array
    assert hm_after.shape == hm_before.shape and np.abs(hm_after - hm_before).max() > 1e-3  # the new point's map
    # a new point added to the fixed list gets a partner
    points.AddControlPointWorld(vtk.vtkVector3d(*lm.points[0]), "new")
    logic.match_point(job, points.GetNumberOfControlPoints() - 1)
    assert out.GetNthControlPointLabel(out.GetNumberOfControlPoints() - 1) == "new"


def test_pair_table_accept_correct_and_export(setup, tmp_path):
    scene, logic, fixed, moving, points, lm = setup
    job = logic.start_match(_request(fixed, moving, points)).run(timeout=300)
    out = job.result.points_node
    pairs = pairs_from_nodes(points, out)
    assert [p.label for p in pairs] == lm.labels and all(p.status == "proposed" for p in pairs)
    accept(out, lm.labels[0])
    start_correction(out, lm.labels[1])
    assert not out.GetNthControlPointLocked(1)
    out.SetNthControlPointPositionWorld(1, 1.0, 2.0, 3.0)  # the reader moves it by hand
    pairs = pairs_from_nodes(points, out)
    assert pairs[0].status == "accepted" and pairs[1].status == "corrected"
    np.testing.assert_allclose(pairs[1].moving, [1.0, 2.0, 3.0])  # the correction is kept
    written = export_pairs(pairs, tmp_path / "pairs.csv")
    text = written[0].read_text().splitlines()
    assert text[0].startswith("label,fixed_x") and text[2].startswith(f"{lm.labels[1]},") and "corrected" in text[2]
    written = export_pairs(pairs, tmp_path / "pairs.mrk.json")
    from MedDIFTLib.data.landmark_io import read_points

    moving = read_points(written[1])
    np.testing.assert_allclose(moving.points[1], [1.0, 2.0, 3.0], atol=1e-6)


def test_dense_job_adds_a_transform_that_lays_moving_over_fixed_and_a_warped_volume(setup, pair):
    scene, logic, fixed, moving, points, lm = setup
    request = MatchRequest(
        fixed.GetID(),
        moving.GetID(),
        points.GetID(),
        engine=ENGINE,
        matching={},
        prior="dense",
        transform=True,
        warp=True,
    )  # no radius: the map's position is the match
    job = logic.start_match(request).run(timeout=600)
    assert job.error is None, job.error
    tnode, wnode = job.result.transform_node, job.result.warped_node
    assert tnode.IsA("vtkMRMLGridTransformNode") and wnode.GetName() == "moving registered"
    matched = pointset_from_markups(job.result.points_node)
    assert "argmax_gap_mm" in matched.values
    # the node maps each fixed landmark (world) where the matched point is: the map's position
    from_parent = tnode.GetTransformFromParent()
    mapped = np.array([from_parent.TransformPoint(*p) for p in lm.points])
    np.testing.assert_allclose(mapped, matched.points, atol=0.05)
    truth = pair.true_moving_points(lm.points)
    assert np.mean(tre(matched.points, truth)) < 0.6 * np.mean(tre(lm.points, truth))
    # the moving volume under the node is shown over the fixed one: a matched point goes back to its landmark
    moving.SetAndObserveTransformNodeID(tnode.GetID())
    world = [0.0, 0.0, 0.0]
    moving.TransformPointToWorld(list(matched.points[0]), world)
    np.testing.assert_allclose(world, lm.points[0], atol=0.1)
    assert wnode.GetImageData().GetDimensions() == fixed.GetImageData().GetDimensions()
    assert not job.tmp.exists()


def test_option_errors_are_said_in_the_panels_words(setup):
    """Issue 11/13: an engine refusal names the panel field (Advanced > Device), not a CLI flag;
    the scene is left as it was; search radius 0 is a global search, as the panel says."""
    scene, logic, fixed, moving, points, lm = setup
    before = _node_ids(scene)
    request = MatchRequest(
        fixed.GetID(), moving.GetID(), points.GetID(), engine={**ENGINE, "device": "tpu"}, matching={"radius_mm": 25.0}
    )
    job = logic.start_match(request).run(timeout=300)
    assert job.error is not None and "Advanced > Device" in str(job.error) and "--device" not in str(job.error)
    assert _node_ids(scene) == before
    request = MatchRequest(fixed.GetID(), moving.GetID(), points.GetID(), engine=ENGINE, matching={"radius_mm": 0})
    job = logic.start_match(request).run(timeout=300)
    assert job.error is None and len(job.result.matched) == len(lm)
