"""The whole job without Slicer: the session and its priors on phantom pairs."""

from __future__ import annotations

import numpy as np
import pytest

from MedDIFTLib.data.points import PointSet
from MedDIFTLib.errors import GeometryError, InputError
from MedDIFTLib.evaluation.metrics import tre
from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
from MedDIFTLib.matching.priors import load_prior
from MedDIFTLib.matching.search import MatchOptions
from MedDIFTLib.session import EngineOptions, MatchSession, resolve_backbone

SMALL = dict(shape=(80, 80, 80), spacing=(4.0, 4.0, 4.0))


@pytest.fixture(scope="module")
def pair():
    return make_pair(seed=4, **SMALL)


@pytest.fixture(scope="module")
def landmarks(pair):
    return sample_landmarks(pair, n=10, seed=4)


def test_auto_backbone_without_weights_says_plainly_it_is_not_meddift(no_weights):
    bb, note = resolve_backbone(EngineOptions(backbone="auto"))
    assert bb.name == "mind-ssc"
    assert "MAISI weights not found" in note and "NOT the MedDIFT diffusion-feature method" in note


def test_session_matches_phantom_landmarks_better_than_identity(pair, landmarks, no_weights):
    session = MatchSession(EngineOptions(backbone="mind-ssc"), MatchOptions(radius_mm=25.0))
    matched = session.match(pair.fixed, pair.moving, landmarks, prior=load_prior("identity")).points
    truth = pair.true_moving_points(landmarks.points)
    before, after = tre(landmarks.points, truth), tre(matched.points, truth)
    assert matched.labels == landmarks.labels
    assert np.median(after) < 0.75 * np.median(before)  # 4 mm voxels: identity 2.8 mm, matched 1.7 mm
    assert set(matched.values) == {"similarity", "confidence", "margin", "fb_error_mm", "fb_flag"}
    assert np.all(np.linalg.norm(matched.points - landmarks.points, axis=1) <= 25.0 + 4.0)


def test_undefined_points_stay_undefined_and_outside_points_are_named(pair, landmarks, no_weights):
    session = MatchSession(EngineOptions(backbone="mind-ssc"))
    pts = landmarks.points.copy()
    pts[1] = np.nan
    ps = PointSet(pts, list(landmarks.labels))
    out = session.match(pair.fixed, pair.moving, ps).points
    assert np.all(np.isnan(out.points[1])) and np.isnan(out.values["similarity"][1])
    assert np.all(np.isfinite(out.points[0]))
    far = PointSet(np.array([[0.0, 0.0, 0.0], [900.0, 0.0, 0.0]]), ["ok", "far away"])
    with pytest.raises(GeometryError, match="1 of 2 landmarks lie outside the volume.*far away"):
        _ = session.match(pair.fixed, pair.moving, far).points
    with pytest.raises(InputError, match="landmark list is empty"):
        _ = session.match(pair.fixed, pair.moving, PointSet(np.zeros((0, 3)), [])).points


def test_prior_without_radius_is_refused(pair, landmarks, no_weights):
    session = MatchSession(EngineOptions(backbone="mind-ssc"))
    with pytest.raises(InputError, match="a prior needs a search radius"):
        _ = session.match(pair.fixed, pair.moving, landmarks, prior=load_prior("identity")).points


def test_heatmap_is_on_the_moving_grid_and_peaks_near_the_match(pair, landmarks, no_weights):
    session = MatchSession(EngineOptions(backbone="mind-ssc"))
    hm = session.heatmap(pair.fixed, pair.moving, landmarks.points[0])
    assert hm.shape == pair.moving.shape
    np.testing.assert_allclose(hm.ijk_to_ras, pair.moving.ijk_to_ras)
    matched = session.match(pair.fixed, pair.moving, landmarks.subset([0])).points
    peak = hm.ijk_to_world(np.array(np.unravel_index(np.argmax(hm.array), hm.shape))[None])[0]
    assert np.linalg.norm(peak - matched.points[0]) < 4.0 * np.sqrt(3)  # within one voxel diagonal


# --- priors: every convention against a known transform ------------------------------------


def test_matrix_prior_file(tmp_path):
    m = np.eye(4)
    m[:3, 3] = [5.0, -3.0, 2.0]
    np.savetxt(tmp_path / "m.txt", m)
    np.testing.assert_allclose(load_prior(str(tmp_path / "m.txt"))([[1.0, 2.0, 3.0]]), [[6.0, -1.0, 5.0]])
    np.save(tmp_path / "m.npy", m)
    np.testing.assert_allclose(load_prior(str(tmp_path / "m.npy"))([[0.0, 0.0, 0.0]]), [[5.0, -3.0, 2.0]])


