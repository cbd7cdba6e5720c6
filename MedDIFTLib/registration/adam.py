"""Continuous stage: Adam instance optimisation of a dense displacement with a diffusion regulariser.

The discrete stage leaves a displacement quantised to its step and smoothed by
box filters. Here it is refined continuously, as in ConvexAdam: the field is
a free parameter per voxel of the grid it is given (the coarse-to-fine
schedule of :mod:`.dense` calls it at half the registration resolution, then at full),
smoothed by three 3^3 box filters (a cubic B-spline-like kernel, which makes
it a B-spline field in effect), and moved by Adam to lower the descriptor
SSD of the warped moving descriptors plus ``lambda`` times the squared
finite differences of the field (diffusion regularisation). ConvexAdam writes
this loop inline in ``convex_adam_pt`` for MIND images of equal shape; it is
written here for any descriptor maps and with ``count_include_pad=False`` box
filters, so the field is not pulled towards zero at the borders of the scan.
"""

from __future__ import annotations

import torch

from ..runtime import Cancel, Progress, check_cancel, report
from .descriptors import box3
from .warped_ssd import channels_last, warped_ssd

WORKSPACE_BYTES = 1 << 30  # at most 1 GiB of gathered corners (62^3 voxels x 36 channels: 0.27 GiB)


def smooth(u: torch.Tensor) -> torch.Tensor:
    """Three 3^3 box filters of a (3, X, Y, Z) field (edges averaged over what exists)."""
    for _ in range(3):
        u = box3(u)
    return u


def diffusion(u: torch.Tensor) -> torch.Tensor:
    """Mean squared forward differences of a (3, X, Y, Z) field along each axis, summed."""
    total = u.new_zeros(())
    for a in range(1, 4):
        n = u.shape[a]
        if n > 1:
            total = total + (u.narrow(a, 1, n - 1) - u.narrow(a, 0, n - 1)).pow(2).mean()
    return total


def instance_optimise(
    fixed: torch.Tensor,
    moving: torch.Tensor,
    init: torch.Tensor,
    lam: float = 1.25,
    iterations: int = 80,
    lr: float = 1.0,
    weights: torch.Tensor | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> torch.Tensor:
    """Refine ``init`` (3, X, Y, Z), in voxels of the descriptors' grid; returns the smoothed field.

    Args:
        fixed: (D, X, Y, Z) fixed descriptors.
        moving: (D, X, Y, Z) moving descriptors (already pre-aligned) on the same grid.
        init: the starting displacement (3, X, Y, Z) in voxels of that grid.
        lam: weight of the diffusion regulariser.
        iterations: Adam steps.
        lr: Adam's step, in voxels of the grid.
        weights: (X, Y, Z) weight of each voxel in the data term (the body), or None for all alike: the
            data term is then the weighted mean, so ``lam`` keeps its meaning.
        progress: called with (stage, fraction).
        cancel: polled every ten steps.
    """
    shape = tuple(fixed.shape[1:])
    fl, ml = channels_last(fixed.float()), channels_last(moving.float())
    # the eight gathered corners kept between the residual and the gradient, when that fits
    workspace = torch.empty((8, *fl.shape), device=fl.device) if 8 * fl.numel() * 4 <= WORKSPACE_BYTES else None
    w = None if weights is None else weights.float() / weights.float().sum().clamp_min(1e-6)  # sums to one
    u = init.clone().float().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    for it in range(iterations):
        if it % 10 == 0:
            check_cancel(cancel)
            report(progress, "refine field", it / max(iterations, 1))
        opt.zero_grad()
        s = smooth(u)
        ssd = warped_ssd(s, ml, fl, shape, workspace)  # = (warp(moving, s) - fixed)^2 summed over channels
        cost = ssd.mean() if w is None else (ssd * w).sum()
        loss = cost + lam * diffusion(s)
        loss.backward()
        opt.step()
    report(progress, "refine field", 1.0)
    with torch.no_grad():
        return smooth(u).detach()
