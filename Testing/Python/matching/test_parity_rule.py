"""The parity rule of the exactness tests (:mod:`parity`): a differing answer passes only as a near tie."""

from __future__ import annotations

import numpy as np
import pytest

from dense_reference import brute_force_argmax, brute_force_similarity
from MedDIFTLib.data.geometry import Grid, apply_affine
from parity import same_or_tied
from synthetic_pyramids import world_feature_pyramid


@pytest.fixture(scope="module")
def case():
    grid = Grid((24, 20, 18), np.diag([1.5, 1.25, 2.0, 1.0]))
    fixed = world_feature_pyramid(grid, seed=1)
    moving = world_feature_pyramid(grid, seed=1, shift_mm=(2.0, 1.0, -2.0), noise=0.6)
    pts = apply_affine(grid.ijk_to_ras, np.random.default_rng(0).uniform(2, 15, size=(10, 3)))
    sim = brute_force_similarity(fixed, moving, pts).double().numpy()
    return fixed, moving, pts, sim


def test_identical_answers_pass_and_a_clear_difference_fails(case):
    fixed, moving, pts, sim = case
    best = brute_force_argmax(brute_force_similarity(fixed, moving, pts))
    assert same_or_tied(best, best.copy(), fixed, moving, pts).all()
    moved = best.copy()
    moved[0] = [0, 0, 0] if tuple(best[0]) != (0, 0, 0) else [1, 1, 1]
    with pytest.raises(AssertionError, match="not a tie"):
        same_or_tied(best, moved, fixed, moving, pts)


def test_the_runner_up_passes_only_within_the_tie_tolerance(case):
    fixed, moving, pts, sim = case
    best = brute_force_argmax(brute_force_similarity(fixed, moving, pts))
    flat = sim[0].reshape(-1)
    order = np.argsort(flat)[::-1]
    runner_up = np.array(np.unravel_index(order[1], sim.shape[1:]))
    gap = flat[order[0]] - flat[order[1]]
    other = best.copy()
    other[0] = runner_up
    same = same_or_tied(best, other, fixed, moving, pts, tol=gap + 1e-12)
    assert not same[0] and same[1:].all()
    with pytest.raises(AssertionError, match="not a tie"):
        same_or_tied(best, other, fixed, moving, pts, tol=gap / 2)


def test_many_differing_answers_are_not_rounding(case):
    fixed, moving, pts, sim = case
    best = brute_force_argmax(brute_force_similarity(fixed, moving, pts))
    with pytest.raises(AssertionError, match="answers differ"):
        same_or_tied(best, best + 1, fixed, moving, pts, tol=10.0)
