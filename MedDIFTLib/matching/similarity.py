"""Exact MedDIFT similarity on any lattice of target voxels, without upsampling features.

Reference semantics (what a dense implementation does): each level ``m_l``
(C_l channels) is trilinearly upsampled to the target grid (voxel edges kept,
``align_corners=False``), every voxel's vector is L2-normalised, and

    sim(q, v) = mean_l  < q_l / |q_l| ,  U(m_l)(v) / |U(m_l)(v)| >.

Upsampling is linear, so the numerator is the upsampled *scalar* map
``U(<q_l, m_l>)`` computed at native resolution. The denominator is the norm
of the upsampled vector, a quadratic form in the 8 corner vectors; it is
evaluated exactly from native-resolution inner products of neighbouring
voxels (27 offsets) with separable passes, one axis at a time. No
full-resolution C-channel array is ever built: the cost per target voxel is a
handful of multiply-adds per level instead of C_l.

Everything here works on a *lattice*: the Cartesian product of index lists
along the target's three axes (a stride-s coarse grid, a box, a full grid).

Every tensor is made on the target's device (the ``device`` of
:class:`SimilarityTarget`, by default where the moving pyramid's features are), so the same code runs on
a GPU; only the callers move final results to the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.geometry import Grid
from ..features.pyramid import FeatureLevel, FeaturePyramid

EPS = 1e-12


@dataclass(frozen=True)
class AxisTable:
    """Linear interpolation along one axis for a list of target indices.

    ``i0``/``i1`` are the two source indices and ``w`` the weight of ``i1``,
    exactly as ``torch.nn.functional.interpolate(mode="trilinear",
    align_corners=False)`` computes them (source clamped at 0, ``i1`` clamped
    at the last voxel).
    """

    i0: torch.Tensor
    i1: torch.Tensor
    w: torch.Tensor
    n_src: int

    def matrix(self) -> torch.Tensor:
        """The interpolation as a dense (targets x sources) matrix, two weights per row."""
        m = torch.zeros(len(self.i0), self.n_src, device=self.w.device)
        rows = torch.arange(len(self.i0), device=self.w.device)
        m.index_put_((rows, self.i0), 1 - self.w, accumulate=True)
        m.index_put_((rows, self.i1), self.w, accumulate=True)
        return m


def axis_table(n_src: int, n_dst: int, dst_indices, device=None) -> AxisTable:
    """The table of ``dst_indices`` (computed in float64 on the CPU, a few hundred numbers), on ``device``."""
    dst = torch.from_numpy(np.asarray(dst_indices, dtype=np.float64))
    src = (dst + 0.5) * (n_src / n_dst) - 0.5
    src = torch.clamp(src, min=0.0)
    i0 = torch.clamp(torch.floor(src).long(), max=n_src - 1)
    i1 = torch.clamp(i0 + 1, max=n_src - 1)
    w = (src - i0.double()).clamp(0.0, 1.0)
    w = torch.where(i1 == i0, torch.zeros_like(w), w)
    return AxisTable(i0.to(device), i1.to(device), w.float().to(device), int(n_src))


def interp_axis(t: torch.Tensor, axis: int, table: AxisTable) -> torch.Tensor:
    """Linear interpolation of ``t`` along ``axis`` at the table's target indices."""
    a = t.index_select(axis, table.i0)
    b = t.index_select(axis, table.i1)
    shape = [1] * t.dim()
    shape[axis] = -1
    return torch.lerp(a, b, table.w.view(shape))


