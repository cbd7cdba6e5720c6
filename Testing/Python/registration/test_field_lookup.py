"""Scoring the dense field's positions by a lookup in a small window: the same similarity values as
the exact whole-scan map, the argmax of the ball around each position, and the field's own position
as the answer unless asked otherwise (weight-free MIND-SSC on a small phantom pair)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from MedDIFTLib.data.geometry import apply_affine
from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
from MedDIFTLib.features import create_backbone
from MedDIFTLib.matching.similarity import SimilarityTarget, full_lattice
from MedDIFTLib.registration.field_lookup import FieldScorer, WindowArgmax

# float32 sums in another order (the window's separable passes against the whole-scan map):
# the values agree to a few units of float32 rounding on similarities of order 1
TOL = 1e-5


@pytest.fixture(scope="module")
def pyramids():
    pair = make_pair(shape=(40, 40, 40), spacing=(5.0, 5.0, 5.0), seed=5)
    bb = create_backbone("mind-ssc", levels=("mind1", "mind2", "mind4"))
    return pair, bb.extract(pair.fixed), bb.extract(pair.moving), sample_landmarks(pair, n=5, seed=5)


def _full_map(fixed, moving, point):
    target = SimilarityTarget(moving, ["mind2", "mind4"])
    qs = target.query_descriptors(fixed, point[None])
    return target.similarity(target.dot_maps(qs), full_lattice(target.shape))[0]


def test_the_window_holds_the_exact_similarity_of_the_whole_scan_map(pyramids):
    pair, fixed, moving, lm = pyramids
    look = WindowArgmax(fixed, moving, ["mind2", "mind4"])
    for p in lm.points:
        centre = p + np.array([3.0, -4.0, 2.0])
        box, lo = look.box_similarity(p, centre, 6.0)
        full = _full_map(fixed, moving, p)
        sl = tuple(slice(a, a + n) for a, n in zip(lo, box.shape))
        assert min(box.shape) >= 3
        torch.testing.assert_close(box, full[sl], atol=TOL, rtol=0)


def test_the_argmax_is_the_best_voxel_of_the_ball(pyramids):
    pair, fixed, moving, lm = pyramids
    look = WindowArgmax(fixed, moving, ["mind2", "mind4"])
    grid = look.grid
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), -1).reshape(-1, 3)
    ras = apply_affine(np.asarray(grid.ijk_to_ras), ijk)
    for p in lm.points:
        centre = p + np.array([-2.0, 5.0, 1.0])
        best, vox, peak, margin = look.argmax(p, centre, 8.0)
        full = _full_map(fixed, moving, p).reshape(-1).numpy()
        ball = np.linalg.norm(ras - centre, axis=1) <= 8.0
        expected = ijk[ball][np.argmax(full[ball])]
        top = np.sort(full[ball])[-2:]
        if top[1] - top[0] > TOL:  # a near tie may go either way between two summation orders
            np.testing.assert_array_equal(vox, expected)
        assert abs(peak - full[ball].max()) < TOL
        half_voxel = np.abs(best - apply_affine(np.asarray(grid.ijk_to_ras), vox[None])[0])  # the sub-voxel fit
        assert np.all(half_voxel <= 2.5 + 1e-9)
        assert margin >= 0.0


def test_the_field_position_is_the_answer_unless_the_window_argmax_is_asked_for(pyramids):
    pair, fixed, moving, lm = pyramids
    scorer = FieldScorer(fixed, moving, ["mind2", "mind4"])
    field_pts = pair.true_moving_points(lm.points) + np.array([2.0, 0.0, -1.0])
    res = scorer.score(lm.points, field_pts, 6.0)
    np.testing.assert_array_equal(res.points, field_pts)
    moved = scorer.score(lm.points, field_pts, 6.0, move=True)
    np.testing.assert_allclose(np.linalg.norm(moved.points - field_pts, axis=1), res.argmax_gap_mm, atol=1e-9)
    assert np.all(res.argmax_gap_mm <= 6.0 + 0.5 * 5.0 * np.sqrt(3))  # the ball, plus the sub-voxel fit
    assert np.all(np.isfinite(res.fb_error_mm)) and np.all(res.fb_error_mm <= 6.0 + 0.5 * 5.0 * np.sqrt(3))
    conf = res.confidence
    assert np.all((conf >= 0) & (conf <= 1))
    unchecked = scorer.score(lm.points, field_pts, 6.0, forward_backward=False)
    assert np.all(np.isnan(unchecked.fb_error_mm))
    np.testing.assert_array_equal(unchecked.similarity, res.similarity)
