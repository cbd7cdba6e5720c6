"""The matching tests' reference: the paper's similarity written the dense way (every level upsampled to
the whole moving grid), which the engine's strategies must reproduce without building it."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from MedDIFTLib.features.pyramid import FeaturePyramid


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
