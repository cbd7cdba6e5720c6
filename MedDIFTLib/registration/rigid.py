"""Exact rigid refinement: the six parameters of a repositioning, fitted on the two images in one frame.

Global descriptor matches find a repositioning roughly but fall short of a turn:
descriptors are computed along each scan's voxel axes, so turned anatomy carries
turned descriptors and the best matches pull the fit back towards no turn. A turn
and a shift are six numbers, so they are fitted here directly: the moving scan is
sampled *through the current transform* at the points of a grid over the fixed
scan, which puts both images in the fixed frame whatever the turn, and the six
parameters maximise the normalised cross-correlation of the two (insensitive to a
global gain and offset), coarse to fine, with L-BFGS.

Each level samples both scans filtered to its own spacing, the finest at the fixed
scan's resolution (coarsened to ``max_voxels`` points), so the result is exact to a
fraction of that voxel. A fit that ends no better than it started, or turns far
off, is not used. A non-rigid motion (breathing) has no exact rigid part: there
the fit is the rigid motion that best explains the images, which the deformable
stages then complete.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..data.geometry import Volume
from .descriptors import AxisGrid, covering_axis_grid

BLUR = 0.5  # Gaussian sigma of each level, in its spacing
LEVEL_FACTORS = (4, 2, 1)  # level spacings as multiples of the finest
MAX_TURN_DEG = 20.0  # a refinement that turns further than this has run off: the start is kept


def _filtered(volume: Volume, h: float) -> tuple[torch.Tensor, np.ndarray]:
    """The volume box-filtered and pooled over about ``h`` mm per axis, then smoothed by ``BLUR * h``:
    ((1, 1, I', J', K') image, its IJK-to-RAS). The smoothing keeps trilinear interpolation's own
    blur (which varies with the sub-voxel position) small next to it, so the fit is not drawn to
    whole-voxel shifts."""
    arr = torch.from_numpy(np.ascontiguousarray(volume.array, dtype=np.float32))[None, None]
    k = [int(max(1, min(n, round(h / s)))) for n, s in zip(volume.shape, volume.spacing)]
    if max(k) > 1:
        arr = F.avg_pool3d(arr, k, stride=k)
    # in pooled voxels; along a thick slice, by at least half of it (interpolation across it is coarse)
    blur = [BLUR * max(h, kk * sp) / (kk * sp) for kk, sp in zip(k, volume.spacing)]
    arr = torch.from_numpy(ndimage.gaussian_filter(arr[0, 0].numpy(), blur, mode="nearest", truncate=3.0))[None, None]
    scale = np.eye(4)
    scale[:3, :3] = np.diag(k)
    scale[:3, 3] = (np.asarray(k) - 1.0) / 2.0  # pooled voxel n averages voxels k*n .. k*n + k - 1
    return arr, volume.ijk_to_ras @ scale


def _sample(image: torch.Tensor, ijk_to_ras: np.ndarray, ras: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Trilinear values at world points (..., 3) (border-clamped) and whether each lies inside the image."""
    inv = torch.from_numpy(np.linalg.inv(ijk_to_ras)).to(ras.dtype)
    ijk = ras @ inv[:3, :3].T + inv[:3, 3]
    size = torch.tensor(image.shape[2:], dtype=ras.dtype)
    norm = 2.0 * ijk / (size - 1.0).clamp_min(1.0) - 1.0
    g = norm.flip(-1).reshape(1, -1, 1, 1, 3).float()  # grid_sample's (x, y, z) index (k, j, i)
    vals = F.grid_sample(image, g, mode="bilinear", padding_mode="border", align_corners=True)
    inside = ((ijk >= -0.5) & (ijk <= size - 0.5)).all(-1)
    return vals.reshape(ras.shape[:-1]), inside


def _delta(q: torch.Tensor, centre: torch.Tensor, radius: float, h: float) -> torch.Tensor:
    """The update ``D(x) = R (x - c) + c + t`` as a 4x4 from the level's parameters ``q`` (voxels of ``h``:
    the rotation vector scaled by the scan's radius, then the translation)."""
    w = q[:3] * h / radius
    zero = torch.zeros((), dtype=q.dtype)
    skew = torch.stack([zero, -w[2], w[1], w[2], zero, -w[0], -w[1], w[0], zero]).reshape(3, 3)
    r = torch.linalg.matrix_exp(skew)
    top = torch.cat([r, (centre - r @ centre + q[3:] * h)[:, None]], 1)
    return torch.cat([top, torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=q.dtype)], 0)


def _ncc_loss(f, m, w):
    """One minus the weighted normalised cross-correlation."""
    s = w.sum().clamp_min(1.0)
    fm, mm = (w * f).sum() / s, (w * m).sum() / s
    fc, mc = f - fm, m - mm
    cov = (w * fc * mc).sum()
    return 1.0 - cov / ((w * fc**2).sum() * (w * mc**2).sum()).sqrt().clamp_min(1e-6)


class _Level:
    """One level of the fit: the fixed scan sampled on ``grid``, the moving scan filtered for sampling."""

    def __init__(self, fixed: Volume, moving: Volume, grid: AxisGrid, h: float):
        self.h = h
        self.points = torch.from_numpy(grid.points()).float()
        fimg, fm = _filtered(fixed, h)
        self.fixed, self.fixed_inside = _sample(fimg, fm, self.points)
        self.moving, self.moving_ijk_to_ras = _filtered(moving, h)

    def loss(self, a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """One minus the NCC of the two scans where both have voxels, the moving one through ``a @ d``."""
        m = a @ d
        y = self.points @ m[:3, :3].T.float() + m[:3, 3].float()
        mv, inside = _sample(self.moving, self.moving_ijk_to_ras, y)
        return _ncc_loss(self.fixed, mv, (self.fixed_inside & inside).float())


def _fit_level(level: _Level, a: torch.Tensor, q: torch.Tensor, centre, radius: float, iterations: int):
    """L-BFGS on the level's six parameters from ``q``: (the fitted ``q``, loss before, loss after)."""
    q = q.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([q], max_iter=iterations, tolerance_change=1e-7, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = level.loss(a, _delta(q, centre, radius, level.h))
        loss.backward()
        return loss

    with torch.no_grad():
        before = float(level.loss(a, _delta(q, centre, radius, level.h)))
    opt.step(closure)
    q = q.detach()
    with torch.no_grad():
        after = float(level.loss(a, _delta(q, centre, radius, level.h)))
    return q, before, after


def refine_rigid(
    fixed: Volume, moving: Volume, initial: np.ndarray, max_voxels: int = 48**3, iterations: int = 20
) -> tuple[np.ndarray, dict]:
    """The transform ``initial @ D`` (fixed -> moving points, 4x4 RAS) with the rigid ``D`` that best lays
    the moving scan's edges over the fixed scan's, and a report of the fit.

    Args:
        fixed: the fixed scan (HU).
        moving: the moving scan (HU).
        initial: the starting transform, 4x4 RAS fixed -> moving points (the robust match fit).
        max_voxels: points of the finest level (its spacing: the fixed scan's finest voxel, or coarser).
        iterations: L-BFGS iterations per level.
    """
    start = np.asarray(initial, dtype=np.float64)
    a = torch.from_numpy(start)
    lo, hi = fixed.grid.bounds_ras()
    centre, radius = torch.from_numpy((lo + hi) / 2.0), float(np.linalg.norm(hi - lo) / 2.0)
    h0 = max(float(fixed.spacing.min()), float(np.cbrt(np.prod(hi - lo) / max_voxels)))
    q, h, levels, level = torch.zeros(6, dtype=torch.float64), h0, [], None
    for factor in LEVEL_FACTORS:
        grid = covering_axis_grid(fixed.grid, factor * h0)
        if min(grid.shape) < 5:
            continue
        q, h = q * h / (factor * h0), factor * h0  # the same motion in the new level's voxels
        level = _Level(fixed, moving, grid, h)
        q, before, after = _fit_level(level, a, q, centre, radius, iterations)
        levels.append(
            {"spacing_mm": round(h, 3), "ncc_loss_before": round(before, 5), "ncc_loss_after": round(after, 5)}
        )
    turn = float(np.degrees(np.linalg.norm(q.numpy()[:3]) * h / radius))
    info = {"levels": levels, "turn_deg": round(turn, 3), "shift_mm": [round(float(v) * h, 3) for v in q[3:]]}
    if level is None:
        return start, {**info, "used": False}
    d = _delta(q, centre, radius, h)
    with torch.no_grad():  # on the finest level: better than where it started, or not used
        gained = float(level.loss(a, d)) < float(level.loss(a, torch.eye(4, dtype=torch.float64)))
    if not gained or turn > MAX_TURN_DEG:
        return start, {**info, "used": False}
    return start @ d.numpy(), {**info, "used": True}


__all__ = ["refine_rigid"]
