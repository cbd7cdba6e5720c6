"""Discrete stage: a feature-dissimilarity cost volume on a coarse control grid, smoothed by
ConvexAdam's coupled convex optimisation, made inverse-consistent from both directions.

ConvexAdam (Siebert, Hansen and Heinrich, 2021) separates the two halves of
registration: a local search that is globally optimal per control point (the
argmin of a cost volume over a discrete displacement range) and a smoothness
prior, coupled by a quadratic penalty whose weight grows over a few
iterations. We reuse the package's ``coupled_convex`` block as it is; it only
sees a cost volume and a table of displacements, so it is agnostic to the
descriptor. What it lacks, written here:

* the cost volume over *any* descriptor channels, with a displacement step finer
  than the control grid (ConvexAdam's ``correlate`` shifts pooled maps, so its
  step equals the control spacing): the fixed descriptor is pooled per control
  cell, the moving one is box-filtered at full resolution and read at
  ``cell centre + d`` for every integer grid-voxel shift ``d`` on the step lattice;
* inverse consistency in voxel units with ``align_corners=True`` throughout
  (the package's version mixes the two ``grid_sample`` conventions, a bias of
  about one part in the grid size).

All displacements here are in voxels of the registration grid, axis order
(i, j, k) = (R, A, S).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .descriptors import box3, warp


def displacement_table(steps: int, step: int) -> torch.Tensor:
    """All shifts ``step * (a, b, c)`` with ``|a|, |b|, |c| <= steps``: (K, 3) in grid voxels."""
    r = torch.arange(-steps, steps + 1) * step
    return torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3).float()


def cost_volume(fixed: torch.Tensor, moving: torch.Tensor, pool: int, table: torch.Tensor) -> torch.Tensor:
    """SSD between pooled fixed cells and box-filtered moving descriptors at every shift.

    ``fixed``/``moving``: (D, X, Y, Z) on the same grid. Returns (K, cx, cy, cz) with
    ``cx = X // pool``; cell ``c`` is compared with the moving box of the same size
    whose centre is ``d`` voxels away. Smoothed over neighbouring cells by two 3^3 box
    filters, as ConvexAdam does, so each cell's cost sees its surroundings.

    Why it is laid out this way: a shift ``d`` reads the moving boxes at ``pool * c + d``,
    a strided lattice. Splitting ``d = pool * q + r`` turns every shift of the same phase
    ``r`` into a plain slice of one contiguous, channels-last "phase map", so the
    thousands of shifts only read memory in order; and ``|f - m|^2 = |f|^2 + |m|^2 - 2 f.m``
    with both squared norms computed once per cell and phase.
    """
    f = F.avg_pool3d(fixed[None], pool, stride=pool)[0]  # (D, cx, cy, cz)
    cx, cy, cz = f.shape[1:]
    m = F.avg_pool3d(moving[None], pool, stride=1)[0]  # (D, X-pool+1, ...): box starting at each voxel
    reach = int(table.abs().max().item())
    m = F.pad(m[None], [reach] * 6, mode="replicate")[0]
    f_last = f.permute(1, 2, 3, 0).contiguous()  # (cx, cy, cz, D)
    f_sq = f_last.pow(2).sum(-1)
    phases = {}
    out = torch.empty((table.shape[0], cx, cy, cz))
    for n, start in enumerate((table.long() + reach).tolist()):
        r = tuple(s % pool for s in start)
        if r not in phases:
            ph = m[:, r[0]::pool, r[1]::pool, r[2]::pool].permute(1, 2, 3, 0).contiguous()
            phases[r] = (ph, ph.pow(2).sum(-1))
        ph, ph_sq = phases[r]
        a, b, c = (s // pool for s in start)
        window = (slice(a, a + cx), slice(b, b + cy), slice(c, c + cz))
        dot = torch.einsum("xyzd,xyzd->xyz", ph[window], f_last)
        out[n] = (f_sq + ph_sq[window]).sub_(dot, alpha=2.0)
    return box3(box3(out))


def coupled_convex(cost: torch.Tensor, table: torch.Tensor, pool: int) -> torch.Tensor:
    """ConvexAdam's coupled convex optimisation on our cost volume: (3, cx, cy, cz) in grid voxels.

    The package block works in units of control cells (its displacement step is
    one cell), and its coupling weights are tuned for those units, so the table is
    expressed in cells for the call and the result scaled back.
    """
    from convexAdam.convex_adam_utils import coupled_convex as _coupled

    shape = tuple(cost.shape[1:])
    mesh = (table / pool).T.reshape(3, -1, 1).to(cost.dtype)
    argmin = torch.argmin(cost, 0)
    disp = _coupled(cost, argmin, mesh, 1, shape)  # (1, 3, cx, cy, cz), cells
    return disp[0] * pool


def inverse_consistent(forward: torch.Tensor, backward: torch.Tensor, iterations: int = 15):
    """Symmetrise a forward and a backward displacement (3, ...) so that each inverts the other.

    The iteration of ConvexAdam: ``f <- (f - b(x + f)) / 2`` and ``b <- (b - f(x + b)) / 2``,
    which averages each field with the negated other one composed onto it.
    """
    f, b = forward.clone(), backward.clone()
    for _ in range(iterations):
        f_new = 0.5 * (f - warp(b, f))
        b_new = 0.5 * (b - warp(f, b))
        f, b = f_new, b_new
    return f, b


def resample_cells(disp: torch.Tensor, axes) -> torch.Tensor:
    """A control-grid displacement (3, cx, cy, cz) read at fractional control indices.

    ``axes``: three 1D tensors of control-grid index coordinates (a grid voxel ``v``
    sits at ``(v - (pool - 1) / 2) / pool``). Trilinear between cells, constant beyond.
    """
    n_cells = disp.shape[1:]
    norm = [2.0 * a / max(n - 1, 1) - 1.0 for a, n in zip(axes, n_cells)]
    grid = torch.stack(torch.meshgrid(*norm, indexing="ij"), -1).flip(-1)[None].float()
    return F.grid_sample(disp[None], grid, mode="bilinear", padding_mode="border", align_corners=True)[0]


__all__ = ["displacement_table", "cost_volume", "coupled_convex", "inverse_consistent", "resample_cells"]
