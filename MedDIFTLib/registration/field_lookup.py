"""Scores of the dense field's positions: the paper's similarity in a small window, nothing more.

Once a pair's field is known, a landmark's match is the field's position ``phi(x)``: what remains
is to say how much to trust it. That needs the similarity around that position only, never a
search of the scan: the exact similarity (:class:`~MedDIFTLib.matching.similarity.SimilarityTarget`,
the same values as the point matcher's) on the box of target voxels within ``window`` mm of the
position, and the same back from the match into the fixed scan for the forward-backward check.
The cost of a click is then that of two boxes of a few thousand voxels, whatever the scan's size.

Per point: the argmax within the ball of ``window`` mm around the position (sub-voxel parabola, as
the matcher), its similarity (``similarity``), ``margin``, the peak over the best value farther
than half the window from it (how clearly the window has one peak; a flat window gives 0), and
``fb_error_mm``, the distance from the fixed point to the argmax, within the window around it, of
the match's descriptor in the fixed scan.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.geometry import apply_affine, as_points
from ..features.pyramid import FeaturePyramid
from ..matching.search import MatchResult
from ..matching.similarity import EPS, AxisTable, LevelSimilarity, SimilarityTarget, _pair_pass
from ..runtime import Cancel, Progress, check_cancel, report


class WindowArgmax:
    """The argmax of one pyramid's descriptors at given points within a ball around given centres,
    in another pyramid (the target)."""

    def __init__(self, source: FeaturePyramid, target: FeaturePyramid, levels, device=None):
        self.source = source
        self.target = SimilarityTarget(target, levels, device)
        self.grid = self.target.grid
        self.inv = np.linalg.inv(np.asarray(self.grid.ijk_to_ras, dtype=np.float64))
        self.spacing = np.linalg.norm(np.asarray(self.grid.ijk_to_ras)[:3, :3], axis=0)

    def box_similarity(self, query_ras: np.ndarray, centre_ras: np.ndarray, radius_mm: float):
        """Exact similarity of one query point on the target voxels of the box around ``centre_ras``
        (``radius_mm`` plus one voxel each side): (values (X, Y, Z), box lower corner)."""
        centre = apply_affine(self.inv, centre_ras[None])[0]
        half = np.ceil(radius_mm * np.linalg.norm(self.inv[:3, :3], axis=1)).astype(int) + 1
        shape = np.array(self.target.shape)
        lo = np.clip(np.floor(centre).astype(int) - half, 0, shape - 1)
        hi = np.clip(np.ceil(centre).astype(int) + half + 1, lo + 1, shape)
        qs = self.target.query_descriptors(self.source, query_ras[None])
        crops = self.target.window_dots(qs, (lo, hi))
        lattice = [np.arange(a, b) for a, b in zip(lo, hi)]
        total: float | torch.Tensor = 0.0
        for lv, (maps, origin) in zip(self.target.levels, crops):
            inv = _norm2_window(lv, lattice).sqrt().clamp_min(EPS).reciprocal()
            total = total + _upsample_window(lv, maps[0], lattice, origin) * inv
        return total / len(self.target.levels), lo

    def argmax(self, query_ras: np.ndarray, centre_ras: np.ndarray, radius_mm: float) -> tuple:
        """(argmax RAS, its voxel, peak similarity, margin) of one query within ``radius_mm`` of ``centre_ras``."""
        s, lo = self.box_similarity(query_ras, centre_ras, radius_mm)
        idx = np.stack(np.meshgrid(*[np.arange(n) for n in s.shape], indexing="ij"), -1) + lo
        ras = torch.from_numpy(apply_affine(np.asarray(self.grid.ijk_to_ras), idx.reshape(-1, 3)).reshape(idx.shape))
        dist = (ras - torch.from_numpy(np.asarray(centre_ras, dtype=np.float64))).norm(dim=-1).to(s.device)
        inside = dist <= radius_mm
        if not bool(inside.any()):  # the ball holds no voxel centre: its nearest voxel is the answer
            inside = dist <= dist.min()
        masked = torch.where(inside, s, torch.full_like(s, -float("inf")))
        flat = int(torch.argmax(masked))
        v = np.unravel_index(flat, s.shape)
        peak = float(s[v])
        far = (ras.to(s.device) - ras[v].to(s.device)).norm(dim=-1) > radius_mm / 2.0
        rest = torch.where(inside & far, s, torch.full_like(s, -float("inf"))).max()
        margin = peak - float(rest) if torch.isfinite(rest) else 0.0
        offs = _parabola(s, v)
        vox = np.asarray(v) + lo
        return apply_affine(np.asarray(self.grid.ijk_to_ras), (vox + offs)[None])[0], vox, peak, margin


def _upsample_window(lv: LevelSimilarity, crop: torch.Tensor, lattice, origin) -> torch.Tensor:
    """``lv.upsample`` of one dot map's crop (starting at source voxel ``origin``) onto a small lattice,
    one axis at a time by its two interpolation weights: the same trilinear values, without building
    interpolation matrices (whose products cost more than the box itself on a CPU)."""
    out = crop
    for axis, (t, o) in enumerate(zip(lv.tables(lattice), origin)):
        shape = [1, 1, 1]
        shape[axis] = -1
        a, b = out.index_select(axis, t.i0 - o), out.index_select(axis, t.i1 - o)
        out = a + t.w.view(shape) * (b - a)
    return out


def _norm2_window(lv: LevelSimilarity, lattice) -> torch.Tensor:
    """``lv.norm2(lattice)`` for a lattice inside a small box, from the Gram maps cropped to the source
    voxels the box reads: the same sums of the same values (each Gram map holds its neighbour's
    product, so a crop loses nothing), at the box's cost instead of whole level planes."""
    tabs = lv.tables(lattice)
    lo = [int(t.i0.min()) for t in tabs]
    hi = [int(t.i1.max()) + 1 for t in tabs]
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    gram = {d: m[crop] for d, m in lv.gram.items()}
    tx, ty, tz = (AxisTable(t.i0 - o, t.i1 - o, t.w, b - o) for t, o, b in zip(tabs, lo, hi))
    q = {
        (dx, dy): _pair_pass(lambda dz, dx=dx, dy=dy: gram[(dx, dy, dz)], 2, tz)
        for dx in (-1, 0, 1)
        for dy in (-1, 0, 1)
    }
    r = {dx: _pair_pass(lambda dy, dx=dx: q[(dx, dy)], 1, ty) for dx in (-1, 0, 1)}
    return _pair_pass(lambda dx: r[dx], 0, tx).clamp_min(0.0)


