"""The matching tests' references: the paper's similarity written the dense way (every level upsampled to
the whole moving grid), which the engine's strategies must reproduce without building it; and a local
search written the simple way (the whole coarse lattice scored, then masked to the search ball), which the
engine's windowed local search must reproduce while scoring only each query's window."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from MedDIFTLib.features.pyramid import FeaturePyramid
from MedDIFTLib.matching.search import Matcher


def brute_force_similarity(fixed: FeaturePyramid, moving: FeaturePyramid, points) -> torch.Tensor:
    """The reference semantics, written the dense way: upsample every level to the
    moving grid, L2-normalise per voxel, cosine with the normalised query, mean over levels."""
    shape = tuple(moving.grid.shape)
    total = 0
    for lv in moving.levels:
        up = F.interpolate(lv.features.float()[None], size=shape, mode="trilinear", align_corners=False)[0]
        up = up / up.norm(dim=0, keepdim=True).clamp_min(1e-12)
        q = fixed.level(lv.name).sample(points)
        q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
        total = total + torch.einsum("bc,cxyz->bxyz", q, up)
    return total / len(moving.levels)


def brute_force_argmax(sim: torch.Tensor) -> np.ndarray:
    flat = sim.reshape(sim.shape[0], -1).argmax(1).numpy()
    return np.stack(np.unravel_index(flat, tuple(sim.shape[1:])), 1)


class MaskedLatticeMatcher(Matcher):
    """A matcher whose local search scores the whole coarse lattice and masks it to the search ball.

    The engine scores only the window around each prior; this reference takes the long way, with the
    same exact strategies, masks, refinement and forward-backward check, so the two must agree (the
    window's dot products sum in another order: compare with :func:`parity.same_or_tied`).
    """

    def _choose_strategy(self, search) -> str:
        return self.lattice.choose(len(search.pts))

    def _batch_size(self, search) -> int:
        return self._lattice_batch()

    def _coarse_scores(self, qs, search, sl):
        dots = self.target.dot_maps(qs)
        return dots, self.lattice.scores(qs, dots, search.strategy), self.lattice.axes
