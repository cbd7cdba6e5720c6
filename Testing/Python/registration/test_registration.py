"""Dense registration: recovery of known motions, the conventions of the written field, inversion."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MedDIFTLib.errors import InputError
from MedDIFTLib.evaluation.motion import BreathingMotion, RepositionedMotion
from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
from MedDIFTLib.features import create_backbone
from MedDIFTLib.registration import RegistrationOptions, register, write_field
from MedDIFTLib.registration.convex import displacement_table, inverse_consistent
from MedDIFTLib.registration.prealign import kabsch, prealign
from MedDIFTLib.registration.volumes import register_volumes, rotation_deg
from synthetic_fields import oblique_grid as _oblique_grid
from synthetic_fields import smooth_field as _smooth_field

LPS = np.array([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def breathing_pair():
    pair = make_pair(shape=(64, 64, 64), spacing=(4.5, 4.5, 4.5), seed=3, motion=BreathingMotion(amplitude_mm=20.0))
    bb = create_backbone("mind-ssc", levels=("mind1", "mind2", "mind4"))  # what the session registers with
    return pair, bb.extract(pair.fixed), bb.extract(pair.moving)


def test_known_breathing_field_is_recovered_to_subvoxel_accuracy(breathing_pair):
    pair, pf, pm = breathing_pair
    field = register(pf, pm, RegistrationOptions(prealign="none"))
    lm = sample_landmarks(pair, n=12, seed=3)
    truth = pair.true_moving_points(lm.points)
    err = np.linalg.norm(field.map_points(lm.points) - truth, axis=1)
    before = np.linalg.norm(lm.points - truth, axis=1)
    assert before.mean() > 3.5  # the motion is real: most of a voxel (4.5 mm) on average, up to 7 mm
    assert err.mean() < 0.5 * 4.5, err  # sub-voxel on average
    assert err.mean() < 0.4 * before.mean()
    # the field itself, all through the lungs, not only at landmarks
    lungs = pair.fixed_lungs
    ijk = np.argwhere(lungs.array > 0)[::97]
    ras = lungs.ijk_to_world(ijk)
    dense_err = np.linalg.norm(field.map_points(ras) - pair.true_moving_points(ras), axis=1)
    assert np.median(dense_err) < 0.5 * 4.5
    stats = field.jacobian_stats()
    assert stats["folding_share"] < 1e-3 and stats["jacobian_min"] > 0


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd", ".h5"])
def test_written_field_maps_points_in_simpleitk_as_the_engine_says(tmp_path, ext):
    field = _smooth_field()
    grid = _oblique_grid()  # oblique, anisotropic: pins LPS/RAS and the direction matrix
    path = write_field(field.displacement_on(grid), grid, tmp_path / f"field{ext}")
    if ext == ".h5":
        tx = sitk.ReadTransform(str(path))
    else:
        tx = sitk.DisplacementFieldTransform(sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkVectorFloat64))
    ijk = np.array([[3, 4, 5], [10, 2, 7], [0, 17, 10], [15, 9, 1]], dtype=float)
    ras = grid.ijk_to_ras[:3, :3] @ ijk.T
    ras = ras.T + grid.ijk_to_ras[:3, 3]
    got = np.array([tx.TransformPoint(tuple(p * LPS)) for p in ras]) * LPS
    np.testing.assert_allclose(got, field.map_points(ras), atol=1e-6)
    # between voxel centres ITK interpolates the written samples: close, not exact
    mid = ras[:2] + 0.5 * grid.ijk_to_ras[:3, 0]
    got_mid = np.array([tx.TransformPoint(tuple(p * LPS)) for p in mid]) * LPS
    np.testing.assert_allclose(got_mid, field.map_points(mid), atol=0.2)


def test_unknown_field_extension_is_refused(tmp_path):
    field = _smooth_field()
    grid = _oblique_grid()
    with pytest.raises(InputError, match="written as"):
        write_field(field.displacement_on(grid), grid, tmp_path / "field.png")
    assert not list(tmp_path.iterdir())


def test_inverse_composes_with_forward_to_identity():
    field = _smooth_field()
    rng = np.random.default_rng(0)
    x = rng.uniform([-15, 0, 15], [10, 20, 30], (50, 3))
    np.testing.assert_allclose(field.inverse_points(field.map_points(x)), x, atol=1e-3)
    y = field.map_points(x)
    np.testing.assert_allclose(field.map_points(field.inverse_points(y)), y, atol=1e-3)


def test_inverse_consistency_block_makes_opposite_fields_invert_each_other():
    shape = (6, 7, 5)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), 0)
    import torch

    f = torch.from_numpy(0.4 * np.sin(idx / 3.0)).float()
    b = torch.from_numpy(-0.4 * np.sin(idx / 3.0)).float() + 0.3  # inconsistent by 0.3 voxel
    f2, b2 = inverse_consistent(f, b, iterations=20)
    from MedDIFTLib.registration.descriptors import warp as _warp

    resid = (f2 + _warp(b2, f2)).abs()[:, 1:-1, 1:-1, 1:-1].max().item()
    before = (f + _warp(b, f)).abs()[:, 1:-1, 1:-1, 1:-1].max().item()
    assert resid < 0.25 * before


def test_displacement_table_is_symmetric_and_stepped():
    t = displacement_table(2, 3)
    assert t.shape == (125, 3)
    assert set(t[:, 0].tolist()) == {-6.0, -3.0, 0.0, 3.0, 6.0}
    assert (t == 0).all(1).sum() == 1


def test_kabsch_recovers_a_rigid_transform():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(1, 10, 3)) * 30
    a = np.radians(8.0)
    r = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    dst = src @ r.T + [20.0, -10.0, 5.0]
    m = kabsch(src, dst)[0]
    np.testing.assert_allclose(m[:3, :3], r, atol=1e-9)
    np.testing.assert_allclose(m[:3, 3], [20.0, -10.0, 5.0], atol=1e-9)


def test_prealignment_recovers_a_known_rigid_motion():
    motion = RepositionedMotion(BreathingMotion(amplitude_mm=0.0), angle_deg=8.0, shift_mm=(15.0, -12.0, 15.0))
    pair = make_pair(shape=(64, 64, 64), spacing=(4.5, 4.5, 4.5), seed=2, motion=motion)
    bb = create_backbone("mind-ssc")
    lungs = pair.fixed_lungs
    pts = lungs.ijk_to_world(np.argwhere(lungs.array > 0)[::211])
    truth = motion.fixed_to_moving(pts)
    before = np.median(np.linalg.norm(pts - truth, axis=1))
    # the coarse global step alone: the right transform roughly (turned descriptors make it short of the turn)
    m, info = prealign(bb.extract(pair.fixed), bb.extract(pair.moving), spacing_mm=12.0)
    assert info["prealign_used"] == "rigid", info
    coarse = np.median(np.linalg.norm(pts @ m[:3, :3].T + m[:3, 3] - truth, axis=1))
    assert coarse < 0.5 * before
    # with the moving scan re-described in the fixed frame, round by round: the turn itself
    field = register_volumes(pair.fixed, pair.moving, bb.extract)
    a = field.prealign
    err = np.linalg.norm(pts @ a[:3, :3].T + a[:3, 3] - truth, axis=1)
    assert np.median(err) < 0.5 * coarse, (field.info["prealign_rounds"], np.median(err))
    assert rotation_deg(a) > rotation_deg(m) + 2.0  # the rounds recover most of the turn the coarse step missed
    dense_err = np.linalg.norm(field.map_points(pts) - truth, axis=1)
    assert np.median(dense_err) < 0.5 * 4.5, np.median(dense_err)  # the field: sub-voxel
    # rounds that turn run without the fine level; the answer has it: its field lies on the registration grid
    assert field.info["options"]["fine_iterations"] == RegistrationOptions().fine_iterations > 0
    assert list(field.grid.shape) == field.info["grid_shape"]


def test_large_motion_is_followed_without_user_input():
    motion = RepositionedMotion(BreathingMotion(amplitude_mm=10.0), angle_deg=8.0, shift_mm=(15.0, -12.0, 15.0))
    pair = make_pair(shape=(64, 64, 64), spacing=(4.5, 4.5, 4.5), seed=2, motion=motion)
    from MedDIFTLib.session import EngineOptions, MatchSession

    field = MatchSession(EngineOptions(backbone="mind-ssc", use_cache=False)).register(pair.fixed, pair.moving)
    lm = sample_landmarks(pair, n=10, seed=2)
    err = np.linalg.norm(field.map_points(lm.points) - pair.true_moving_points(lm.points), axis=1)
    assert err.max() < 5.0 and err.mean() < 2.5, err


def test_options_are_checked_in_user_terms():
    with pytest.raises(InputError, match="prealign must be one of none, rigid, affine, got 'similarity'"):
        RegistrationOptions(prealign="similarity")
    with pytest.raises(InputError, match="search must be a finite number"):
        RegistrationOptions(search_mm=float("nan"))
    with pytest.raises(InputError, match="grid_spacing must be positive"):
        RegistrationOptions(spacing_mm=0.0)