def _parabola(s: torch.Tensor, v) -> np.ndarray:
    """Per-axis parabola through the peak and its two neighbours (inside the box); offsets in [-0.5, 0.5]."""
    out = np.zeros(3)
    for a in range(3):
        if not 0 < v[a] < s.shape[a] - 1:
            continue
        lo_i, hi_i = list(v), list(v)
        lo_i[a] -= 1
        hi_i[a] += 1
        sm, s0, sp = float(s[tuple(lo_i)]), float(s[tuple(v)]), float(s[tuple(hi_i)])
        den = sm - 2 * s0 + sp
        if den < 0:
            out[a] = float(np.clip(0.5 * (sm - sp) / den, -0.5, 0.5))
    return out


class FieldScorer:
    """Scores (and, on request, moves) the field's positions of fixed points: :func:`score`'s
    forward and backward windows, their targets prepared once per pair."""

    def __init__(self, fixed: FeaturePyramid, moving: FeaturePyramid, levels=None, device=None):
        self.forward = WindowArgmax(fixed, moving, levels, device)
        self.backward = WindowArgmax(moving, fixed, levels, device)

    def score(
        self,
        pts,
        field_pts,
        window_mm: float,
        move: bool = False,
        forward_backward: bool = True,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
    ) -> MatchResult:
        """A :class:`~MedDIFTLib.matching.search.MatchResult` for fixed points ``pts`` whose field
        positions are ``field_pts``.

        Args:
            pts: fixed RAS points (N, 3).
            field_pts: their positions in the moving scan by the field (N, 3).
            window_mm: the radius of the window around each position.
            move: the argmax within the window is the match (else the field's position is).
            forward_backward: check each match back into the fixed scan (else ``fb_error_mm`` is NaN).
            progress: told ``("match", fraction)`` per point.
            cancel: checked between points.
        """
        pts, field_pts = as_points(pts), as_points(field_pts)
        n = len(pts)
        out, vox = np.zeros((n, 3)), np.zeros((n, 3), np.int64)
        sim, margin, fb, gap = (np.full(n, np.nan) for _ in range(4))
        for i in range(n):
            report(progress, "match", i / n)
            check_cancel(cancel)
            best, vox[i], sim[i], margin[i] = self.forward.argmax(pts[i], field_pts[i], window_mm)
            gap[i] = float(np.linalg.norm(best - field_pts[i]))
            out[i] = best if move else field_pts[i]
            if forward_backward:
                back = self.backward.argmax(out[i], pts[i], window_mm)[0]
                fb[i] = float(np.linalg.norm(back - pts[i]))
        report(progress, "match", 1.0)
        res = MatchResult(out, sim, margin, fb, vox, {"strategy": "field window"})
        res.argmax_gap_mm = gap
        res.confidence_factor = np.clip(1.0 - gap / window_mm, 0.0, 1.0)
        return res


__all__ = ["FieldScorer", "WindowArgmax"]
