"""The lesion worksheet in the scene: lines carried to each follow-up, the reader's accepted lengths, the
RECIST 1.1 table, and the scene round trip.

Real parts: slicer-core's scene and markups line nodes, the phantom's scans and its known motion as the
pair's dense field, slicer-core's own scene writer and reader for the ``.mrb``.
"""

from __future__ import annotations

import numpy as np
import pytest
from worksheet_helpers import affine_field, baseline_line, motion_field, phantom_session


def _field_from_baseline(session, field):
    return lambda fixed, moving: field if fixed is session.baseline_volume else None


def test_proposed_line_is_the_baseline_line_carried_through_the_field(slicer_app):
    from MedDIFTSceneLib import worksheet as ws

    session, pair, _lm = phantom_session(slicer_app)
    line = baseline_line(slicer_app, pair)
    ws.add_lesion(session, line)
    matrix, shift = np.array([[1.02, 0.01, 0.0], [0.0, 0.97, 0.02], [0.0, 0.0, 1.01]]), np.array([3.0, -4.0, 6.5])
    done = ws.propose_all(session, _field_from_baseline(session, affine_field(pair, matrix, shift)))
    assert done == [("L1", 1, ws.FROM_FIELD), ("L1", 2, ws.FROM_FIELD)]
    expected = ws.line_points(line) @ matrix.T + shift
    for t in (1, 2):
        proposed = ws.follow_up_line(line, t)
        # an affine displacement is reproduced exactly by trilinear interpolation: only rounding differs
        np.testing.assert_allclose(ws.line_points(proposed), expected, atol=1e-6)
        assert ws.status(proposed) == ws.NOT_REVIEWED and not proposed.GetLocked()
    assert ws.follow_up_line(line, 1).GetName() == "L1 month 3"


def test_proposed_line_lands_on_the_matched_lesion_through_the_phantom_motion(slicer_app):
    from MedDIFTSceneLib import worksheet as ws

    session, pair, lm = phantom_session(slicer_app)
    line = baseline_line(slicer_app, pair)
    ws.add_lesion(session, line)
    ws.propose(session, line, 1, _field_from_baseline(session, motion_field(pair)))
    ends = ws.line_points(ws.follow_up_line(line, 1))
    # the motion is smooth over a 6 mm voxel: interpolating it on the grid is off by far less than 0.05 mm
    np.testing.assert_allclose(ends, pair.true_moving_points(ws.line_points(line)), atol=0.05)
    moved_centre = pair.true_moving_points(pair.anatomy.lesions[:1])[0]
    assert np.linalg.norm(ends.mean(axis=0) - moved_centre) < 0.1  # on the lesion, not beside it
    assert np.linalg.norm(moved_centre - pair.anatomy.lesions[0]) > 3.0  # ... which did move


def test_without_a_field_the_line_moves_by_the_point_match(slicer_app):
    from MedDIFTSceneLib import worksheet as ws

    session, pair, lm = phantom_session(slicer_app, offset_mm=(1.5, -2.0, 0.5))
    line = baseline_line(slicer_app, pair)
    ws.add_lesion(session, line)
    proposed, how = ws.propose(session, line, 1)
    assert how == ws.FROM_TRANSLATION
    shift = pair.true_moving_points(lm.points[:1])[0] + [1.5, -2.0, 0.5] - lm.points[0]
    np.testing.assert_allclose(ws.line_points(proposed), ws.line_points(line) + shift, atol=1e-9)


def test_from_the_previous_time_point_the_readers_adjusted_line_is_carried(slicer_app):
    from MedDIFTSceneLib import worksheet as ws

    session, pair, _lm = phantom_session(slicer_app, mode="previous")
    line = baseline_line(slicer_app, pair)
    ws.add_lesion(session, line)
    first, _ = ws.propose(session, line, 1)
    first.SetNthControlPointPositionWorld(1, *(ws.line_points(first)[1] + [2.0, 0.0, 0.0]))
    assert ws.status(first) == ws.ADJUSTED
    ws.accept_line(first)
    second, how = ws.propose(session, line, 2)  # follow-up 2 matched from follow-up 1: same points, no shift
    assert how == ws.FROM_TRANSLATION
    np.testing.assert_allclose(ws.line_points(second), ws.line_points(first), atol=1e-9)


