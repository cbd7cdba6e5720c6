"""Tracking sessions: saved with the scene and loaded back exactly, and tracking through follow-ups.

The round trip uses slicer-core's real scene writer and reader (``SaveSceneToSlicerDataBundleDirectory``
writes the ``.mrml`` with each node's file, ``Zip`` makes the ``.mrb``, ``Import`` and
``OpenSlicerDataBundle`` read them); the multi-scan run uses the real worker (weight-free backbone).
"""

from __future__ import annotations

import os

import numpy as np
import pytest


def _session_scene(slicer, n_follow_ups=2):
    from MedDIFTLib.data.points import PointSet
    from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
    from MedDIFTSceneLib.scene import add_volume_node, write_markups
    from MedDIFTSceneLib.session import TrackingSession
    from MedDIFTSceneLib.tracking import accept, start_correction

    scene = slicer.mrmlScene
    pair = make_pair(shape=(32, 32, 32), spacing=(8.0, 8.0, 8.0), seed=2)
    base = add_volume_node(scene, pair.fixed, "baseline")
    ups = [add_volume_node(scene, pair.moving, f"follow-up {t}") for t in range(1, n_follow_ups + 1)]
    lm = sample_landmarks(pair, n=4, seed=2)
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "lesions")
    write_markups(points, lm, locked=False)
    session = TrackingSession.create(scene, base, points, ups, mode="previous")
    rng = np.random.default_rng(0)
    for t in range(1, n_follow_ups + 1):
        values = {
            "similarity": rng.uniform(0.3, 0.9, len(lm)),
            "confidence": rng.uniform(0.1, 1.0, len(lm)),
            "fb_error_mm": rng.uniform(0, 3, len(lm)),
        }
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"matched {t}")
        write_markups(node, PointSet(lm.points + t * 1.5, lm.labels, values), locked=True)
        session.set_matched(t, node)
    accept(session.matched(1), lm.labels[0])
    start_correction(session.matched(2), lm.labels[1])
    session.matched(2).SetNthControlPointPositionWorld(1, 11.0, -22.0, 33.0)  # the reader's correction
    return session


def _reload(slicer, how, tmp_path):
    app, scene = slicer.app.applicationLogic(), slicer.mrmlScene
    folder = tmp_path / "saved"
    folder.mkdir()
    assert app.SaveSceneToSlicerDataBundleDirectory(str(folder))
    scene.Clear(0)
    assert scene.GetFirstNodeByName("lesions") is None
    if how == "mrml":  # the .mrml with its files, read by the scene's own reader
        mrml = next(folder.glob("*.mrml"))
        assert any((folder / "Data").glob("*.mrk.json")) and any((folder / "Data").glob("*.nrrd"))
        scene.SetURL(str(mrml))
        assert scene.Import()
    else:  # .mrb: the same folder zipped, opened as Slicer opens a bundle
        mrb = tmp_path / "session.mrb"
        assert app.Zip(str(mrb), str(folder))
        (tmp_path / "unpacked").mkdir()
        assert app.OpenSlicerDataBundle(str(mrb), str(tmp_path / "unpacked"))


@pytest.mark.parametrize("how", ["mrml", "mrb"])
def test_session_survives_saving_and_loading_the_scene(slicer_app, tmp_path, how):
    from MedDIFTSceneLib.session import TrackingSession

    session = _session_scene(slicer_app)
    table, header = session.table_text(), session.header()
    assert table[0][3] == "accepted" and table[1][6] == "corrected" and table[1][4].startswith("11.0, -22.0")
    _reload(slicer_app, how, tmp_path)
    sessions = TrackingSession.all_in(slicer_app.mrmlScene)
    assert len(sessions) == 1
    loaded = sessions[0]
    assert loaded.mode == "previous" and loaded.baseline_volume.GetName() == "baseline"
    assert [v.GetName() for v in loaded.follow_ups] == ["follow-up 1", "follow-up 2"]
    assert loaded.header() == header and loaded.table_text() == table  # exactly the table that was saved
    assert loaded.matched(1).GetNthControlPointLocked(0) and not loaded.matched(2).GetNthControlPointLocked(1)
    assert loaded.baseline_volume.GetImageData().GetDimensions() == (32, 32, 32)


