"""A local search evaluates only its window, and finds exactly what the masked global search finds.

The masked global search (the whole coarse lattice, masked to the search ball) is the tests' reference,
:class:`dense_reference.MaskedLatticeMatcher`; these tests hold the two to identical matches and scores on
oblique, anisotropic grids with noisy features, priors at the border, masks and forward-backward checks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dense_reference import MaskedLatticeMatcher
from MedDIFTLib.data.geometry import Grid, apply_affine, ijk_to_ras_from_itk
from MedDIFTLib.matching import similarity
from MedDIFTLib.matching.search import Matcher, MatchOptions
from parity import SCORE_ROUNDING, same_or_tied
from synthetic_pyramids import world_feature_pyramid


def _grid(shape=(52, 44, 38)):
    a = np.deg2rad(15.0)
    d = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ np.diag([-1.0, 1.0, 1.0])
    return Grid(shape, ijk_to_ras_from_itk((1.25, 1.75, 2.0), (20.0, -5.0, 3.0), d))


def _both(fixed, moving, opts, pts, **kw):
    masked = MaskedLatticeMatcher(fixed, moving, opts)
    windowed = Matcher(fixed, moving, opts)
    return masked.match(pts, **kw), windowed.match(pts, **kw), (fixed, moving, pts)


def _same(a, b, inputs):
    """Different summation order (a dot product over a crop sums in another order than over the whole
    lattice): the same voxels or a near tie (:mod:`parity`); values equal to float32 rounding."""
    same = same_or_tied(a.voxel, b.voxel, *inputs)
    np.testing.assert_allclose(a.points[same], b.points[same], atol=1e-4, rtol=0)
    np.testing.assert_allclose(a.similarity, b.similarity, atol=SCORE_ROUNDING, rtol=0)
    np.testing.assert_allclose(a.margin[same], b.margin[same], atol=SCORE_ROUNDING, rtol=0)
    close = np.isclose(a.fb_error_mm, b.fb_error_mm, atol=1e-4, rtol=0, equal_nan=True)
    # the match matched back starts from points that differ by float rounding: a near-tie may flip
    assert close.mean() >= 0.95, (a.fb_error_mm, b.fb_error_mm)


@pytest.mark.parametrize("radius,noise,stride", [(6.0, 0.5, None), (12.0, 1.0, 2), (25.0, 1.5, 3), (9.0, 0.8, 1)])
def test_windowed_local_search_equals_the_masked_global_search(radius, noise, stride):
    grid = _grid()
    fixed = world_feature_pyramid(grid, seed=2)
    moving = world_feature_pyramid(grid, seed=2, shift_mm=(3.0, -2.0, 4.0), noise=noise)
    rng = np.random.default_rng(5)
    ijk = rng.uniform(0, np.asarray(grid.shape) - 1, size=(24, 3))
    ijk[:3] = [[0, 0, 0], [51, 43, 37], [0, 43, 18]]  # windows cut by the grid's border
    pts = apply_affine(grid.ijk_to_ras, ijk)
    opts = MatchOptions(radius_mm=radius, coarse_stride=stride)
    prior = pts + rng.normal(0, radius / 3, size=pts.shape)
    _same(*_both(fixed, moving, opts, pts))  # identity prior, forward-backward on
    _same(*_both(fixed, moving, opts, pts, prior_ras=prior))
    mask = np.zeros(grid.shape, bool)
    mask[::2] = True
    mask[:, :20] = True
    _same(
        *_both(
            fixed,
            moving,
            MatchOptions(radius_mm=radius, coarse_stride=stride, forward_backward=False),
            pts,
            prior_ras=prior,
            mask=mask,
        )
    )


def test_a_window_reads_only_its_part_of_each_level(monkeypatch):
    """The dot products, the expensive per-query step, cover the window's source voxels only."""
    grid = Grid((96, 96, 96), np.diag([1.0, 1.0, 1.0, 1.0]))
    fixed = world_feature_pyramid(grid, seed=3)
    moving = world_feature_pyramid(grid, seed=3, shift_mm=(1.0, 0.0, 0.0))
    sizes = []
    real = torch.einsum

    def counting(eq, q, m):
        sizes.append(m[0].numel())
        return real(eq, q, m)

    monkeypatch.setattr(similarity.torch, "einsum", counting)
    pts = np.array([[48.0, 48.0, 48.0]])
    Matcher(fixed, moving, MatchOptions(radius_mm=5.0, forward_backward=False)).match(pts)
    windowed = sum(sizes)
    sizes.clear()
    MaskedLatticeMatcher(fixed, moving, MatchOptions(radius_mm=5.0, forward_backward=False)).match(pts)
    assert windowed * 8 < sum(sizes) == sum(lv.features[0].numel() for lv in moving.levels)