def test_a_proposal_is_never_counted(slicer_app):
    from MedDIFTSceneLib import worksheet as ws

    session, pair, _lm = phantom_session(slicer_app)
    line = baseline_line(slicer_app, pair)
    ws.add_lesion(session, line)
    ws.propose_all(session, _field_from_baseline(session, motion_field(pair)))
    adjusted = ws.follow_up_line(line, 2)
    adjusted.SetNthControlPointPositionWorld(0, *(ws.line_points(adjusted)[0] + [1.0, 0.0, 0.0]))
    assert [ws.accepted_length(line, t) for t in (1, 2)] == [None, None]
    table = ws.build_worksheet(session)
    assert [r.target.value for r in table.results] == ["baseline", "NE", "NE"]
    assert table.results[1].reasons == ["target response not evaluable: L1 not measured at this time point"]
    ws.accept_line(ws.follow_up_line(line, 1))
    assert ws.accepted_length(line, 1) == pytest.approx(ws.line_length(ws.follow_up_line(line, 1)), abs=1e-12)


def test_accepted_length_survives_a_rematch(slicer_app):
    from MedDIFTLib.data.points import PointSet
    from MedDIFTSceneLib import worksheet as ws
    from MedDIFTSceneLib.scene import write_markups

    session, pair, lm = phantom_session(slicer_app)
    line = baseline_line(slicer_app, pair)
    ws.add_lesion(session, line)
    ws.propose_all(session)
    accepted = ws.follow_up_line(line, 1)
    accepted.SetNthControlPointPositionWorld(1, *(ws.line_points(accepted)[1] + [3.0, 0.0, 0.0]))
    length = ws.accept_line(accepted)
    ends = ws.line_points(accepted)
    for t in (1, 2):  # a re-match puts every match 4 mm further right
        write_markups(session.matched(t), PointSet(pair.true_moving_points(lm.points) + [4.0, 0, 0], lm.labels))
    done = ws.propose_all(session)
    assert done == [("L1", 1, "kept: accepted"), ("L1", 2, ws.FROM_TRANSLATION)]
    np.testing.assert_array_equal(ws.line_points(accepted), ends)
    assert ws.accepted_length(line, 1) == length and accepted.GetLocked()
    shift = pair.true_moving_points(lm.points[:1])[0] + [4.0, 0, 0] - lm.points[0]
    np.testing.assert_allclose(ws.line_points(ws.follow_up_line(line, 2)), ws.line_points(line) + shift, atol=1e-9)


def test_response_follows_the_accepted_lengths_and_the_readers_assessment(slicer_app):
    from MedDIFTSceneLib import worksheet as ws

    session, pair, _lm = phantom_session(slicer_app)
    line = baseline_line(slicer_app, pair)  # 11.9 mm across
    ws.add_lesion(session, line, organ="lung")
    ws.propose_all(session)
    for t, scale in ((1, 0.6), (2, 0.6)):  # the reader measures 40% less: partial response
        fu = ws.follow_up_line(line, t)
        a, b = ws.line_points(fu)
        fu.SetNthControlPointPositionWorld(1, *(a + scale * (b - a)))
        ws.accept_line(fu)
    ws.set_assessment(session, 2, new_lesions="yes")
    table = ws.build_worksheet(session)
    assert [r.overall.value for r in table.results] == ["baseline", "PR", "PD"]
    assert table.results[1].change_from_baseline == pytest.approx(-0.4, abs=1e-9)
    assert table.results[2].reasons == ["new lesion(s)"]
    assert table.lesions[0].organ == "lung" and table.lesions[0].location.startswith("RAS 79.3, 9.8, 9.2")


def test_bad_measurements_are_refused_in_the_readers_terms(slicer_app):
    from MedDIFTLib.errors import InputError
    from MedDIFTSceneLib import worksheet as ws

    session, pair, _lm = phantom_session(slicer_app)
    half = slicer_app.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "half")
    half.AddControlPointWorld(0.0, 0.0, 0.0)
    with pytest.raises(InputError, match="line 'half' needs both end points placed"):
        ws.add_lesion(session, half)
    far = slicer_app.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "far")
    far.AddControlPointWorld(0.0, 90.0, 0.0)
    far.AddControlPointWorld(5.0, 90.0, 0.0)
    with pytest.raises(InputError, match="no tracked landmark within 20 mm of this line"):
        ws.add_lesion(session, far)
    line = baseline_line(slicer_app, pair)
    ws.add_lesion(session, line)
    with pytest.raises(InputError, match="landmark 'L1' already has a lesion"):
        ws.add_lesion(session, baseline_line(slicer_app, pair, name="again"))
    with pytest.raises(InputError, match="choose target or non-target"):
        ws.set_lesion_info(line, kind="maybe")
    with pytest.raises(InputError, match="non-target response 'better'"):
        ws.set_assessment(session, 1, non_target="better")


