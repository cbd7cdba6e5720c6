"""Warped real CT (evaluation/warped.py): the moving scan, the motion and the landmarks agree exactly
with the ground truth they claim. A phantom scan stands in for the real CT so these run anywhere;
one test builds a case from a ../shared CT when it is there."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from conftest import shared_file
from MedDIFTLib.data.image_io import write_volume
from MedDIFTLib.errors import InputError
from MedDIFTLib.evaluation.cases import warped_ct_cases
from MedDIFTLib.evaluation.phantom import make_pair
from MedDIFTLib.evaluation.warped import CONTRAST_HU, SOFT_TISSUE_HU, body_mask, make_warped_case, make_waves


@pytest.fixture(scope="module")
def scan():
    """A CT-like scan (HU, RAS, 5 mm voxels, 200 mm box) without noise, smoothed over 2 voxels as a real
    CT's reconstruction kernel smooths it: the phantom's step edges would otherwise leave the
    double interpolation below (warp, then read back) as the largest error in the test."""
    pair = make_pair(shape=(40, 40, 40), spacing=(5.0, 5.0, 5.0), seed=0, noise_hu=0.0)
    return pair.fixed.with_array(ndimage.gaussian_filter(pair.fixed.array, 2.0))


def _at(volume, ras):
    """Trilinear value at RAS points (independent of warped.py's sampler)."""
    return ndimage.map_coordinates(volume.array.astype(np.float64), volume.world_to_ijk(ras).T, order=1)


@pytest.mark.parametrize("rigid", [{}, {"rotation_deg": 8.0, "shift_mm": 20.0}])
def test_moving_scan_at_the_truth_shows_what_the_fixed_scan_shows_at_the_landmark(scan, rigid):
    case = make_warped_case(scan, amplitude_mm=10.0, noise_hu=0.0, gain=1.1, offset_hu=-40.0, **rigid)
    lm, truth = case.fixed_points.points, case.moving_points.points
    ijk = np.rint(scan.world_to_ijk(lm)).astype(int)
    np.testing.assert_allclose(scan.world_to_ijk(lm), ijk, atol=1e-9)  # landmarks sit on voxel centres
    expected = 1.1 * scan.array[tuple(ijk.T)] - 40.0
    err_truth = np.abs(_at(case.moving, truth) - expected)
    err_identity = np.abs(_at(case.moving, lm) - expected)
    err_backwards = np.abs(_at(case.moving, case.motion.moving_to_fixed(lm)) - expected)  # truth applied backwards
    # only interpolation separates them (twice trilinear, 5 mm voxels, at the most structured points);
    # measured: 13 HU for the truth, 27 for the identity and 57 backwards (smooth), 12, 278, 323 (repositioned)
    assert np.median(err_truth) < 20.0
    assert np.median(err_truth) < 0.6 * np.median(err_identity)
    assert np.median(err_truth) < 0.35 * np.median(err_backwards)
    np.testing.assert_array_less(1.0, np.linalg.norm(truth - lm, axis=1).mean())  # it did move


@pytest.mark.parametrize("rigid", [{}, {"rotation_deg": 8.0, "shift_mm": 20.0}])
def test_the_inverse_undoes_the_forward_map_and_the_jacobian_stays_positive(scan, rigid):
    case = make_warped_case(scan, amplitude_mm=8.0, **rigid)
    lo, hi = scan.grid.bounds_ras()
    p = np.random.default_rng(1).uniform(lo - 20, hi + 20, size=(2000, 3))
    back = case.motion.moving_to_fixed(case.motion.fixed_to_moving(p))
    assert np.max(np.abs(back - p)) < 1e-6
    assert np.min(case.motion.jacobian_det(p)) > 0.1
    assert np.max(np.linalg.norm(case.motion.fixed_to_moving(p) - p, axis=1)) > 1.0


def test_amplitude_is_the_peak_displacement_over_the_scan(scan):
    waves = make_waves(scan, amplitude_mm=8.0, seed=5)
    ijk = np.stack(np.meshgrid(*[np.arange(0, n, 2) for n in scan.shape], indexing="ij"), -1).reshape(-1, 3)
    peak = np.linalg.norm(waves.displacement(scan.ijk_to_world(ijk)), axis=1).max()
    assert 7.0 < peak <= 8.0 + 1e-9
    assert waves.du_bound < 0.5


def test_landmarks_are_inside_in_the_body_and_apart(scan):
    case = make_warped_case(
        scan, amplitude_mm=8.0, rotation_deg=8.0, shift_mm=20.0, n_landmarks=25, min_distance_mm=18.0, margin_mm=10.0
    )
    lm, truth = case.fixed_points.points, case.moving_points.points
    assert 5 <= len(lm) <= 25
    d = np.linalg.norm(lm[:, None] - lm[None], axis=2) + np.eye(len(lm)) * 1e9
    assert d.min() >= 18.0
    for vol, pts, margin in ((scan, lm, 18.0), (case.moving, truth, 10.0)):
        ijk = vol.world_to_ijk(pts)
        assert np.all(ijk >= margin / 5.0 - 1e-9) and np.all(ijk <= 39 - margin / 5.0 + 1e-9)
    body = body_mask(scan)
    assert body[tuple(np.rint(scan.world_to_ijk(lm)).astype(int).T)].all()


def test_a_motion_that_could_fold_is_refused(scan):
    with pytest.raises(
        InputError,
        match=r"40 mm deformation with 60 mm wavelength has \|Du\| up to .* may not "
        r"be invertible; lower the amplitude",
    ):
        make_waves(scan, amplitude_mm=40.0, wavelength_mm=60.0)


def test_a_seed_reproduces_the_case_exactly_and_another_seed_does_not(scan):
    a, b, c = (make_warped_case(scan, rotation_deg=8.0, shift_mm=20.0, noise_hu=15.0, seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a.moving.array, b.moving.array)
    np.testing.assert_array_equal(a.fixed_points.points, b.fixed_points.points)
    np.testing.assert_array_equal(a.moving_points.points, b.moving_points.points)
    assert not np.array_equal(a.moving.array, c.moving.array)
    assert not np.allclose(a.moving_points.points[:5], c.moving_points.points[:5])


def test_warped_ct_cases_reads_files_and_gives_one_dataset_per_variant(scan, tmp_path):
    path = write_volume(scan, tmp_path / "scan.nii.gz")
    cases = list(warped_ct_cases([path], n_landmarks=10))
    assert [c.dataset for c in cases] == ["warped-ct-smooth", "warped-ct-repositioned"]
    assert all(c.name == "scan" and len(c.fixed_points) == len(c.moving_points) > 0 for c in cases)
    shift = np.linalg.norm(cases[1].moving_points.points - cases[1].fixed_points.points, axis=1).mean()
    assert shift > 2 * np.linalg.norm(cases[0].moving_points.points - cases[0].fixed_points.points, axis=1).mean()
    with pytest.raises(InputError, match="unknown warped-CT variant"):
        list(warped_ct_cases([path], variants=["twisted"]))


def test_a_real_ct_from_shared_builds_a_case():
    path = shared_file("ct/elastix-lung/3DCT_lung_baseline_small.mha")
    case = next(iter(warped_ct_cases([path], variants=["repositioned"], n_landmarks=20)))
    assert case.fixed.shape == case.moving.shape and len(case.fixed_points) >= 10
    assert np.isfinite(case.moving.array).all()


def test_the_contrast_variant_brightens_soft_tissue_only_and_keeps_the_motion_and_landmarks(scan, tmp_path):
    plain = make_warped_case(scan, noise_hu=0.0, n_landmarks=10)
    bright = make_warped_case(scan, noise_hu=0.0, n_landmarks=10, soft_tissue_offset_hu=CONTRAST_HU)
    before, after = plain.moving.array.astype(np.float64), bright.moving.array.astype(np.float64)
    lo, hi = SOFT_TISSUE_HU
    soft = (before > lo) & (before < hi)
    assert soft.any() and (~soft).any()  # the phantom has soft tissue, lungs, air and bone
    # the same warped voxels; float32 storage of values up to ~1000 HU rounds to ~1e-4 HU
    np.testing.assert_allclose(after[soft] - before[soft], CONTRAST_HU, atol=1e-3)
    np.testing.assert_array_equal(after[~soft], before[~soft])
    np.testing.assert_array_equal(bright.moving_points.points, plain.moving_points.points)
    path = write_volume(scan, tmp_path / "scan.nii.gz")
    (case,) = warped_ct_cases([path], variants=["contrast"], n_landmarks=10)
    assert case.dataset == "warped-ct-contrast"
    assert case.moving.metadata["warp"]["soft_tissue_offset_hu"] == CONTRAST_HU
    assert case.moving.metadata["warp"]["rotation_deg"] == 0.0
