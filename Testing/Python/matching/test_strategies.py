"""The two exact strategies (native-resolution dot maps, descriptor upsampled once) find the same matches,
and the matcher picks the cheaper one by its estimated cost, within the memory budget.

Parity (different summation orders, see :mod:`parity`): same voxels or near ties, scores equal to float32 rounding, on oblique anisotropic grids with noisy levels, for
global and windowed local searches, with masks, priors at the border and forward-backward checks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dense_reference import MaskedLatticeMatcher, brute_force_similarity
from MedDIFTLib.data.geometry import Grid, apply_affine, ijk_to_ras_from_itk
from MedDIFTLib.errors import InputError, render
from MedDIFTLib.matching.search import Matcher, MatchOptions
from MedDIFTLib.matching.strategy import NATIVE, UPSAMPLED, estimate
from parity import SCORE_ROUNDING, same_or_tied
from synthetic_pyramids import MAISI_LAYOUT, world_feature_pyramid

MIND_LIKE = (("mind2", 12, 2), ("mind4", 12, 4))  # MIND-SSC's levels: 12 channels at strides 2 and 4


def _grid(shape=(46, 40, 34)):
    a = np.deg2rad(15.0)
    d = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ np.diag([-1.0, 1.0, 1.0])
    return Grid(shape, ijk_to_ras_from_itk((1.25, 1.75, 2.0), (20.0, -5.0, 3.0), d))


def _points(grid, n, seed, border=True):
    rng = np.random.default_rng(seed)
    ijk = rng.uniform(0, np.asarray(grid.shape) - 1, size=(n, 3))
    if border:
        ijk[:3] = [[0, 0, 0], np.asarray(grid.shape) - 1, [0, grid.shape[1] - 1, grid.shape[2] // 2]]
    return apply_affine(grid.ijk_to_ras, ijk)


def _forced(fixed, moving, opts, pts, **kw):
    out = {}
    for name in (NATIVE, UPSAMPLED):
        res = Matcher(fixed, moving, MatchOptions(**{**opts, "strategy": name})).match(pts, **kw)
        assert res.extra["strategy"] == name
        out[name] = res
    return out[NATIVE], out[UPSAMPLED], (fixed, moving, pts)


def _same(a, b, inputs, fb_share=0.95):
    """Different summation order (native dot maps against upsampled descriptors): the same voxels or a
    near tie (:mod:`parity`), values equal to float32 rounding."""
    same = same_or_tied(a.voxel, b.voxel, *inputs)
    np.testing.assert_allclose(a.points[same], b.points[same], atol=1e-4, rtol=0)
    np.testing.assert_allclose(a.similarity, b.similarity, atol=SCORE_ROUNDING, rtol=0)
    np.testing.assert_allclose(a.margin[same], b.margin[same], atol=SCORE_ROUNDING, rtol=0)
    close = np.isclose(a.fb_error_mm, b.fb_error_mm, atol=1e-4, rtol=0, equal_nan=True)
    assert close.mean() >= fb_share, (a.fb_error_mm, b.fb_error_mm)  # matched back from float-rounded points


@pytest.mark.parametrize(
    "layout,noise,stride",
    [(None, 0.5, None), (MIND_LIKE, 1.0, None), (MIND_LIKE, 0.7, 2), (None, 1.5, 3), (MAISI_LAYOUT, 0.8, 1)],
)
def test_both_strategies_find_the_same_global_matches(layout, noise, stride):
    grid = _grid()
    kw = {"layout": layout, "input_shape": (64, 64, 64)} if layout is MAISI_LAYOUT else {"layout": layout}
    fixed = world_feature_pyramid(grid, seed=4, **kw)
    moving = world_feature_pyramid(grid, seed=4, shift_mm=(3.0, -2.0, 4.0), noise=noise, **kw)
    pts = _points(grid, 30, seed=1)
    _same(*_forced(fixed, moving, {"coarse_stride": stride}, pts))  # forward-backward on
    mask = np.zeros(grid.shape, bool)
    mask[::2] = True
    mask[:, :15] = True
    _same(*_forced(fixed, moving, {"coarse_stride": stride, "forward_backward": False}, pts, mask=mask))


@pytest.mark.parametrize("radius,noise,stride", [(6.0, 0.5, None), (12.0, 1.0, 2), (25.0, 1.5, 3)])
def test_both_strategies_find_the_same_matches_in_windows(radius, noise, stride):
    grid = _grid()
    fixed = world_feature_pyramid(grid, seed=2, layout=MIND_LIKE)
    moving = world_feature_pyramid(grid, seed=2, layout=MIND_LIKE, shift_mm=(3.0, -2.0, 4.0), noise=noise)
    pts = _points(grid, 24, seed=5)
    prior = pts + np.random.default_rng(5).normal(0, radius / 3, size=pts.shape)
    opts = {"radius_mm": radius, "coarse_stride": stride}
    _same(*_forced(fixed, moving, opts, pts))  # identity prior, forward-backward on
    _same(*_forced(fixed, moving, opts, pts, prior_ras=prior))
    mask = np.zeros(grid.shape, bool)
    mask[:, ::2] = True
    _same(*_forced(fixed, moving, {**opts, "forward_backward": False}, pts, prior_ras=prior, mask=mask))
    # and the windowed upsampled search equals the former masked search over the whole lattice
    masked = MaskedLatticeMatcher(fixed, moving, MatchOptions(**opts, strategy=UPSAMPLED))
    _same(
        masked.match(pts, prior_ras=prior), _forced(fixed, moving, opts, pts, prior_ras=prior)[1], (fixed, moving, pts)
    )


@pytest.mark.parametrize("strategy", [NATIVE, UPSAMPLED])
def test_coarse_values_and_heatmaps_equal_the_dense_reference(strategy):
    """Each strategy's lattice values are the paper's similarity (per level cosine of the trilinearly
    upsampled level, mean over levels), to float32 rounding, on a strided and on the full lattice."""
    grid = _grid((40, 36, 30))
    fixed = world_feature_pyramid(grid, seed=1, layout=MIND_LIKE)
    moving = world_feature_pyramid(grid, seed=1, layout=MIND_LIKE, shift_mm=(2.0, 1.0, -3.0), noise=0.4)
    pts = _points(grid, 4, seed=0, border=False)
    ref = brute_force_similarity(fixed, moving, pts)
    for stride in (3, 1):
        m = Matcher(fixed, moving, MatchOptions(coarse_stride=stride, strategy=strategy))
        qs = m.target.query_descriptors(fixed, pts)
        lat = m.lattice.axes
        got = m.lattice.scores(qs, m.target.dot_maps(qs), strategy)
        torch.testing.assert_close(got, ref[:, lat[0]][:, :, lat[1]][:, :, :, lat[2]], atol=2e-5, rtol=0)
        np.testing.assert_allclose(m.heatmap(pts[0]).array, ref[0].numpy(), atol=2e-5)


def test_the_cost_model_favours_upsampled_for_few_channels_and_native_for_many():
    """On the shapes of the benchmark's phantom (250x236x141 at 2 mm, MIND-SSC) the descriptor upsampled once
    costs less per query and about as much to set up; with MAISI's 960 channels (a 192x192x208
    volume, stride 2) a query would stream 960 floats per lattice point, far more than upsampling one map
    per level, and the descriptor would be 3.7 GB."""
    mind = estimate([12, 12], [(125, 118, 71), (63, 59, 36)], (250, 236, 141))
    assert mind.upsampled_query < 0.6 * mind.native_query and mind.upsampled_bytes == 4 * 24 * 250 * 236 * 141
    for n in (1, 56, 300):
        assert mind.total(UPSAMPLED, n, ready=False) < mind.total(NATIVE, n, ready=False)
    maisi = estimate([512, 256, 128, 64], [(16, 16, 16), (32, 32, 32), (64, 64, 64), (64, 64, 64)], (96, 96, 104))
    assert maisi.upsampled_query > 10 * maisi.native_query and maisi.upsampled_bytes > 3.5e9
    for n in (1, 300):
        assert maisi.total(NATIVE, n, ready=False) < maisi.total(UPSAMPLED, n, ready=False)
    # a local search's window: per query both cost only the window, the setups decide
    win = estimate([12, 12], [(125, 118, 71), (63, 59, 36)], (250, 236, 141), query_shape=(35, 35, 35))
    assert win.native_query < mind.native_query / 100 and win.upsampled_query < mind.upsampled_query / 50


def test_the_matcher_chooses_by_cost_within_the_budget():
    grid = Grid((64, 60, 56), np.diag([1.5, 1.5, 2.0, 1.0]))
    pts = _points(grid, 3, seed=2, border=False)
    few = world_feature_pyramid(grid, seed=3, layout=(("a", 2, 4),))  # 2 channels: streaming them is cheap
    many = world_feature_pyramid(grid, seed=3, layout=(("a", 256, 4), ("b", 128, 8)))
    m = Matcher(few, few, MatchOptions(coarse_stride=1))
    assert m.lattice.choose(50) == UPSAMPLED and m.match(pts).extra == {"strategy": UPSAMPLED, "fb_strategy": UPSAMPLED}
    assert Matcher(many, many, MatchOptions(coarse_stride=1)).match(pts).extra["strategy"] == NATIVE
    # the same few channels when the descriptor (2 x 64 x 60 x 56 floats, 1.6 MB) is over the budget
    tight = Matcher(few, few, MatchOptions(coarse_stride=1, upsampled_budget_mb=1.0))
    assert tight.match(pts).extra["strategy"] == NATIVE
    with pytest.raises(InputError) as err:  # forced beyond the budget: refused in words, nothing computed
        Matcher(few, few, MatchOptions(coarse_stride=1, upsampled_budget_mb=1.0, strategy=UPSAMPLED)).match(pts)
    assert render(err.value, "cli") == (
        "the upsampled matching strategy needs 2 MB for this moving scan, more than "
        "its budget of 1 MB: raise --upsampled-budget or use --match-strategy auto"
    )


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"strategy": "dense"}, "unknown matching strategy 'dense': choose one of auto, native, upsampled"),
        ({"upsampled_budget_mb": 0}, "the upsampled strategy's budget must be a positive number of MB"),
    ],
)
def test_bad_strategy_options_are_refused(kw, message):
    with pytest.raises(InputError, match=message):
        MatchOptions(**kw)


def test_the_candidate_pool_equals_a_full_selection():
    """The pool of highest coarse values is read from the blocks with the highest maxima: the same values and
    indices as a selection over the whole map, with masked (-inf) parts and fewer finite values than the pool."""
    from MedDIFTLib.matching.strategy import top_pool

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2_000_003, generator=gen)
    x[1, ::3] = -float("inf")
    x[2] = -float("inf")
    x[2, 5000:5100] = torch.randn(100, generator=gen)
    ref = x.topk(256, dim=1)
    vals, idx = top_pool(x, 256)
    torch.testing.assert_close(vals, ref.values, rtol=0, atol=0)
    finite = torch.isfinite(ref.values)
    assert torch.equal(idx[finite], ref.indices[finite]) and int(finite[2].sum()) == 100