def test_landmarks_tracked_through_several_follow_ups(slicer_app, tmp_path):
    """A baseline and two follow-ups; follow-up 2 from follow-up 1's matches ('previous') or from the
    baseline. Follow-up 2 is the same scan as follow-up 1 here, so tracked from the previous time
    point its matches must stay where follow-up 1's are; from the baseline they must agree with them."""
    from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
    from MedDIFTSceneLib.logic import MedDIFTLogicCore
    from MedDIFTSceneLib.scene import add_volume_node, pointset_from_markups, write_markups
    from MedDIFTSceneLib.session import TrackingSession

    scene = slicer_app.mrmlScene
    pair = make_pair(shape=(64, 64, 64), spacing=(5.0, 5.0, 5.0), seed=5)
    base = add_volume_node(scene, pair.fixed, "baseline")
    fu1 = add_volume_node(scene, pair.moving, "month 3")
    fu2 = add_volume_node(scene, pair.moving, "month 6")
    lm = sample_landmarks(pair, n=5, seed=5)
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "lesions")
    write_markups(points, lm, locked=False)
    logic = MedDIFTLogicCore(scene, env=dict(os.environ, MEDDIFT_WEIGHTS_DIR=str(tmp_path / "none")))
    engine = {"backbone": "mind-ssc", "device": "cpu"}
    try:
        results = {}
        for mode in ("previous", "baseline"):
            session = TrackingSession.create(scene, base, points, [fu1, fu2], mode=mode)
            job = logic.start_tracking(session, engine, {"radius_mm": 25.0})
            fractions = []
            while job.poll():
                fractions.append(job.fraction)
            assert job.error is None, job.error
            assert fractions == sorted(fractions)
            m1, m2 = (pointset_from_markups(session.matched(t)).points for t in (1, 2))
            results[mode] = (m1, m2)
            assert session.source(2)[1] is (session.matched(1) if mode == "previous" else points)
            header, rows = session.header(), session.table_text()
            assert header == [
                "Label",
                "month 3: match (RAS)",
                "month 3: confidence",
                "month 3: status",
                "month 6: match (RAS)",
                "month 6: confidence",
                "month 6: status",
            ]
            assert [r[0] for r in rows] == lm.labels and all(r[3] == r[6] == "proposed" for r in rows)
            truth = pair.true_moving_points(lm.points)
            assert np.mean(np.linalg.norm(m1 - truth, axis=1)) < np.mean(np.linalg.norm(lm.points - truth, axis=1))
        prev1, prev2 = results["previous"]
        assert np.median(np.linalg.norm(prev2 - prev1, axis=1)) < 2.5  # same scan: the matches stay
        np.testing.assert_allclose(results["baseline"][1], results["baseline"][0], atol=1e-3)
    finally:
        logic.kill_worker()


def test_a_match_that_does_not_lead_back_is_flagged_in_the_table(slicer_app):
    import qt

    from MedDIFTLib.data.points import PointSet
    from MedDIFTSceneLib.scene import write_markups
    from MedDIFTWidgetLib.panel import fillTrackingTable

    session = _session_scene(slicer_app)
    node = session.matched(1)
    ps = PointSet(
        np.array([node.GetNthControlPointPositionWorld(i) for i in range(4)]),
        [node.GetNthControlPointLabel(i) for i in range(4)],
        {
            "similarity": np.full(4, 0.8),
            "confidence": np.full(4, 0.5),
            "fb_error_mm": np.array([1, 30, 1, 1.0]),
            "fb_flag": np.array([0, 1, 0, 0.0]),
        },
    )
    write_markups(node, ps, locked=True)
    rows = session.table_text()  # Label, then (match, confidence, status) per follow-up
    assert rows[1][3] == "check: does not match back" and rows[2][3] == "proposed"
    assert "fb_flag=1" in node.GetNthControlPointDescription(1)  # the markups description says it too
    table = qt.QTableWidget()
    fillTrackingTable(table, session)
    assert table.item(1, 0).data(qt.Qt.BackgroundRole) is not None
    assert table.item(2, 0).data(qt.Qt.BackgroundRole) is None