def _reload_mrb(slicer, tmp_path):
    app, scene = slicer.app.applicationLogic(), slicer.mrmlScene
    folder = tmp_path / "saved"
    folder.mkdir()
    assert app.SaveSceneToSlicerDataBundleDirectory(str(folder))
    mrb = tmp_path / "worksheet.mrb"
    assert app.Zip(str(mrb), str(folder))
    scene.Clear(0)
    (tmp_path / "unpacked").mkdir()
    assert app.OpenSlicerDataBundle(str(mrb), str(tmp_path / "unpacked"))


def test_worksheet_survives_saving_and_loading_the_scene(slicer_app, tmp_path):
    from MedDIFTLib.followup.worksheet_io import worksheet_csv
    from MedDIFTSceneLib import worksheet as ws
    from MedDIFTSceneLib.session import TrackingSession

    session, pair, _lm = phantom_session(slicer_app)
    first = baseline_line(slicer_app, pair)
    ws.add_lesion(session, first, organ="lung")
    ws.add_lesion(session, baseline_line(slicer_app, pair, 2, "L3 diameter"), kind="non-target", lymph_node=True)
    ws.propose_all(session, _field_from_baseline(session, motion_field(pair)))
    ws.accept_line(ws.follow_up_line(first, 1))
    ws.set_assessment(session, 1, new_lesions="equivocal", non_target="non-CR/non-PD")
    before = worksheet_csv(ws.build_worksheet(session))
    _reload_mrb(slicer_app, tmp_path)
    (loaded,) = TrackingSession.all_in(slicer_app.mrmlScene)
    lines = ws.lesions(loaded)
    assert [ws.label_of(x) for x in lines] == ["L1", "L3"]
    assert worksheet_csv(ws.build_worksheet(loaded)) == before  # lengths, kinds, organ, node, assessment
    assert [ws.status(ws.follow_up_line(lines[0], t)) for t in (1, 2)] == [ws.ACCEPTED, ws.NOT_REVIEWED]
    assert ws.follow_up_line(lines[0], 1).GetLocked() and ws.follow_up_line(lines[1], 2).GetName() == "L3 month 6"
    assert "L1,target,lung" in before and 'L3,non-target,,"RAS' in before and "equivocal" in before


def test_measuring_again_unlocks_and_stops_counting_until_accepted(slicer_app):
    from MedDIFTSceneLib import worksheet as ws

    session, pair, _lm = phantom_session(slicer_app)
    line = baseline_line(slicer_app, pair)
    ws.add_lesion(session, line)
    ws.propose_all(session)
    month3 = ws.follow_up_line(line, 1)
    ws.accept_line(month3)
    ws.reopen_line(month3)
    assert ws.status(month3) == ws.ADJUSTED and not month3.GetLocked() and ws.accepted_length(line, 1) is None
    assert ws.propose(session, line, 1)[1] == "kept: " + ws.ADJUSTED  # the reader's, even unmoved
    month3.RemoveNthControlPoint(1)  # to place that end again
    assert ws.status(ws.follow_up_line(line, 2)) == ws.NOT_REVIEWED
    ws.reopen_line(ws.follow_up_line(line, 2))
    ws.follow_up_line(line, 2).RemoveNthControlPoint(0)
    assert ws.propose(session, line, 2)[1] == "kept: " + ws.ADJUSTED


def test_a_deleted_baseline_line_leaves_the_worksheet(slicer_app):
    from MedDIFTSceneLib import worksheet as ws

    session, pair, _lm = phantom_session(slicer_app)
    first, second = baseline_line(slicer_app, pair), baseline_line(slicer_app, pair, 2, "L3 diameter")
    ws.add_lesion(session, first)
    ws.add_lesion(session, second)
    slicer_app.mrmlScene.RemoveNode(first)
    assert ws.lesions(session) == [second]
    assert [les.label for les in ws.build_worksheet(session).lesions] == ["L3"]
