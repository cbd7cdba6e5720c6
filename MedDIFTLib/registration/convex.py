"""Discrete stage: a feature-dissimilarity cost volume on a coarse control grid, smoothed by
ConvexAdam's coupled convex optimisation, made inverse-consistent from both directions.

ConvexAdam (Siebert, Hansen and Heinrich, 2021) separates the two halves of
registration: a local search that is globally optimal per control point (the
argmin of a cost volume over a discrete displacement range) and a smoothness
prior, coupled by a quadratic penalty whose weight grows over a few
iterations. Its ``coupled_convex`` block only sees a cost volume and a table of
displacements, so it is agnostic to the descriptor; we keep its scheme and
weights and rewrite its arithmetic for speed on a CPU (tested equal to the
package's block). What the package lacks, written here:

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

import contextlib
import os

import torch
import torch.nn.functional as F

from .descriptors import box3, box_filter, warp


def free_cores() -> int:
    """CPU cores this process may use that other jobs are not already using: at least one.

    Why: every PyTorch operation ends at a barrier where its threads wait for each other, so
    a thread on a core that another job holds makes the whole operation wait for that job's
    time slice; on busy cores the refinement with as many threads as cores took many times its
    idle time. The cores allowed (``sched_getaffinity``, which containers and ``taskset``
    narrow) minus the one-minute load of the others (the load average less this process's own
    running thread), rounded, leaves the threads that will not wait on a busy core.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS has no affinity call
        cores = os.cpu_count() or 1
    try:
        others = max(0.0, os.getloadavg()[0] - 1.0)
    except OSError:  # pragma: no cover - no load average (Windows)
        others = 0.0
    return max(1, min(cores, int(cores - others + 0.5)))


@contextlib.contextmanager
def cpu_threads(device: torch.device, n: int):
    """Run a block on at most ``n`` intra-op threads (CPU only), then restore torch's setting."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(n, before)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def one_thread(device: torch.device):
    """Run a loop of many small CPU operations on one thread, then restore torch's setting.

    Each operation of the shift loop (30,000 cells x 12 channels) is too small to gain from a
    second thread, and every operation ends at a barrier where the threads wait for each
    other: on an idle 2-core machine one thread was as fast, and on a busy one (other jobs
    on the cores) two threads spent several times the CPU of one. Registration jobs run one at a time
    per process (the worker and the server queue them), so the process-wide setting is safe.
    """
    with cpu_threads(device, 1):
        yield


def displacement_table(steps: int, step: int, device=None) -> torch.Tensor:
    """All shifts ``step * (a, b, c)`` with ``|a|, |b|, |c| <= steps``: (K, 3) in grid voxels."""
    r = torch.arange(-steps, steps + 1, device=device) * step
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
    m = box_filter(moving, pool)  # (D, X-pool+1, ...): the box starting at each voxel
    reach = int(table.abs().max().item())
    m = F.pad(m[None], [reach] * 6, mode="replicate")[0]
    f_last = f.permute(1, 2, 3, 0).contiguous()  # (cx, cy, cz, D)
    f_sq = f_last.pow(2).sum(-1)
    out = torch.empty((table.shape[0], cx, cy, cz), device=fixed.device)
    with one_thread(fixed.device):
        _fill_costs(out, m, f_last, f_sq, table, reach, pool)
    return box3(box3(out))


def _fill_costs(out, m, f_last, f_sq, table, reach, pool):
    """``out[n]`` = SSD of every cell at shift ``n`` (see :func:`cost_volume`)."""
    cx, cy, cz = out.shape[1:]
    phases = {}  # phase r -> (its channels-last map, its squared norms), made when first needed
    for n, start in enumerate((table.long() + reach).tolist()):
        r = tuple(s % pool for s in start)
        if r not in phases:
            ph = m[:, r[0] :: pool, r[1] :: pool, r[2] :: pool].permute(1, 2, 3, 0).contiguous()
            phases[r] = (ph, ph.pow(2).sum(-1))
        ph, ph_sq = phases[r]
        a, b, c = (s // pool for s in start)
        window = (slice(a, a + cx), slice(b, b + cy), slice(c, c + cz))
        torch.add(f_sq, ph_sq[window], out=out[n]).sub_(torch.linalg.vecdot(ph[window], f_last), alpha=2.0)


COUPLING = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # the package's coupling weights, in control-cell units


def coupled_convex(cost: torch.Tensor, table: torch.Tensor, pool: int) -> torch.Tensor:
    """ConvexAdam's coupled convex optimisation on our cost volume: (3, cx, cy, cz) in grid voxels.

    The scheme, its weights and its smoothing are those of the package's ``coupled_convex``
    block, which works in units of control cells (its displacement step is one cell), so
    the table is expressed in cells and the result scaled back. Each round takes, per cell,
    the displacement ``d_k`` minimising ``cost_k + w |d_k - s|^2`` (``s``: the smoothed
    previous answer), then averages the answers over 3^3 cells. The package forms the
    penalty as three squared differences per displacement and cell; since ``|s|^2`` is the
    same for every ``k`` of a cell, the argmin is that of ``cost_k + w |d_k|^2 - 2 w d_k . s``,
    one (K x 3) by (3 x cells) product per slice of cells. Same answers (a test compares
    them with the package's block), in half the time on a CPU.
    """
    shape = tuple(cost.shape[1:])
    mesh = (table / pool).to(cost.dtype)  # (K, 3) in cells
    sq = mesh.pow(2).sum(1, keepdim=True)  # (K, 1)

    def smoothed(choice):
        d = mesh[choice.reshape(-1)].T.reshape(1, 3, *shape)
        return F.avg_pool3d(d, 3, padding=1, stride=1)[0]  # as the package: zero-padded borders

    soft = smoothed(cost.argmin(0))
    choice = torch.empty(shape, dtype=torch.long, device=cost.device)
    for w in COUPLING:
        with one_thread(cost.device):
            for i in range(shape[0]):  # a slice of cells at a time keeps the (K, cells) scores in the cache
                score = torch.addmm(
                    cost[:, i].reshape(cost.shape[0], -1), mesh, soft[:, i].reshape(3, -1), alpha=-2.0 * w
                ).add_(sq, alpha=w)
                choice[i] = score.argmin(0).view(shape[1:])
        soft = smoothed(choice)
    return soft * pool


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


__all__ = [
    "free_cores",
    "cpu_threads",
    "displacement_table",
    "cost_volume",
    "coupled_convex",
    "inverse_consistent",
    "resample_cells",
]