OFFSETS = [(dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1)]
_CORNER_BITS = torch.tensor([[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in range(8)])


def _corner_pairs():
    """The 36 corner pairs (a <= b): indices, offset index into OFFSETS, and symmetry factor."""
    pa, pb, didx, factor = [], [], [], []
    for a in range(8):
        for b in range(a, 8):
            d = tuple(int(x) for x in (_CORNER_BITS[b] - _CORNER_BITS[a]))
            pa.append(a)
            pb.append(b)
            didx.append(OFFSETS.index(d))
            factor.append(1.0 if a == b else 2.0)
    return torch.tensor(pa), torch.tensor(pb), torch.tensor(didx), torch.tensor(factor)


_PAIRS = _corner_pairs()  # CPU constants; each level keeps a copy on its device


def _chunked_dot(a: torch.Tensor, b: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """Sum over the channel axis (0) of a * b, a few channels at a time."""
    out = None
    for c in range(0, a.shape[0], chunk):
        part = (a[c : c + chunk] * b[c : c + chunk]).sum(0)
        out = part if out is None else out.add_(part)
    assert out is not None  # a feature level has at least one channel
    return out


class LevelSimilarity:
    """One feature level prepared as a similarity target.

    Holds the level's features (C, n1, n2, n3) and the 27 neighbour Gram maps
    ``P_d(u) = <m(u), m(u + d)>`` that make the norm of the upsampled
    vectors exact on any lattice.
    """

    def __init__(self, level: FeatureLevel, target_shape, device=None):
        self.level = level
        self.feats = level.features.to(device).float()  # no copy when already float32 there
        self.device = self.feats.device
        self.src_shape = tuple(int(s) for s in self.feats.shape[1:])
        self.target_shape = tuple(int(s) for s in target_shape)
        self._gram: dict[tuple[int, ...], torch.Tensor] | None = None
        self._gram_stack: torch.Tensor | None = None
        self._full_tables: list[AxisTable] | None = None
        self._pairs: tuple[torch.Tensor, ...] | None = None

    @property
    def gram(self) -> dict:
        """Maps P_d(u) = <m(u), m(u + d)> for the 27 offsets d (0 where u + d is outside).

        Only 13 offsets are computed; P_{-d}(u) = P_d(u - d) is a shift of a
        scalar map. Channels are summed in chunks to bound temporaries.
        """
        if self._gram is None:
            f = self.feats
            n = tuple(f.shape[1:])
            stack = torch.zeros((len(OFFSETS), *n), device=self.device)  # one block; norm2_at gathers from it directly
            gram: dict[tuple[int, ...], torch.Tensor] = {d: stack[i] for i, d in enumerate(OFFSETS)}
            gram[(0, 0, 0)].copy_(_chunked_dot(f, f))
            for d in OFFSETS:
                if d <= (0, 0, 0):
                    continue
                src = tuple(slice(max(0, -dd), ni - max(0, dd)) for dd, ni in zip(d, n))
                dst = tuple(slice(max(0, dd), ni - max(0, -dd)) for dd, ni in zip(d, n))
                gram[d][src] = _chunked_dot(f[(slice(None),) + src], f[(slice(None),) + dst])
                gram[tuple(-dd for dd in d)][dst] = gram[d][src]
            self._gram, self._gram_stack = gram, stack
        return self._gram

    def tables(self, lattice) -> list[AxisTable]:
        return [axis_table(n, N, idx, self.device) for n, N, idx in zip(self.src_shape, self.target_shape, lattice)]

    def norm2(self, lattice) -> torch.Tensor:
        """|U(m)(v)|^2 on the lattice, exact, by separable passes over the Gram maps.

        Axes are contracted z, then y, then x, so that the largest pass
        gathers along the first (outermost, contiguous) dimension.
        """
        tx, ty, tz = self.tables(lattice)
        gram = self.gram
        q = {}
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                q[(dx, dy)] = _pair_pass(lambda dz, dx=dx, dy=dy: gram[(dx, dy, dz)], 2, tz)
        r = {}
        for dx in (-1, 0, 1):
            r[dx] = _pair_pass(lambda dy, dx=dx: q[(dx, dy)], 1, ty)
        out = _pair_pass(lambda dx: r[dx], 0, tx)
        return out.clamp_min(0.0)

    @property
    def full_tables(self) -> list[AxisTable]:
        if self._full_tables is None:
            self._full_tables = self.tables(full_lattice(self.target_shape))
        return self._full_tables

    def upsample_at(self, maps: torch.Tensor, rows: torch.Tensor, ijk: torch.Tensor) -> torch.Tensor:
        """Upsampled value of map ``rows[m]`` at integer target voxel ``ijk[m]`` (8-corner gather)."""
        parts = [(t.i0[ijk[:, a]], t.i1[ijk[:, a]], t.w[ijk[:, a]]) for a, t in enumerate(self.full_tables)]
        n1, n2, n3 = self.src_shape
        out = torch.zeros(ijk.shape[0], device=self.device)
        for corner in range(8):
            idx, wt = [], torch.ones(ijk.shape[0], device=self.device)
            for axis, (i0, i1, w) in enumerate(parts):
                bit = (corner >> (2 - axis)) & 1
                idx.append(i1 if bit else i0)
                wt = wt * (w if bit else 1 - w)
            flat = ((rows * n1 + idx[0]) * n2 + idx[1]) * n3 + idx[2]
            out += wt * maps.reshape(-1).index_select(0, flat)
        return out

    def norm2_at(self, ijk: torch.Tensor) -> torch.Tensor:
        """|U(m)(v)|^2 at integer target voxels (M, 3), from the Gram maps.

        Sum over the 8 x 8 pairs of cell corners (a, b) of w_a w_b P_{b-a}(a);
        by symmetry only the 36 pairs a <= b are read (off-diagonal ones
        twice), in one gather. Where a corner index is clamped at the border
        its weight is 0, so corner-bit differences serve as offsets.
        """
        if self._pairs is None:
            self._pairs = tuple(t.to(self.device) for t in (*_PAIRS, _CORNER_BITS))
        self.gram  # noqa: B018 - builds the stack on first use
        pa, pb, didx, factor, bits = self._pairs  # bits: (8, 3)
        parts = [(t.i0[ijk[:, a]], t.i1[ijk[:, a]], t.w[ijk[:, a]]) for a, t in enumerate(self.full_tables)]
        idx = [torch.where(bits[:, a, None].bool(), parts[a][1][None], parts[a][0][None]) for a in range(3)]  # (8, M)
        w = torch.ones(8, ijk.shape[0], device=self.device)
        for a in range(3):
            w = w * torch.where(bits[:, a, None].bool(), parts[a][2][None], 1 - parts[a][2][None])
        n1, n2, n3 = self.src_shape
        flat = ((didx[:, None] * n1 + idx[0][pa]) * n2 + idx[1][pa]) * n3 + idx[2][pa]  # (36, M)
        assert self._gram_stack is not None  # built by self.gram above
        vals = self._gram_stack.view(-1).index_select(0, flat.reshape(-1)).view(flat.shape)
        return (factor[:, None] * w[pa] * w[pb] * vals).sum(0).clamp_min(0.0)

    def upsample(self, maps: torch.Tensor, lattice, origin=None) -> torch.Tensor:
        """Upsample scalar maps (B, n1, n2, n3) onto the lattice: (B, |x|, |y|, |z|).

        Each axis is a small dense matrix product (two non-zero weights per
        row), which BLAS runs far faster than gathers; innermost axis first
        while the maps are small. With ``origin``, ``maps`` is a crop of the
        level starting at that source voxel (a local search's window).
        """
        tx, ty, tz = self.tables(lattice)
        if origin is not None:
            tx, ty, tz = (
                AxisTable(t.i0 - o, t.i1 - o, t.w, int(n)) for t, o, n in zip((tx, ty, tz), origin, maps.shape[1:])
            )
        b, n1, n2, _ = maps.shape
        out = maps @ tz.matrix().T  # (b, n1, n2, Nz)
        nz = out.shape[-1]
        out = ty.matrix() @ out.reshape(b * n1, n2, nz)  # (b*n1, Ny, Nz)
        ny = out.shape[1]
        out = tx.matrix() @ out.reshape(b, n1, ny * nz)  # (b, Nx, Ny*Nz)
        return out.reshape(b, -1, ny, nz)


def _pair_pass(get_map, axis: int, table: AxisTable) -> torch.Tensor:
    """Sum over corner pairs (a, a') along one axis of w_a w_a' P_{a'-a}(a).

    ``get_map(d)`` returns the partially contracted map for offset ``d`` along
    this axis; corners are ``i0`` (weight 1-w) and ``i1`` (weight w). Where
    ``i1 == i0`` (the border) ``w`` is 0 and the cross terms vanish, so the
    +1/-1 offset maps are read only where they are valid.
    """
    shape = [1] * 3
    shape[axis] = -1
    w = table.w.view(shape)
    p0 = get_map(0)
    a00 = p0.index_select(axis, table.i0)
    a11 = p0.index_select(axis, table.i1)
    cross = get_map(1).index_select(axis, table.i0) + get_map(-1).index_select(axis, table.i1)
    return (1 - w) ** 2 * a00 + w**2 * a11 + (w * (1 - w)) * cross


def _mean_cosine(parts) -> torch.Tensor:
    """The mean over levels of (upsampled dot map) x (1/norm), accumulated in place one level at a time, so
    that only one (B, lattice) map is alive. ``parts``: (upsampled dots, inverse norms) per level, lazily."""
    s, n = None, 0
    for part, inv in parts:
        s = part.mul_(inv) if s is None else s.addcmul_(part, inv.expand_as(part))
        n += 1
    assert s is not None  # a pyramid has at least one level
    return s.div_(n)


class SimilarityTarget:
    """A moving (target) pyramid ready to answer similarity queries on its grid.

    The target grid is the pyramid's own grid (the volume the levels
    describe); every level is axis-aligned with it by construction.
    """

    def __init__(self, pyramid: FeaturePyramid, levels=None, device=None):
        self.pyramid = pyramid.select(levels)
        self.grid: Grid = self.pyramid.grid
        self.shape = tuple(int(s) for s in self.grid.shape)
        self.device = torch.device(device) if device is not None else self.pyramid.levels[0].features.device
        self.levels = [LevelSimilarity(lv, self.shape, self.device) for lv in self.pyramid.levels]
        self._norm_cache: dict = {}

    @property
    def names(self) -> list[str]:
        return [lv.level.name for lv in self.levels]

    def inv_norm(self, li: int, lattice, key=None) -> torch.Tensor:
        """1/|U(m_l)| on the lattice (cached under ``key`` when given)."""
        if key is not None and (li, key) in self._norm_cache:
            return self._norm_cache[(li, key)]
        inv = self.levels[li].norm2(lattice).sqrt().clamp_min(EPS).reciprocal()
        if key is not None:
            self._norm_cache[(li, key)] = inv
        return inv

    def dot_maps(self, queries: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per level, <q_l/|q_l|, m_l> at native resolution: (B, n1, n2, n3)."""
        out = []
        for lv, q in zip(self.levels, queries):
            qn = q / q.norm(dim=1, keepdim=True).clamp_min(EPS)
            out.append(torch.einsum("bc,cxyz->bxyz", qn, lv.feats))
        return out

    def similarity(self, dots: list[torch.Tensor], lattice, inv_norms=None, norm_key=None) -> torch.Tensor:
        """Mean cosine similarity on the lattice: (B, |x|, |y|, |z|).

        ``inv_norms`` are the levels' 1/|U(m_l)| on this lattice when the caller keeps them (the
        matcher's coarse lattice, the full grid); otherwise they are computed (and cached under
        ``norm_key``). In place, one level at a time, so only one (B, lattice) map is alive.
        """
        return _mean_cosine(
            (lv.upsample(d, lattice), inv_norms[li] if inv_norms is not None else self.inv_norm(li, lattice, norm_key))
            for li, (lv, d) in enumerate(zip(self.levels, dots))
        )

    # --- a window of the target (local search) ----------------------------------------------------

    def window_dots(self, queries: list[torch.Tensor], box) -> list[tuple]:
        """Per level, the dot maps over only the source voxels that target voxels in ``box`` ([lo, hi)
        per axis) read, as ``(maps, origin)``: a local search never touches the rest of the level."""
        out = []
        for lv, q in zip(self.levels, queries):
            tabs = lv.tables([np.arange(a, b) for a, b in zip(*box)])
            lo = [int(t.i0.min()) for t in tabs]
            hi = [int(t.i1.max()) + 1 for t in tabs]
            crop = lv.feats[:, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
            qn = q / q.norm(dim=1, keepdim=True).clamp_min(EPS)
            out.append((torch.einsum("bc,cxyz->bxyz", qn, crop), tuple(lo)))
        return out

    def similarity_window(self, crops: list[tuple], lattice, inv_norms) -> torch.Tensor:
        """:meth:`similarity` on a lattice inside the window of ``crops`` (from :meth:`window_dots`),
        with the levels' 1/norms on that lattice; the same values, at the window's cost."""
        return _mean_cosine(
            (lv.upsample(maps, lattice, origin), inv) for lv, (maps, origin), inv in zip(self.levels, crops, inv_norms)
        )

    def paste(self, crops: list[tuple]) -> list[torch.Tensor]:
        """Full-size dot maps holding the windows (zero elsewhere), for the voxel-wise gathers of the
        refinement, which reads only voxels inside the window (the rest are outside the search ball)."""
        out = []
        for lv, (maps, lo) in zip(self.levels, crops):
            full = torch.zeros((maps.shape[0], *lv.src_shape), dtype=maps.dtype, device=maps.device)
            full[:, lo[0] : lo[0] + maps.shape[1], lo[1] : lo[1] + maps.shape[2], lo[2] : lo[2] + maps.shape[3]] = maps
            out.append(full)
        return out

    def similarity_at(self, dots: list[torch.Tensor], rows: torch.Tensor, ijk: torch.Tensor) -> torch.Tensor:
        """Exact similarity of query ``rows[m]`` at integer target voxels ``ijk[m]`` (M, 3): the same
        value as :meth:`similarity` there, from 8-corner gathers instead of a lattice."""
        total = torch.zeros(ijk.shape[0], device=self.device)
        for lv, d in zip(self.levels, dots):
            total += lv.upsample_at(d, rows, ijk) * lv.norm2_at(ijk).sqrt().clamp_min(EPS).reciprocal()
        return total / len(self.levels)

    def query_descriptors(self, source: FeaturePyramid, ras) -> list[torch.Tensor]:
        """Descriptors of world points in ``source``, per level of this target (same names), on this
        target's device (the fixed pyramid may live elsewhere: only these few vectors move)."""
        return [source.level(name).sample(ras).to(self.device) for name in self.names]


def full_lattice(shape) -> list[np.ndarray]:
    return [np.arange(n) for n in shape]


def strided_lattice(shape, stride: int, lo=None, hi=None) -> list[np.ndarray]:
    """Every ``stride``-th index in [lo, hi) per axis, always including the last one."""
    lo = [0] * 3 if lo is None else lo
    hi = list(shape) if hi is None else hi
    out = []
    for a, b in zip(lo, hi):
        idx = np.arange(a, b, stride)
        if len(idx) == 0 or idx[-1] != b - 1:
            idx = np.append(idx, b - 1)
        out.append(idx)
    return out
