"""Descriptors of a whole pyramid on one regular world grid, ready for dense registration.

Registration compares the fixed and moving descriptors voxel by voxel, so both
must be sampled on grids of the same shape. Each level is sampled at *world*
points through its own IJK-to-RAS matrix (levels differ in resolution and,
for MAISI, in how the volume was padded to multiples of 128), never by
assuming that grids line up.

The similarity is the paper's: the mean over levels of the cosine similarity.
With each level L2-normalised per voxel and scaled by ``1/sqrt(L)`` and the
levels stacked, the squared distance of two stacked descriptors is
``2 - 2 * mean_cos``, so a sum-of-squared-differences cost (what ConvexAdam's
blocks minimise) *is* one minus the mean cosine, up to the factor 2.
Descriptors with many channels (MAISI: 960 over four levels) are projected on
their leading principal components, fitted jointly on both scans, so that the
cost volume stays small; the projection is an orthogonal map, so it keeps
distances up to the discarded variance (reported).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data.geometry import Grid, make_ijk_to_ras
from ..features.pyramid import FeatureLevel, FeaturePyramid


@dataclass(frozen=True)
class AxisGrid:
    """An axis-aligned RAS grid (positive spacing along R, A, S): index ``n`` sits at ``origin + n * spacing``."""

    shape: tuple
    origin: np.ndarray
    spacing: np.ndarray

    @property
    def ijk_to_ras(self) -> np.ndarray:
        return make_ijk_to_ras(self.spacing, self.origin)

    @property
    def grid(self) -> Grid:
        return Grid(tuple(self.shape), self.ijk_to_ras)

    def points(self) -> np.ndarray:
        """World points of every voxel centre, shape (X, Y, Z, 3)."""
        axes = [self.origin[a] + self.spacing[a] * np.arange(self.shape[a]) for a in range(3)]
        return np.stack(np.meshgrid(*axes, indexing="ij"), -1)

    def pooled(self, factor: int) -> AxisGrid:
        """The grid of ``avg_pool3d(kernel=factor, stride=factor)``: cell ``c`` averages voxels
        ``factor*c .. factor*c+factor-1``, so its centre is at voxel ``factor*c + (factor-1)/2``."""
        shape = tuple(max(1, n // factor) for n in self.shape)
        return AxisGrid(shape, self.origin + self.spacing * (factor - 1) / 2.0, self.spacing * factor)


def covering_axis_grid(grid: Grid, spacing_mm: float) -> AxisGrid:
    """Isotropic axis-aligned grid of ``spacing_mm`` covering ``grid``'s voxel box."""
    lo, hi = grid.bounds_ras()
    shape = np.maximum(1, np.floor((hi - lo) / spacing_mm + 1e-6)).astype(int)
    centre = (lo + hi) / 2.0
    origin = centre - spacing_mm * (shape - 1) / 2.0
    return AxisGrid(tuple(int(n) for n in shape), origin, np.full(3, float(spacing_mm)))