def test_itk_transform_prior_converts_lps_to_ras(tmp_path):
    import SimpleITK as sitk

    t = sitk.TranslationTransform(3, (1.0, 2.0, 3.0))  # LPS: 1 mm left, 2 mm posterior, 3 mm superior
    sitk.WriteTransform(t, str(tmp_path / "t.tfm"))
    np.testing.assert_allclose(load_prior(str(tmp_path / "t.tfm"))([[10.0, 20.0, 30.0]]), [[9.0, 18.0, 33.0]])


def test_displacement_field_prior_converts_lps_to_ras(tmp_path):
    import SimpleITK as sitk

    field = sitk.Image([20, 20, 20], sitk.sitkVectorFloat64, 3)
    field.SetOrigin((-50.0, -50.0, -50.0))
    field.SetSpacing((5.0, 5.0, 5.0))
    arr = np.zeros((20, 20, 20, 3))
    arr[..., :] = [2.0, -4.0, 1.0]  # LPS displacement
    img = sitk.GetImageFromArray(arr, isVector=True)
    img.CopyInformation(field)
    sitk.WriteImage(img, str(tmp_path / "dvf.nii.gz"))
    prior = load_prior(str(tmp_path / "dvf.nii.gz"))
    # RAS point (0, 0, 0) is LPS (0, 0, 0): moved by LPS (2, -4, 1) = RAS (-2, 4, 1)
    np.testing.assert_allclose(prior([[0.0, 0.0, 0.0]]), [[-2.0, 4.0, 1.0]], atol=1e-9)


def test_bad_prior_files(tmp_path):
    with pytest.raises(InputError, match="prior transform file not found"):
        load_prior(str(tmp_path / "none.tfm"))
    (tmp_path / "bad.txt").write_text("1 2 3\n")
    with pytest.raises(InputError, match="4x4 homogeneous RAS matrix"):
        load_prior(str(tmp_path / "bad.txt"))


def test_coarse_prior_runs_the_coarsest_level_first(pair, landmarks, no_weights):
    session = MatchSession(EngineOptions(backbone="mind-ssc"), MatchOptions(radius_mm=15.0))
    matched = session.match(pair.fixed, pair.moving, landmarks, prior="coarse").points
    truth = pair.true_moving_points(landmarks.points)
    assert np.median(tre(matched.points, truth)) < np.median(tre(landmarks.points, truth))


def test_confidence_carries_the_forward_backward_check_and_a_flag_marks_matches_that_do_not_lead_back(
    pair, landmarks, no_weights
):
    from MedDIFTLib.session import _checked_confidence

    session = MatchSession(EngineOptions(backbone="mind-ssc", use_cache=False), MatchOptions(radius_mm=25.0))
    out = session.match(pair.fixed, pair.moving, landmarks, prior="none").points  # the paper's argmax
    fb, flag, conf = out.values["fb_error_mm"], out.values["fb_flag"], out.values["confidence"]
    limit = 2.0 * 4.0  # two moving voxels
    np.testing.assert_array_equal(flag, (fb > limit).astype(float))
    margin_only = np.clip(out.values["margin"] / 0.1, 0, 1)
    np.testing.assert_allclose(conf, margin_only * np.clip(1 - fb / (2 * limit), 0, 1), atol=1e-9)

    class Res:  # a match that went far on the way back, one that came back, one not checked
        margin = np.array([0.2, 0.2, 0.2])
        fb_error_mm = np.array([20.0, 1.0, np.nan])
        extra = {}
        confidence = np.clip(margin / 0.1, 0, 1)

    grid = session.features(pair.moving).grid
    c, f = _checked_confidence(Res(), grid)
    assert c[0] == 0.0 and 0.8 < c[1] < 1.0 and c[2] == 1.0
    assert f[0] == 1.0 and f[1] == 0.0 and np.isnan(f[2])


def test_a_point_without_candidates_is_named_by_its_label(pair, landmarks, no_weights):
    session = MatchSession(EngineOptions(backbone="mind-ssc", use_cache=False), MatchOptions(radius_mm=25.0))
    # candidates only in one corner of the moving scan: far outside every landmark's 25 mm window
    corner = np.zeros(pair.moving.shape, dtype=np.uint8)
    corner[:3, :3, :3] = 1
    with pytest.raises(InputError, match=f"point '{landmarks.labels[0]}' at .* has no candidate voxel"):
        session.match(pair.fixed, pair.moving, landmarks, prior="none", mask=pair.moving.with_array(corner))
