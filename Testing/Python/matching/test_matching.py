"""Matching engine: parity with a brute-force reference, known answers, priors, confidence, heatmaps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dense_reference import brute_force_argmax, brute_force_similarity
from MedDIFTLib.data.geometry import Grid, Volume, apply_affine, ijk_to_ras_from_itk
from MedDIFTLib.errors import InputError
from MedDIFTLib.features.pyramid import FeaturePyramid
from MedDIFTLib.matching.search import Matcher, MatchOptions
from MedDIFTLib.matching.similarity import (
    SimilarityTarget,
    full_lattice,
    strided_lattice,
)
from parity import same_or_tied
from synthetic_pyramids import world_feature_pyramid


def _oblique_grid(shape=(48, 40, 36)):
    a = np.deg2rad(15.0)
    d = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ np.diag([-1.0, 1.0, 1.0])
    return Grid(shape, ijk_to_ras_from_itk((1.25, 1.75, 2.0), (20.0, -5.0, 3.0), d))


def _interior_points(grid, n, seed, margin=4):
    rng = np.random.default_rng(seed)
    ijk = rng.uniform(margin, np.asarray(grid.shape) - 1 - margin, size=(n, 3))
    return apply_affine(grid.ijk_to_ras, ijk)


def test_similarity_on_lattices_equals_dense_reference():
    grid = _oblique_grid()
    fixed = world_feature_pyramid(grid, seed=1)
    moving = world_feature_pyramid(grid, seed=1, shift_mm=(3.0, -2.0, 4.0), noise=0.3)
    pts = _interior_points(grid, 5, seed=0)
    target = SimilarityTarget(moving)
    dots = target.dot_maps(target.query_descriptors(fixed, pts))
    ref = brute_force_similarity(fixed, moving, pts)
    torch.testing.assert_close(target.similarity(dots, full_lattice(grid.shape)), ref, atol=2e-5, rtol=0)
    lat = strided_lattice(grid.shape, 3, lo=[2, 5, 1], hi=[40, 30, 36])
    torch.testing.assert_close(
        target.similarity(dots, lat), ref[:, lat[0]][:, :, lat[1]][:, :, :, lat[2]], atol=2e-5, rtol=0
    )


@pytest.mark.parametrize("seed,noise,stride", [(0, 0.3, 2), (1, 0.7, 2), (2, 1.0, 2), (3, 1.5, 1)])
def test_argmax_parity_with_brute_force(seed, noise, stride):
    """>= 99% identical argmax, the rest within one voxel (strided lattice: an approximation).

    Noise on the moving levels makes the similarity landscape rough; at the
    roughest, the exact mode (coarse_stride=1) is used: the same voxel everywhere, or a near tie (see parity).
    """
    grid = _oblique_grid()
    fixed = world_feature_pyramid(grid, seed=seed)
    moving = world_feature_pyramid(grid, seed=seed, shift_mm=(4.0, 3.0, -6.0), noise=noise)
    pts = _interior_points(grid, 120, seed=seed + 10)
    res = Matcher(fixed, moving, MatchOptions(forward_backward=False, coarse_stride=stride)).match(pts)
    ref = brute_force_argmax(brute_force_similarity(fixed, moving, pts))
    if stride == 1:  # the exact mode: the same voxel or a near tie (different summation order, see parity)
        same_or_tied(res.voxel, ref, fixed, moving, pts)
        return
    # two summation orders (the matcher's lattice against brute force): a near tie may flip on another CPU
    # ("different summation order", Testing/Python/parity.py), so: the same voxel nearly everywhere, never more than one off
    same = np.all(res.voxel == ref, axis=1)
    assert same.mean() >= 0.99, f"parity {same.mean():.3f}"
    assert np.abs(res.voxel - ref).max() <= 1


def test_known_translation_is_recovered_exactly():
    """A shift by whole coarsest-level voxels (16 target voxels) moves every level exactly."""
    grid = Grid((64, 64, 64), np.diag([1.5, 1.5, 1.5, 1.0]))
    shift = np.array([24.0, -24.0, 24.0])  # 16 voxels: one up0 voxel, 2 up1, 4 up2/up3 voxels
    fixed = world_feature_pyramid(grid, seed=4)
    moving = world_feature_pyramid(grid, seed=4, shift_mm=shift)
    ijk = np.array([[20, 40, 22], [27, 45, 25], [24, 36, 28]])
    pts = apply_affine(grid.ijk_to_ras, ijk)
    res = Matcher(fixed, moving, MatchOptions(subvoxel=False)).match(pts)
    # exact: a shift by whole voxels of every level gives a peak of 1 with no rival near it (no tie to break)
    np.testing.assert_array_equal(res.voxel, ijk + [16, -16, 16])
    np.testing.assert_allclose(res.points, pts + shift, atol=1e-9)
    assert np.all(res.similarity > 0.99)
    np.testing.assert_allclose(res.fb_error_mm, 0.0, atol=1e-9)


def test_subvoxel_refinement_reduces_error_for_off_grid_shifts():
    grid = Grid((40, 40, 40), np.diag([2.0, 2.0, 2.0, 1.0]))
    shift = np.array([0.8, -0.6, 0.5])  # sub-voxel
    fixed = world_feature_pyramid(grid, seed=5)
    moving = world_feature_pyramid(grid, seed=5, shift_mm=shift)
    pts = apply_affine(grid.ijk_to_ras, np.array([[14, 20, 18], [22, 16, 25], [18, 24, 14], [25, 25, 25]]))
    coarse = Matcher(fixed, moving, MatchOptions(subvoxel=False, forward_backward=False)).match(pts)
    fine = Matcher(fixed, moving, MatchOptions(subvoxel=True, forward_backward=False)).match(pts)
    err_int = np.linalg.norm(coarse.points - (pts + shift), axis=1)
    err_sub = np.linalg.norm(fine.points - (pts + shift), axis=1)
    assert err_sub.mean() < 0.7 * err_int.mean()
    assert np.all(err_sub < 1.0)  # half a voxel diagonal is 1.73 mm


def _two_copies(grid_shape=(64, 32, 32)):
    """A moving pyramid holding the fixed pattern twice, 48 mm apart along x; the second copy is noisier."""
    grid = Grid(grid_shape, np.diag([1.5, 1.5, 1.5, 1.0]))
    fixed = world_feature_pyramid(grid, seed=7, wavelength_mm=(6.0, 14.0))
    a = world_feature_pyramid(grid, seed=7, wavelength_mm=(6.0, 14.0))
    b = world_feature_pyramid(grid, seed=7, wavelength_mm=(6.0, 14.0), shift_mm=(48.0, 0, 0), noise=0.3)
    levels = []
    for la, lb in zip(a.levels, b.levels):
        x = apply_affine(la.ijk_to_ras, np.indices(la.shape).reshape(3, -1).T)[:, 0].reshape(la.shape)
        use_b = torch.from_numpy(x >= 40.0)
        levels.append(type(la)(la.name, torch.where(use_b[None], lb.features, la.features), la.ijk_to_ras))
    return grid, fixed, FeaturePyramid(levels, grid, {})


def test_local_search_picks_the_candidate_near_the_prior():
    grid, fixed, moving = _two_copies()
    p = apply_affine(grid.ijk_to_ras, [[10, 16, 16]])  # x = 15 mm; its copy is at x = 63 mm
    glob = Matcher(fixed, moving, MatchOptions(forward_backward=False)).match(p)
    np.testing.assert_allclose(glob.points[0], p[0], atol=1.0)
    local = Matcher(fixed, moving, MatchOptions(radius_mm=10.0, forward_backward=False)).match(
        p, prior_ras=p + [46.0, 0, 0]
    )
    np.testing.assert_allclose(local.points[0], p[0] + [48.0, 0, 0], atol=1.5)
    assert np.linalg.norm(local.points[0] - (p[0] + [46.0, 0, 0])) <= 10.0


def test_identity_prior_is_used_when_only_a_radius_is_given():
    grid, fixed, moving = _two_copies()
    p = apply_affine(grid.ijk_to_ras, [[42, 16, 16]])  # in the noisy copy, x = 63 mm
    res = Matcher(fixed, moving, MatchOptions(radius_mm=8.0, forward_backward=False)).match(p)
    # the integer peak lies in the ball; the sub-voxel fit may add up to half a voxel per axis
    assert np.linalg.norm(apply_affine(grid.ijk_to_ras, res.voxel)[0] - p[0]) <= 8.0
    assert np.linalg.norm(res.points[0] - p[0]) <= 8.0 + 0.75 * np.sqrt(3)


def test_mask_excludes_candidates():
    grid, fixed, moving = _two_copies()
    p = apply_affine(grid.ijk_to_ras, [[10, 16, 16]])
    mask = np.zeros(grid.shape, bool)
    mask[30:] = True  # only the second copy allowed
    res = Matcher(fixed, moving, MatchOptions(forward_backward=False)).match(p, mask=mask)
    assert res.voxel[0, 0] >= 30
    np.testing.assert_allclose(res.points[0], p[0] + [48.0, 0, 0], atol=1.5)


def test_margin_is_small_when_the_match_is_ambiguous():
    grid, fixed, moving = _two_copies()
    p = apply_affine(grid.ijk_to_ras, [[10, 16, 16]])
    ambiguous = Matcher(fixed, moving).match(p)
    unique_moving = world_feature_pyramid(grid, seed=7, wavelength_mm=(6.0, 14.0))
    unique = Matcher(fixed, unique_moving).match(p)
    assert unique.margin[0] > 2 * ambiguous.margin[0]
    assert unique.confidence[0] > ambiguous.confidence[0]
    assert unique.fb_error_mm[0] < 1.0


def test_heatmap_equals_dense_similarity_and_peaks_at_the_match():
    grid = _oblique_grid()
    fixed = world_feature_pyramid(grid, seed=3)
    moving = world_feature_pyramid(grid, seed=3, shift_mm=(2.5, 1.75, -4.0), noise=0.2)
    p = _interior_points(grid, 1, seed=3)
    m = Matcher(fixed, moving, MatchOptions(subvoxel=False, forward_backward=False))
    hm = m.heatmap(p)
    ref = brute_force_similarity(fixed, moving, p)[0].numpy()
    assert hm.shape == grid.shape
    np.testing.assert_allclose(hm.ijk_to_ras, grid.ijk_to_ras)
    np.testing.assert_allclose(hm.array, ref, atol=2e-5)
    res = m.match(p)
    assert tuple(res.voxel[0]) == np.unravel_index(np.argmax(hm.array), grid.shape)


def test_mask_from_volume_resamples_onto_the_moving_grid():
    grid = Grid((20, 20, 20), np.diag([2.0, 2.0, 2.0, 1.0]))
    pyr = world_feature_pyramid(grid, seed=0, layout=(("a", 4, 4),))
    m = Matcher(pyr, pyr)
    label = np.zeros((40, 40, 40), np.uint8)
    label[:20] = 1  # x < 19.5 mm in a 1 mm grid
    mask = m.mask_from_volume(Volume(label, np.eye(4)))
    assert mask[:10].all() and not mask[10:].any()


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda m, p: m.match(np.zeros((0, 3))), "landmark list is empty"),
        (lambda m, p: m.match(p, mask=np.zeros((20, 20, 20), bool)), "candidate mask is empty"),
        (lambda m, p: m.match(p, mask=np.ones((5, 5, 5), bool)), "candidate mask has shape"),
        (lambda m, p: m.match(p, prior_ras=np.zeros((2, 3))), "2 prior positions given for 1 points"),
    ],
)
def test_bad_matching_input_is_refused(call, message):
    grid = Grid((20, 20, 20), np.diag([2.0, 2.0, 2.0, 1.0]))
    pyr = world_feature_pyramid(grid, seed=0, layout=(("a", 4, 4),))
    with pytest.raises(InputError, match=message):
        call(Matcher(pyr, pyr), np.array([[10.0, 10.0, 10.0]]))


def test_no_candidate_within_radius_is_reported():
    grid = Grid((20, 20, 20), np.diag([2.0, 2.0, 2.0, 1.0]))
    pyr = world_feature_pyramid(grid, seed=0, layout=(("a", 4, 4),))
    m = Matcher(pyr, pyr, MatchOptions(radius_mm=5.0))
    with pytest.raises(InputError, match="no candidate voxel in the moving volume within the search radius"):
        m.match([[10.0, 10.0, 10.0]], prior_ras=[[500.0, 0.0, 0.0]])


def test_levels_must_exist_in_both_pyramids():
    grid = Grid((20, 20, 20), np.diag([2.0, 2.0, 2.0, 1.0]))
    a = world_feature_pyramid(grid, seed=0, layout=(("a", 4, 4),))
    b = world_feature_pyramid(grid, seed=0, layout=(("b", 4, 4),))
    with pytest.raises(InputError, match="are not in both pyramids"):
        Matcher(a, b)


@pytest.mark.parametrize("backbone", ["mind-ssc", "tiny-maisi"])
def test_argmax_parity_on_real_feature_pyramids(backbone, tmp_path):
    """Pyramids made by the real backbones from a phantom pair (tiny MAISI checkpoints in the
    released format, random weights): engine argmax == brute force for >= 99%, rest within a voxel."""
    from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
    from MedDIFTLib.features.maisi.backbone import MaisiBackbone
    from MedDIFTLib.features.mind_ssc import MindSSCBackbone
    from tiny_maisi import TINY_CONFIG, write_tiny_checkpoints

    pair = make_pair(shape=(48, 48, 48), spacing=(6.5, 6.5, 6.5), seed=2)
    if backbone == "mind-ssc":
        bb = MindSSCBackbone()
    else:
        write_tiny_checkpoints(tmp_path, seed=2)
        bb = MaisiBackbone(weights_dir=tmp_path, device="cpu", config=TINY_CONFIG)
    fixed, moving = bb.extract(pair.fixed), bb.extract(pair.moving)
    rng = np.random.default_rng(0)
    pts = np.concatenate(
        [
            sample_landmarks(pair, n=10, seed=2, margin_mm=6.5).points,
            pair.fixed.ijk_to_world(rng.uniform(3, 44, size=(90, 3))),
        ]
    )
    res = Matcher(fixed, moving, MatchOptions(forward_backward=False)).match(pts)
    ref = brute_force_argmax(brute_force_similarity(fixed, moving, pts))
    same = np.all(res.voxel == ref, axis=1)
    assert same.mean() >= 0.99, f"parity {same.mean():.3f}"
    assert np.abs(res.voxel - ref).max() <= 1
