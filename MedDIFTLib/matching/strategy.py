"""The match lattice and the two exact ways to score queries on it; the matcher takes the cheaper.

Both compute the paper's similarity (mean over levels of the cosine with each level trilinearly
upsampled and normalised on its own, :mod:`.similarity`) on the coarse lattice of the moving grid:

``native``
    per query and level, the dot map at the level's native resolution, upsampled to the lattice by
    three small matrix products, times 1/|U(m_l)| (exact, from the Gram maps). A query costs one
    scalar map's upsampling per level whatever the channel count: right for MAISI's 960 channels.
``upsampled``
    every level upsampled once to the lattice, each voxel's vector normalised per level, all levels in
    one (C, lattice) matrix; a query is then one matrix-vector product, C multiply-adds per voxel
    instead of the upsampling's few hundred. Right for few channels (MIND-SSC's 2 x 12) on a large
    lattice, and only when C x lattice floats fit ``upsampled_budget_mb``.

The two give the same values to float32 rounding, so the same matches (the refinement around the
candidates is shared). :meth:`MatchLattice.choose` compares estimated costs for the queries of a call
(:func:`estimate`): per-query work times the number of queries plus the one-time setup not yet done,
the upsampled one only when clearly cheaper and within its budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError, opt
from .similarity import EPS, SimilarityTarget, interp_axis, strided_lattice

AUTO, NATIVE, UPSAMPLED = "auto", "native", "upsampled"
NEG = -float("inf")  # a score no candidate can have (masked out)
STRATEGIES = (AUTO, NATIVE, UPSAMPLED)

# Work is counted in float32 BLAS flops; memory traffic is converted at these rates, fitted on the
# development box (one core: ~50 GFLOP/s in sgemm, ~15 GB/s streamed, ~6 GB/s through the gathers of the
# Gram-map passes) so that the four estimates of the 250x236x141 MIND-SSC phantom come out within 15%
# of their measured times; bench_matching.py --strategies checks the resulting choice.
FLOPS_PER_BYTE = 3.0
FLOPS_PER_GATHERED_BYTE = 8.0
# The estimates are good to about 15%, and the upsampled strategy keeps C floats per lattice point where the
# native one keeps one per level: it is taken only when clearly cheaper (a local search, whose queries cost
# little either way, keeps the lean native maps).
UPSAMPLED_MUST_SAVE = 0.15


@dataclass(frozen=True)
class Costs:
    """Estimated work (flop-equivalents) of each strategy: per query, and once per lattice."""

    native_query: float
    upsampled_query: float
    native_setup: float  # the levels' 1/norm maps on the lattice (the Gram maps are shared: refinement)
    upsampled_setup: float  # the normalised descriptor, upsampled channel by channel
    upsampled_bytes: int  # what the descriptor keeps

    def total(self, strategy: str, n_queries: int, ready: bool) -> float:
        per, setup = (
            (self.native_query, self.native_setup)
            if strategy == NATIVE
            else (self.upsampled_query, self.upsampled_setup)
        )
        return n_queries * per + (0.0 if ready else setup)


def _upsample_flops(src, dst) -> float:
    """Flops of :meth:`LevelSimilarity.upsample` for one map: three dense matrix products, z, y, x."""
    (n1, n2, n3), (m1, m2, m3) = src, dst
    return 2.0 * (n1 * n2 * n3 * m3 + n1 * n2 * m2 * m3 + n1 * m1 * m2 * m3)


def estimate(channels, src_shapes, lattice_shape, query_shape=None) -> Costs:
    """Costs of both strategies for levels of ``channels`` on ``src_shapes`` and a lattice of
    ``lattice_shape``; ``query_shape``: the part of the lattice one query reads (a local search's
    window; default all of it). Pure arithmetic on shapes, so it can be asked about any scan."""
    q = tuple(lattice_shape if query_shape is None else query_shape)
    n_lat, n_q = float(np.prod(lattice_shape)), float(np.prod(q))
    _, m2, m3 = (int(s) for s in lattice_shape)
    native_q = native_s = up_s = 0.0
    for c, src in zip(channels, src_shapes):
        n1, n2, n3 = (int(s) for s in src)
        # a window reads about its own share of the level along each axis
        crop = [min(n, int(np.ceil(n * a / b)) + 2) for n, a, b in zip(src, q, lattice_shape)]
        native_q += _upsample_flops(crop, q) + FLOPS_PER_BYTE * 16 * n_q  # map x 1/norm, summed over levels
        # separable passes over the 27 Gram maps (9 outputs along z, 3 along y, 1 along x), ~96 bytes each
        native_s += FLOPS_PER_GATHERED_BYTE * 96 * (9 * n1 * n2 * m3 + 3 * n1 * m2 * m3 + n_lat)
        # per channel: z by a matrix product, y and x by two-point interpolation, the norm, the scaling
        up_s += c * (2.0 * n1 * n2 * n3 * m3 + FLOPS_PER_BYTE * (28 * n1 * m2 * m3 + 52 * n_lat))
    c_all = float(sum(channels))
    up_q = FLOPS_PER_BYTE * 4 * (c_all + 1) * n_q + 2 * c_all * n_q
    if query_shape is not None:
        up_q += FLOPS_PER_BYTE * 8 * c_all * n_q  # the window's columns are copied out first
    return Costs(native_q, up_q, native_s, up_s, int(4 * c_all * n_lat))


class MatchLattice:
    """The coarse lattice of a matcher's moving grid: where the similarity is evaluated exactly
    before the refinement, with what each strategy keeps for it (computed on first use)."""

    def __init__(self, target: SimilarityTarget, stride: int, strategy: str = AUTO, budget_mb: float = 1024.0):
        self.target = target
        self.device = target.device
        self.axes = strided_lattice(target.shape, stride)
        self.shape = tuple(len(a) for a in self.axes)
        self.strategy = strategy
        self.budget_bytes = float(budget_mb) * 2**20
        self._inv: list[torch.Tensor] | None = None  # native: per level 1/|U(m_l)| on the lattice
        self._desc: torch.Tensor | None = None  # upsampled: (C, *shape), per level normalised
        self._ras: torch.Tensor | None = None
        self._m = torch.from_numpy(np.asarray(target.grid.ijk_to_ras, dtype=np.float64)).to(self.device)

    # --- choice ------------------------------------------------------------------------------

    def costs(self, window_shape=None) -> Costs:
        lv = self.target.levels
        return estimate([x.feats.shape[0] for x in lv], [x.src_shape for x in lv], self.shape, window_shape)

    def choose(self, n_queries: int, window_shape=None) -> str:
        """The strategy for ``n_queries`` queries (on windows of ``window_shape`` lattice points in a
        local search): the one forced by the options, else the cheaper estimate within the budget."""
        c = self.costs(window_shape)
        fits = c.upsampled_bytes <= self.budget_bytes
        if self.strategy == UPSAMPLED and not fits:
            raise InputError(
                f"the upsampled matching strategy needs {c.upsampled_bytes / 2**20:.0f} MB for this moving "
                f"scan, more than its budget of {self.budget_bytes / 2**20:.0f} MB: raise "
                f"{opt('upsampled_budget')} or use {opt('match_strategy', 'auto')}"
            )
        if self.strategy != AUTO:
            return self.strategy
        if not fits:
            return NATIVE
        native = c.total(NATIVE, n_queries, self._inv is not None)
        upsampled = c.total(UPSAMPLED, n_queries, self._desc is not None)
        return UPSAMPLED if upsampled < (1.0 - UPSAMPLED_MUST_SAVE) * native else NATIVE

    # --- what each strategy keeps --------------------------------------------------------------

    @property
    def inv_norms(self) -> list[torch.Tensor]:
        """native: 1/|U(m_l)| on the lattice, per level (exact, from the Gram maps)."""
        if self._inv is None:
            self._inv = [self.target.inv_norm(li, self.axes) for li in range(len(self.target.levels))]
        return self._inv

    @property
    def descriptor(self) -> torch.Tensor:
        """upsampled: (C, *shape) float32, each level's block U(m_l) / |U(m_l)| on the lattice.

        Built one channel at a time (z by a matrix product, y and x by two-point interpolation, the
        same weights as :meth:`LevelSimilarity.upsample`), so temporaries stay one channel's size."""
        if self._desc is None:
            levels = self.target.levels
            total = sum(lv.feats.shape[0] for lv in levels)
            desc = torch.empty((total, *self.shape), device=self.device)
            c0 = 0
            for lv in levels:
                tx, ty, tz = lv.tables(self.axes)
                mz = tz.matrix().T
                block = desc[c0 : c0 + lv.feats.shape[0]]
                sq = torch.zeros(self.shape, device=self.device)
                for c in range(block.shape[0]):
                    a = interp_axis(lv.feats[c : c + 1] @ mz, 2, ty)  # (1, n1, Ny, Nz)
                    out = block[c : c + 1]
                    torch.index_select(a, 1, tx.i0, out=out)
                    out.lerp_(a.index_select(1, tx.i1), tx.w.view(1, -1, 1, 1))
                    sq.addcmul_(out[0], out[0])
                block.mul_(sq.sqrt_().clamp_min_(EPS).reciprocal_())
                c0 += block.shape[0]
            self._desc = desc
        return self._desc

    # --- scores ------------------------------------------------------------------------------------

    def scores(self, queries: list[torch.Tensor], dots: list[torch.Tensor], strategy: str) -> torch.Tensor:
        """Similarity of each query at every lattice point: (B, *shape). ``dots`` are the native dot maps
        (:meth:`SimilarityTarget.dot_maps`), which the native strategy upsamples."""
        if strategy == NATIVE:
            return self.target.similarity(dots, self.axes, self.inv_norms)
        desc = self.descriptor
        s = _stacked(queries) @ desc.view(desc.shape[0], -1)
        return s.div_(len(queries)).view(-1, *self.shape)

    def window_scores(self, queries: list[torch.Tensor], crops, pos: list[slice], strategy: str) -> torch.Tensor:
        """:meth:`scores` on the lattice points ``pos`` (a box of the lattice: slices per axis) holding a
        local search's window; ``crops`` are the window's dot maps (:meth:`SimilarityTarget.window_dots`)."""
        sub = [a[p] for a, p in zip(self.axes, pos)]
        if strategy == NATIVE:
            inv = [x[pos[0], pos[1], pos[2]] for x in self.inv_norms]  # the same values the global search uses
            return self.target.similarity_window(crops, sub, inv)
        box = self.descriptor[:, pos[0], pos[1], pos[2]]
        s = _stacked(queries) @ box.reshape(box.shape[0], -1)
        return s.div_(len(queries)).view(-1, *box.shape[1:])

    # --- world positions ---------------------------------------------------------------------------

    def world(self, ijk: torch.Tensor) -> torch.Tensor:
        """RAS mm (float64) of target voxels ``ijk`` (..., 3), on the lattice's device. Element by element
        in a fixed order, so a voxel gets the same value in any batch (a window, the whole lattice)."""
        m, x = self._m, ijk.to(torch.float64)
        return m[:3, 3] + x[..., 0:1] * m[:3, 0] + x[..., 1:2] * m[:3, 1] + x[..., 2:3] * m[:3, 2]

    def ras_of(self, flat: torch.Tensor, axes=None) -> torch.Tensor:
        """RAS mm (float32) of flat indices into the lattice ``axes`` (default the whole lattice)."""
        axes = self.axes if axes is None else axes
        ny, nz = len(axes[1]), len(axes[2])
        t = [torch.from_numpy(np.asarray(a)).to(self.device) for a in axes]
        ijk = torch.stack([t[0][flat // (ny * nz)], t[1][(flat // nz) % ny], t[2][flat % nz]], -1)
        return self.world(ijk).float()

    def ras_grid(self, axes=None) -> torch.Tensor:
        """RAS mm (float32) of every point of the lattice ``axes`` (default the whole lattice), (N, 3)."""
        if axes is None and self._ras is not None:
            return self._ras
        n = int(np.prod([len(a) for a in (axes or self.axes)]))
        out = self.ras_of(torch.arange(n, device=self.device), axes)
        if axes is None:
            self._ras = out
        return out


def _stacked(queries: list[torch.Tensor]) -> torch.Tensor:
    """Per level normalised queries side by side: (B, C); one product with the descriptor sums the cosines."""
    return torch.cat([q / q.norm(dim=1, keepdim=True).clamp_min(EPS) for q in queries], dim=1)


def top_candidates(s: torch.Tensor, k: int, pool: int = 256):
    """Coarse candidates per map: the k highest local maxima (3x3x3) and the k highest values.

    Local maxima cover separate basins; the highest values also catch a narrow
    peak that falls between coarse samples and shows only as a high slope.
    Local maxima are looked for among the ``pool`` highest values only (a
    lower one could not win). Returns the candidates' flat indices (b, 2k),
    -1 where there are fewer, and the pool's values and flat indices.
    """
    b = s.shape[0]
    shape = s.shape[1:]
    flat = s.reshape(b, -1)
    pool = min(pool, flat.shape[1])
    vals, idx = top_pool(flat, pool)
    coords = torch.stack([idx // (shape[1] * shape[2]), (idx // shape[2]) % shape[1], idx % shape[2]], -1)
    is_max = torch.isfinite(vals)
    size = torch.tensor(shape, device=s.device)
    for d in _NEIGHBOURS.to(s.device):
        nb = coords + d
        inside = ((nb >= 0) & (nb < size)).all(-1)
        nb = torch.minimum(nb.clamp_min(0), size - 1)
        nflat = (nb[..., 0] * shape[1] + nb[..., 1]) * shape[2] + nb[..., 2]
        is_max &= ~inside | (torch.gather(flat, 1, nflat) <= vals)
    kk = min(k, pool)
    score = torch.where(is_max, vals, torch.full_like(vals, NEG))
    mvals, mpos = score.topk(kk, dim=1)
    maxima = torch.where(torch.isfinite(mvals), torch.gather(idx, 1, mpos), torch.full_like(mpos, -1))
    tops = torch.where(torch.isfinite(vals[:, :kk]), idx[:, :kk], torch.full_like(idx[:, :kk], -1))
    return torch.cat([maxima, tops], dim=1), vals, idx


def top_pool(flat: torch.Tensor, pool: int, block: int = 1024):
    """``flat.topk(pool, dim=1)`` (values and indices, highest first), read from the ``pool`` blocks of
    ``block`` values with the highest maxima: each of the ``pool`` highest values is the maximum of its
    block or below another of them, so no other block holds one. On a whole lattice (8.3 M values) this
    is one pass for the block maxima and a sort of 0.26 M values instead of a selection over all."""
    b, n = flat.shape
    nb = n // block
    if nb <= 4 * pool:
        return flat.topk(pool, dim=1)
    head = flat[:, : nb * block].view(b, nb, block)
    blocks = head.amax(dim=2).topk(pool, dim=1).indices  # (b, pool)
    local = torch.arange(block, device=flat.device)
    vals = torch.cat(
        [head.gather(1, blocks[:, :, None].expand(b, pool, block)).reshape(b, -1), flat[:, nb * block :]], dim=1
    )
    idx = torch.cat(
        [
            (blocks[:, :, None] * block + local).reshape(b, -1),
            torch.arange(nb * block, n, device=flat.device).expand(b, -1),
        ],
        dim=1,
    )
    vals, pos = vals.topk(pool, dim=1)
    return vals, idx.gather(1, pos)


_NEIGHBOURS = torch.tensor(
    [(dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1) if (dx, dy, dz) != (0, 0, 0)]
)


def on_lattice(t: torch.Tensor, axes) -> torch.Tensor:
    """``t`` (a map on the moving grid) at the lattice ``axes``: t[np.ix_(*axes)], on t's device."""
    for dim, a in enumerate(axes):
        t = t.index_select(dim, torch.from_numpy(np.asarray(a)).to(t.device))
    return t


__all__ = [
    "AUTO",
    "NATIVE",
    "UPSAMPLED",
    "STRATEGIES",
    "Costs",
    "MatchLattice",
    "estimate",
    "on_lattice",
    "top_candidates",
]
