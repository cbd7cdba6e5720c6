"""Dense correspondence from any backbone's pyramids: ConvexAdam's scheme on feature similarity.

The data path (each step in its own module):

1. pre-alignment ``A`` from robust global matches (:mod:`.prealign`);
2. both pyramids sampled at the world points of one axis-aligned grid over the
   fixed scan, the moving one through ``A`` (:mod:`.descriptors`);
3. a cost volume of descriptor SSD (one minus the mean cosine over levels) on a
   coarse control grid over a discrete displacement range, smoothed by coupled
   convex optimisation, from both directions and made inverse-consistent
   (:mod:`.convex`);
4. Adam refinement of a dense field with a diffusion regulariser (:mod:`.adam`), coarse to fine:
   on cells of ``adam_pool`` grid voxels, then on the registration grid itself, its data term
   weighted by the fixed scan's body (:mod:`.mask`) when the caller gives it;
5. the result, ``phi(x) = A (x + u(x))`` in RAS mm (:mod:`.field`).

Defaults are set in physical terms (millimetres of search, grid voxels per
control cell) so that they carry over between scans of different resolution.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..data.geometry import Volume
from ..errors import InputError
from ..features.pyramid import FeaturePyramid
from ..options import PREALIGN_KINDS, RegistrationOptions  # their home; importable here as before
from ..runtime import Cancel, Progress, check_cancel, report
from .adam import instance_optimise
from .convex import (
    cost_volume,
    coupled_convex,
    cpu_threads,
    displacement_table,
    free_cores,
    inverse_consistent,
    resample_cells,
)
from .descriptors import AxisGrid, covering_axis_grid, reduce_channels, stacked_descriptors
from .field import DenseField
from .prealign import prealign


def registration_grid(fixed: FeaturePyramid, opts: RegistrationOptions) -> AxisGrid:
    """Isotropic grid over the fixed scan at its finest voxel size, coarsened to ``max_voxels``."""
    lo, hi = fixed.grid.bounds_ras()
    h = opts.spacing_mm or float(np.min(np.linalg.norm(fixed.grid.ijk_to_ras[:3, :3], axis=0)))
    h = max(h, float(np.cbrt(np.prod(hi - lo) / opts.max_voxels)))
    return covering_axis_grid(fixed.grid, h)


def register(
    fixed: FeaturePyramid,
    moving: FeaturePyramid,
    options: RegistrationOptions | None = None,
    initial: np.ndarray | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    device=None,
    weights: Volume | None = None,
) -> DenseField:
    """Dense fixed -> moving correspondence of two pyramids (any backbone).

    Args:
        fixed: the fixed scan's feature pyramid.
        moving: the moving scan's feature pyramid.
        options: how to register (default :class:`RegistrationOptions`).
        initial: a 4x4 RAS matrix (fixed -> moving points) known beforehand, for example from a user's
            transform file; it replaces the automatic pre-alignment.
        progress: called with (stage, fraction).
        cancel: polled between stages.
        device: where to compute (``--device``; default: the fixed pyramid's); the field comes back on the CPU.
        weights: the data term's weight over the fixed scan (:func:`.mask.body_weights`: the body), or None.
    """
    dev = torch.device(device) if device is not None else fixed.levels[0].features.device
    opts = options or RegistrationOptions()
    t0 = time.perf_counter()
    grid = registration_grid(fixed, opts)
    h = float(grid.spacing[0])
    if min(grid.shape) < 2 * opts.control:
        raise InputError(
            f"the fixed scan is too small for dense registration at {h:.2f} mm "
            f"({grid.shape} grid voxels; at least {2 * opts.control} per axis)"
        )
    info = {"options": asdict(opts), "grid_shape": list(grid.shape), "grid_spacing_mm": h}
    a = _prealignment(fixed, moving, opts, opts.prealign_spacing_mm or opts.control * h, initial, dev, info, progress)
    check_cancel(cancel)
    fd, md = _descriptors(fixed, moving, grid, a, opts, dev, info, progress)
    check_cancel(cancel)
    disp = _discrete_search(fd, md, h, opts, dev, info, progress, cancel)
    check_cancel(cancel)
    w = _grid_weights(weights, grid, dev)
    info["body_weighted_share"] = None if w is None else round(float(w.mean()), 3)
    agrid, u_mm = _instance_optimisation(fd, md, disp, grid, opts, dev, w, progress, cancel)
    info["seconds"] = round(time.perf_counter() - t0, 2)
    return DenseField(a, agrid, u_mm, info)


def _prealignment(fixed, moving, opts, coarse_mm: float, initial, dev, info: dict, progress) -> np.ndarray:
    """The 4x4 RAS pre-alignment: the user's matrix, checked, or the automatic one at ``coarse_mm``."""
    report(progress, "pre-align", 0.0)
    if initial is not None:
        a = np.asarray(initial, dtype=np.float64)
        if a.shape != (4, 4) or not np.all(np.isfinite(a)) or abs(np.linalg.det(a[:3, :3])) < 1e-6:
            raise InputError("the initial transform must be an invertible 4x4 RAS matrix")
        info["prealign_used"] = "given"
    else:
        a, pre = prealign(fixed, moving, coarse_mm, opts.prealign, opts.levels, device=dev)
        info.update(pre)
    report(progress, "pre-align", 1.0)
    return a


def _descriptors(fixed, moving, grid: AxisGrid, a: np.ndarray, opts, dev, info: dict, progress) -> tuple:
    """Both scans' stacked descriptors on the registration grid (the moving one through the pre-alignment),
    reduced to ``max_channels`` shared channels."""
    report(progress, "descriptors", 0.0)
    pts = grid.points()
    fd = stacked_descriptors(fixed, pts, opts.levels, dev)
    md = stacked_descriptors(moving, pts @ a[:3, :3].T + a[:3, 3], opts.levels, dev)
    fd, md, kept = reduce_channels(fd, md, opts.max_channels)
    info["channels"], info["energy_kept"] = int(fd.shape[0]), round(kept, 4)
    report(progress, "descriptors", 1.0)
    return fd, md


def _discrete_search(fd, md, h: float, opts, dev, info: dict, progress, cancel) -> torch.Tensor:
    """Displacements per control cell (in grid voxels) from the coupled convex search over the cost volume,
    made inverse-consistent with the backward search when the options ask."""
    pool = opts.control
    table = displacement_table(max(1, math.ceil(opts.search_mm / (opts.step * h))), opts.step, dev)
    report(progress, "discrete search", 0.0)
    dfd, dmd, dkept = reduce_channels(fd, md, opts.discrete_channels or opts.max_channels)
    info["discrete_channels"], info["discrete_energy_kept"] = int(dfd.shape[0]), round(dkept, 4)
    disp = coupled_convex(cost_volume(dfd, dmd, pool, table), table, pool)
    if opts.inverse_consistent:
        check_cancel(cancel)
        report(progress, "discrete search", 0.5)
        back = coupled_convex(cost_volume(dmd, dfd, pool, table), table, pool)
        disp, _ = inverse_consistent(disp / pool, back / pool)
        disp = disp * pool
    report(progress, "discrete search", 1.0)
    return disp


def _adam_levels(opts: RegistrationOptions) -> list[tuple[int, int, float]]:
    """(pool, iterations, learning rate in that level's voxels) from coarse to fine.

    The coarse level (cells of ``adam_pool`` grid voxels) turns the discrete answer into a smooth
    field; the fine level then refines it on the registration grid itself, where the finest
    descriptors (MIND-SSC's full-resolution level) resolve what a cell of several voxels averages
    away. It starts from a field already within a cell of the answer, so it takes steps of half a
    voxel and needs fewer iterations.
    """
    levels = [(opts.adam_pool, opts.iterations, 1.0)]
    if opts.adam_pool > 1 and opts.fine_iterations:
        levels.append((1, opts.fine_iterations, 0.5))
    return levels


def _instance_optimisation(fd, md, disp, grid: AxisGrid, opts, dev, weights, progress, cancel) -> tuple:
    """The Adam refinement, coarse to fine (:func:`_adam_levels`), started from the discrete displacements:
    (the last level's grid, the displacement in RAS mm on it, float64 on the CPU).

    ``weights``: the data term's weight per registration-grid voxel (the body), or None for all alike."""
    # the previous answer: its values in units of ``unit`` grid voxels, one per cell of ``prev_pool`` voxels
    prev, prev_pool, unit = disp, opts.control, 1
    agrid = grid
    with cpu_threads(dev, free_cores()):
        for ap, iterations, lr in _adam_levels(opts):
            agrid = grid.pooled(ap)
            # cell a of this level is centred on grid voxel ap*a + (ap-1)/2; cell c of the previous one on
            # prev_pool*c + (prev_pool-1)/2
            axes = [
                ((ap * torch.arange(n, dtype=torch.float32, device=dev) + (ap - 1) / 2.0) - (prev_pool - 1) / 2.0)
                / prev_pool
                for n in agrid.shape
            ]
            init = resample_cells(prev, axes) * (unit / ap)
            if ap == 1:
                fa, ma, _ = reduce_channels(fd, md, opts.fine_channels or opts.max_channels)
            else:
                fa, ma = (F.avg_pool3d(t[None], ap, stride=ap)[0] for t in (fd, md))
            wa = None if weights is None else (weights if ap == 1 else F.avg_pool3d(weights[None, None], ap, ap)[0, 0])
            prev = instance_optimise(
                fa, ma, init, opts.lam, iterations, lr=lr, weights=wa, progress=progress, cancel=cancel
            )
            prev_pool = unit = ap
    return agrid, (prev * agrid.spacing[0]).permute(1, 2, 3, 0).cpu().numpy().astype(np.float64)


def _grid_weights(weights: Volume | None, grid: AxisGrid, dev) -> torch.Tensor | None:
    """A fixed-scan weight volume (the body mask) read trilinearly on the registration grid; None when
    there is none or it keeps less than a tenth of the grid (too little to register on alone)."""
    if weights is None:
        return None
    w = ndimage.map_coordinates(
        np.asarray(weights.array, dtype=np.float32),
        weights.world_to_ijk(grid.points().reshape(-1, 3)).T,
        order=1,
        mode="nearest",
        prefilter=False,
    ).reshape(grid.shape)
    if w.mean() < 0.1:
        return None
    return torch.from_numpy(np.ascontiguousarray(w)).to(dev)


__all__ = ["RegistrationOptions", "register", "registration_grid", "PREALIGN_KINDS"]
