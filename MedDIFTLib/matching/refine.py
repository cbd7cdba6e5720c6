"""Full-resolution refinement of coarse candidates: hill-climbing on the moving grid, then a sub-voxel fit.

The coarse lattice (:mod:`.strategy`) finds where the peaks are; here each candidate climbs to the best voxel
of its neighbourhood on the full grid, the best climb per query climbs again with a wider window (it steps over
tiny bumps), and a parabola per axis through the peak gives the sub-voxel offset. Every value is the exact
similarity of :mod:`.similarity` at that voxel; ``allowed`` keeps the climbs inside the mask and search ball.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .similarity import SimilarityTarget
from .strategy import NEG

Allowed = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``allowed(ijk (M, 3), query rows (M,)) -> (M,) bool``: whether each voxel may be that query's match."""

MAX_CLIMB_STEPS = 64  # a climb moves at least one voxel per step, so this bounds it by the window's reach

_STEPS = torch.tensor([(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (-1, 0, 0), (0, -1, 0), (0, 0, -1)])


def refine(target: SimilarityTarget, dots, cand: torch.Tensor, lat, radius: int, allowed: Allowed):
    """Hill-climb every coarse candidate at full resolution, keep the best per query, then climb that one
    again with a window twice as wide.

    Args:
        target: the moving side's similarity.
        dots: the queries' dot maps (:meth:`SimilarityTarget.dot_maps`, or a window's pasted crops).
        cand: (B, K) flat indices into the lattice ``lat``; negative: no candidate.
        lat: the lattice axes (target voxel indices per axis) the candidates index.
        radius: the climbing window's half-size, voxels.
        allowed: which voxels each query may end on.

    Returns:
        (B, 3) voxel and (B,) similarity of each query's best climb.
    """
    b, k = cand.shape
    dev = target.device
    # flat coarse index -> target voxel, without materialising the whole lattice
    ny, nz = len(lat[1]), len(lat[2])
    c = cand.clamp_min(0)
    axes = [torch.from_numpy(np.asarray(a)).to(dev) for a in lat]
    start = torch.stack([axes[0][c // (ny * nz)], axes[1][(c // nz) % ny], axes[2][c % nz]], -1)
    centers, best_s = climb(target, dots, start, cand >= 0, radius, allowed)
    pick = best_s.argmax(dim=1)
    rows = torch.arange(b, device=dev)
    centers, best_s = climb(
        target, dots, centers[rows, pick][:, None], torch.ones(b, 1, dtype=torch.bool, device=dev), 2 * radius, allowed
    )
    return centers[:, 0], best_s[:, 0]


def climb(target: SimilarityTarget, dots, centers: torch.Tensor, alive: torch.Tensor, radius: int, allowed: Allowed):
    """Move each (query, candidate) centre to the best allowed voxel of its window until none moves.

    Args:
        target: the moving side's similarity.
        dots: the queries' dot maps.
        centers: (B, K, 3) starting voxels.
        alive: (B, K) which starts are real candidates.
        radius: the window's half-size, voxels.
        allowed: which voxels each query may end on.
    """
    b, k = centers.shape[:2]
    dev = target.device
    shape = torch.tensor(target.grid.shape, device=dev)
    rows = torch.arange(b, device=dev)[:, None].expand(b, k)
    step = torch.arange(-radius, radius + 1, device=dev)
    win = torch.stack(torch.meshgrid(step, step, step, indexing="ij"), -1).reshape(-1, 3)
    best_s = torch.full((b, k), NEG, device=dev)
    for _ in range(MAX_CLIMB_STEPS):
        pts = (centers[:, :, None, :] + win[None, None]).clamp(min=torch.zeros_like(shape), max=shape - 1)
        flat_pts = pts.reshape(-1, 3)
        flat_rows = rows[:, :, None].expand(b, k, win.shape[0]).reshape(-1)
        vals = target.similarity_at(dots, flat_rows, flat_pts)
        vals = vals.masked_fill(~allowed(flat_pts, flat_rows), NEG).reshape(b, k, -1)
        vbest, arg = vals.max(dim=2)
        new_centers = torch.gather(pts, 2, arg[:, :, None, None].expand(b, k, 1, 3))[:, :, 0]
        moved = (new_centers != centers).any(-1) & alive & (vbest > best_s)
        best_s = torch.where(alive, torch.maximum(best_s, vbest), best_s)
        centers = torch.where(moved[..., None], new_centers, centers)
        if not moved.any():
            break
    return centers, best_s


def subvoxel(target: SimilarityTarget, dots, vox: torch.Tensor) -> torch.Tensor:
    """Per-axis parabola through the peak and its two neighbours: (B, 3) offsets in [-0.5, 0.5] voxels
    (0 on an axis where the peak is at the grid's border or not a maximum).

    Args:
        target: the moving side's similarity.
        dots: the queries' dot maps.
        vox: (B, 3) peak voxels.
    """
    b = vox.shape[0]
    dev = target.device
    shape = torch.tensor(target.grid.shape, device=dev)
    pts = vox[:, None, :] + _STEPS.to(dev)[None]  # (b, 7, 3): centre, +x,+y,+z, -x,-y,-z
    inside = ((pts >= 0) & (pts < shape)).all(-1)
    pts = torch.minimum(pts.clamp_min(0), shape - 1)
    rows = torch.arange(b, device=dev)[:, None].expand(b, 7)
    vals = target.similarity_at(dots, rows.reshape(-1), pts.reshape(-1, 3)).reshape(b, 7)
    s0, sp, sm = vals[:, :1], vals[:, 1:4], vals[:, 4:7]
    den = sm - 2 * s0 + sp
    ok = (den < 0) & inside[:, 1:4] & inside[:, 4:7]
    off = torch.where(ok, 0.5 * (sm - sp) / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(den))
    return off.clamp(-0.5, 0.5)


__all__ = ["Allowed", "refine", "climb", "subvoxel"]
