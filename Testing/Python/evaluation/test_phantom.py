"""The thorax phantom and its breathing motion: determinism, anatomy, exact ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from MedDIFTLib.data.geometry import apply_affine, ijk_to_ras_from_itk
from MedDIFTLib.errors import InputError
from MedDIFTLib.evaluation.motion import BreathingMotion
from MedDIFTLib.evaluation.phantom import (
    make_pair,
    make_thorax,
    sample_landmarks,
)

SMALL = dict(shape=(64, 64, 64), spacing=(5.0, 5.0, 5.0))


@pytest.fixture(scope="module")
def pair():
    return make_pair(seed=2, motion=BreathingMotion(amplitude_mm=12.0, sliding=True), **SMALL)


def test_same_seed_same_phantom_other_seed_other_phantom():
    a, _, _ = make_thorax(seed=5, **SMALL)
    b, _, _ = make_thorax(seed=5, **SMALL)
    c, _, _ = make_thorax(seed=6, **SMALL)
    np.testing.assert_array_equal(a.array, b.array)
    assert np.abs(a.array - c.array).max() > 100


def test_structures_have_ct_like_intensities():
    vol, lungs, _ = make_thorax(seed=0, shape=(80, 80, 80), spacing=(4.0, 4.0, 4.0))
    a, lung = vol.array, lungs.array.astype(bool)
    assert abs(np.median(a[lung]) + 850) < 50  # lungs ~ -850 HU
    assert lung.mean() > 0.03
    assert a[0, 0, :].max() < -990  # air outside the body
    assert (a > 150).sum() > 200  # bone: spine and ribs
    # the spine sits posterior (negative y in RAS) in the midline
    spine = vol.world_to_ijk([[0.0, -80.0, 0.0]])[0].round().astype(int)
    assert a[tuple(spine)] > 150


def test_point_warped_forward_and_back_returns_within_0_01_mm():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-160, 160, size=(2000, 3))
    for motion in (BreathingMotion(), BreathingMotion(sliding=True), BreathingMotion(amplitude_mm=20.0)):
        back = motion.moving_to_fixed(motion.fixed_to_moving(pts))
        assert np.abs(back - pts).max() < 0.01
        fwd = motion.fixed_to_moving(motion.moving_to_fixed(pts))
        assert np.abs(fwd - pts).max() < 0.01


def test_motion_is_a_diffeomorphism_on_the_grid():
    motion = BreathingMotion(sliding=True)
    g = np.stack(np.meshgrid(*[np.linspace(-160, 160, 25)] * 3, indexing="ij"), -1).reshape(-1, 3)
    det = motion.jacobian_det(g)
    assert det.min() > 0.5 and det.max() < 1.5


def test_too_sharp_sliding_is_refused():
    with pytest.raises(InputError, match="sliding transition too sharp"):
        BreathingMotion(sliding=True, sliding_width_mm=2.0)


def test_diaphragm_moves_more_at_the_lung_base_than_at_the_apex():
    m = BreathingMotion(amplitude_mm=12.0)
    base, apex = m.displacement([[60.0, 5.0, -70.0], [60.0, 5.0, 100.0]])[:, 2]
    assert base > 5.0 and abs(apex) < 1.0


def test_moving_scan_is_the_anatomy_pulled_back(pair):
    """Each lesion's centre maps to the centre of that lesion in the (noise-free) moving scan."""
    clean = make_pair(seed=2, motion=pair.motion, noise_hu=0.0, shape=(128, 112, 128), spacing=(2.5, 2.5, 2.5))
    an = clean.anatomy
    arr = clean.moving.array
    for c, r in zip(an.lesions, an.lesion_radii):
        y = clean.true_moving_points(c)[0]
        ijk = clean.moving.world_to_ijk(y)[0]
        # bright (lesion) voxels within 1.3 radii of the mapped centre: their centroid is the mapped centre
        lo = np.maximum(np.floor(ijk - 2 * r / 2.5).astype(int), 0)
        near = lo + np.argwhere(np.ones(np.full(3, int(4 * r / 2.5) + 2), bool))
        near = near[np.all(near < np.asarray(arr.shape), axis=1)]
        near = near[np.linalg.norm(clean.moving.ijk_to_world(near) - y, axis=1) < 1.3 * r]
        bright = near[arr[tuple(near.T)] > -400]
        centroid = clean.moving.ijk_to_world(bright).mean(0)
        assert np.linalg.norm(centroid - y) < 1.0, f"lesion of radius {r:.1f} mm is not at its true moving position"
        assert arr[tuple(np.round(ijk).astype(int))] > -400
    # and the moving lung mask is the fixed one carried along (up to a voxel at the border)
    fixed_c = np.argwhere(pair.fixed_lungs.array)
    fixed_world = pair.fixed.ijk_to_world(fixed_c)
    moved = pair.moving.world_to_ijk(pair.true_moving_points(fixed_world)).round().astype(int)
    ok = np.all((moved >= 0) & (moved < np.asarray(pair.moving.shape)), axis=1)
    hit = pair.moving_lungs.array[tuple(moved[ok].T)].mean()
    assert hit > 0.95


def test_lungs_get_denser_where_they_shrink(pair):
    """Exhalation (default motion) shrinks the lung base: its HU rises (mass conservation)."""
    fl = pair.fixed_lungs.array.astype(bool)
    ml = pair.moving_lungs.array.astype(bool)
    assert np.median(pair.moving.array[ml]) > np.median(pair.fixed.array[fl]) + 3


def test_landmarks_are_distinctive_points_in_the_lungs(pair):
    lm = sample_landmarks(pair, n=12, seed=1, min_distance_mm=10.0)
    assert len(lm) == 12 and len(set(lm.labels)) == 12
    an = pair.anatomy
    depth = an.lung_depth(lm.points)
    assert np.all(depth > 0)
    vessel_d = an.vessel_distance(lm.points)
    lesion_d = np.min(np.linalg.norm(lm.points[:, None] - an.lesions[None], axis=2), axis=1)
    assert np.all((vessel_d < 1e-6) | (lesion_d < 1e-6))  # exactly a bifurcation or a lesion centre
    d = np.linalg.norm(lm.points[:, None] - lm.points[None], axis=2) + np.eye(len(lm)) * 1e9
    assert d.min() >= 10.0
    assert np.all(pair.fixed.contains(lm.points)) and np.all(pair.moving.contains(pair.true_moving_points(lm.points)))


def test_oblique_phantom_grid_keeps_the_same_anatomy():
    """The anatomy is defined in world mm: an oblique grid shows the same lung at the same world point."""
    a = np.deg2rad(20.0)
    d = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    m = ijk_to_ras_from_itk((5.0, 5.0, 5.0), (150.0, 150.0, -150.0), d @ np.diag([1.0, 1.0, 1.0]))
    vol, lungs, _ = make_thorax(shape=(64, 64, 64), seed=0, ijk_to_ras=m)
    axial, _, _ = make_thorax(seed=0, **SMALL)
    p = np.array([[62.0, 5.0, 15.0]])  # right lung centre
    for v in (vol, axial):
        k = np.round(v.world_to_ijk(p)[0]).astype(int)
        assert v.array[tuple(k)] < -700
    assert np.allclose(apply_affine(vol.ijk_to_ras, [0, 0, 0]), [-150.0, -150.0, -150.0])