def sample_level(level: FeatureLevel, ras_points: np.ndarray, device=None) -> torch.Tensor:
    """Trilinear descriptors of ``level`` at world points (..., 3): (C, ...), border-clamped, on
    ``device`` (default: the level's own)."""
    dev = torch.device(device) if device is not None else level.features.device
    lead = ras_points.shape[:-1]
    inv = np.linalg.inv(level.ijk_to_ras)
    size = np.asarray(level.shape, dtype=np.float64)
    # world -> grid_sample's normalised (k, j, i) in one affine map (align_corners=True: index 0 -> -1,
    # n-1 -> +1), one matrix product in torch: the world points of a large grid are millions of rows
    scale = 2.0 / np.maximum(size - 1.0, 1.0)
    m = (scale[:, None] * inv[:3, :3])[::-1]
    t = (scale * inv[:3, 3] - 1.0)[::-1]
    pts = torch.from_numpy(np.ascontiguousarray(ras_points.reshape(-1, 3), dtype=np.float64))
    g = torch.addmm(torch.from_numpy(t.copy())[None], pts, torch.from_numpy(m.T.copy())).float().to(dev)
    feats = level.features.to(dev).float()[None]
    out = F.grid_sample(feats, g.view(1, 1, 1, -1, 3), mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(level.channels, *lead)


def warp(field: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """``field`` (C, X, Y, Z) read at ``x + disp(x)``, disp (3, X, Y, Z) in voxels of that grid:
    trilinear, border-clamped, ``align_corners=True`` (voxel ``n`` is index ``n``)."""
    idx = torch.stack(
        torch.meshgrid(
            *[torch.arange(n, dtype=torch.float32, device=disp.device) for n in disp.shape[1:]], indexing="ij"
        ),
        0,
    )
    size = torch.tensor(field.shape[1:], dtype=torch.float32, device=disp.device).view(3, 1, 1, 1)
    norm = 2.0 * (idx + disp) / (size - 1).clamp_min(1.0) - 1.0
    grid = norm.permute(1, 2, 3, 0).flip(-1)[None]
    return F.grid_sample(field[None], grid, mode="bilinear", padding_mode="border", align_corners=True)[0]


def box3(x: torch.Tensor) -> torch.Tensor:
    """3^3 mean filter over the last three axes, edges averaged over what exists.

    Equal to ``avg_pool3d(x, 3, stride=1, padding=1, count_include_pad=False)`` (the window
    and the valid region are boxes, so both the sum and the count factor per axis), but
    written as three 1D passes of shifted additions: PyTorch's CPU ``avg_pool3d`` visits
    27 voxels per output, forward and backward, and was a third of the Adam stage.
    """
    for axis in (-3, -2, -1):
        n = x.shape[axis]
        if n < 2:
            continue
        total = x.clone()
        total.narrow(axis, 1, n - 1).add_(x.narrow(axis, 0, n - 1))
        total.narrow(axis, 0, n - 1).add_(x.narrow(axis, 1, n - 1))
        inv = torch.full((n,), 1.0 / 3.0, dtype=x.dtype, device=x.device)
        inv[0] = inv[-1] = 0.5
        x = total.mul_(inv.view(-1, *([1] * (-axis - 1))))  # in place: no second copy of a large array
    return x


def box_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over each ``size``^3 box starting at each voxel (no padding): (C, X-size+1, ...).

    Equal to ``avg_pool3d(x[None], size, stride=1)[0]``, as three 1D passes of shifted
    additions: 3 * size reads per voxel instead of size^3 (64 for 4-voxel cells).
    """
    if size == 1:
        return x
    for axis in (1, 2, 3):
        n = x.shape[axis] - size + 1
        total = x.narrow(axis, 0, n) + x.narrow(axis, 1, n)
        for k in range(2, size):
            total.add_(x.narrow(axis, k, n))
        x = total.div_(size)
    return x


def stacked_descriptors(pyramid: FeaturePyramid, ras_points: np.ndarray, levels=None, device=None) -> torch.Tensor:
    """Per-level L2-normalised descriptors scaled by 1/sqrt(L), stacked: (D, ...)."""
    lvls = [pyramid.level(n) for n in levels] if levels else pyramid.levels
    scale = 1.0 / math.sqrt(len(lvls))
    parts = []
    for lv in lvls:
        d = sample_level(lv, ras_points, device)
        parts.append(d.div_(d.norm(dim=0, keepdim=True).clamp_min_(1e-8)).mul_(scale))
    return torch.cat(parts, 0)


def reduce_channels(
    fixed: torch.Tensor, moving: torch.Tensor, max_channels: int, samples: int = 20000, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Project both (D, ...) descriptor maps on their joint leading principal directions.

    Returns the two maps with at most ``max_channels`` channels and the share of the
    (uncentred) energy kept. No centring: squared distances are what the cost uses, and
    an orthogonal projection of the raw vectors keeps them exactly in the kept subspace.
    """
    d = fixed.shape[0]
    if d <= max_channels:
        return fixed, moving, 1.0
    gen = torch.Generator(device="cpu").manual_seed(seed)  # the same samples on every device
    rows = []
    for t in (fixed, moving):
        flat = t.reshape(d, -1)
        idx = torch.randint(flat.shape[1], (min(samples, flat.shape[1]),), generator=gen, device="cpu").to(t.device)
        rows.append(flat[:, idx].T)
    x = torch.cat(rows, 0).double()
    cov = x.T @ x
    evals, evecs = torch.linalg.eigh(cov)
    basis = evecs[:, -max_channels:].float()  # (D, k)
    kept = float(evals[-max_channels:].sum() / evals.sum().clamp_min(1e-12))

    def project(t):
        return (basis.T @ t.reshape(d, -1)).reshape(max_channels, *t.shape[1:])

    return project(fixed), project(moving), kept
