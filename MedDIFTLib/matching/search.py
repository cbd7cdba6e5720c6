"""Point matching: argmax of MedDIFT similarity, coarse to fine, with priors and confidence.

For a batch of query points the similarity is evaluated exactly, by
:mod:`MedDIFTLib.matching.similarity` (the one owner of that maths), on a coarse lattice of the moving grid (every
``coarse_stride``-th voxel), the best ``top_k`` local maxima are refined by
hill-climbing on the full-resolution grid, and the winner gets a sub-voxel
parabola fit. Candidates can be limited to a ball around a prior position
(local search) and to a mask.

Confidence per match: the peak similarity, its margin over the best coarse
candidate farther than ``margin_radius_mm`` from the match, and the
forward-backward error (match the match back into the fixed volume).

The coarse values come from the cheaper of two exact strategies (:mod:`.strategy`). Everything runs
on the matcher's device (a GPU when the pyramids or the caller say so); results come back as numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from ..data.geometry import Grid, Volume, apply_affine, as_points, resample
from ..errors import InputError, opt
from ..evidence import check_radius_resolution, require_finite_scores
from ..features.options import resolve_device
from ..features.pyramid import FeaturePyramid
from ..runtime import Cancel, Progress, check_cancel, report
from .priors import resolve_prior, search_radius
from .similarity import SimilarityTarget, full_lattice
from .strategy import NEG, STRATEGIES, MatchLattice, on_lattice, top_candidates


@dataclass
class MatchOptions:
    """How to search. Defaults reproduce the global argmax of the paper."""

    levels: Optional[list] = None  # feature levels used (None: all in the pyramids)
    radius_mm: Optional[float] = None  # local search: only within this distance of the prior
    coarse_stride: Optional[int] = None  # coarse lattice step in target voxels; None: auto (see Matcher.stride)
    top_k: int = 8  # coarse local maxima refined at full resolution
    refine_radius: int = 1  # hill-climbing window half-size, voxels (climbs until a local maximum)
    subvoxel: bool = True  # parabola fit of the peak
    margin_radius_mm: float = 8.0  # "outside a small radius" for the margin
    forward_backward: bool = True
    memory_budget_mb: float = 64.0  # working memory for a batch of queries (sets the batch size)
    strategy: str = "auto"  # native | upsampled | auto (the cheaper estimate): see matching.strategy
    upsampled_budget_mb: float = 1024.0  # memory the upsampled strategy may keep per moving pyramid

    def __post_init__(self):
        self.radius_mm = search_radius(self.radius_mm)  # 0 or None: global; the rule is the priors' own
        for name, key in (("memory_budget_mb", "memory_budget"), ("upsampled_budget_mb", "upsampled_budget")):
            if not 0 < float(getattr(self, name)) < float("inf"):
                what = "the memory budget" if key == "memory_budget" else "the upsampled strategy's budget"
                raise InputError(f"{what} must be a positive number of MB, got {getattr(self, name)} ({opt(key)})")
        if self.strategy not in STRATEGIES:
            raise InputError(f"unknown matching strategy {self.strategy!r}: choose one of {', '.join(STRATEGIES)} "
                             f"({opt('match_strategy')})")
        for name in ("coarse_stride", "top_k"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                shown = opt(name) if name == "coarse_stride" else name
                raise InputError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)} ({shown})")


@dataclass
class MatchResult:
    """Matches in the moving volume (RAS mm), with their scores."""

    points: np.ndarray  # (N, 3) RAS mm
    similarity: np.ndarray  # (N,) peak mean cosine similarity
    margin: np.ndarray  # (N,) peak minus best candidate outside margin_radius_mm
    fb_error_mm: np.ndarray  # (N,) forward-backward error, NaN when not computed
    voxel: np.ndarray  # (N, 3) integer target voxel of the peak (moving pyramid grid)
    extra: dict = field(default_factory=dict)

    @property
    def confidence(self) -> np.ndarray:
        """A 0..1 summary: the margin, scaled (a margin of 0.1 or more is clear-cut)."""
        return np.clip(self.margin / 0.1, 0.0, 1.0)


class Matcher:
    """Matches fixed-volume points into the moving volume.

    Holds the prepared moving target (its norm maps are computed once and
    reused), so interactive queries cost only their own dot products.
    ``device``: where to compute (``cpu``, ``cuda[:N]``, ``auto``, a torch device); default: where the
    moving pyramid's features are. An unusable one is refused in words before any work.
    """

    def __init__(self, fixed: FeaturePyramid, moving: FeaturePyramid, options: Optional[MatchOptions] = None,
                 device=None):
        self.options = options or MatchOptions()
        names = self.options.levels or [n for n in moving.names if n in fixed.names]
        missing = [n for n in names if n not in fixed.names or n not in moving.names]
        if missing or not names:
            raise InputError(f"feature levels {missing or names} are not in both pyramids "
                             f"(fixed {fixed.names}, moving {moving.names})")
        self.device = moving.levels[0].features.device if device is None else resolve_device(str(device))
        self.fixed, self.moving = fixed, moving
        self.target = SimilarityTarget(moving, names, self.device)
        self.grid: Grid = self.target.grid
        self._full_inv = None
        self._lattice: Optional[MatchLattice] = None
        self._backward: Optional[Matcher] = None
        # a local search evaluates only each query's window; False: the whole coarse lattice, masked to the
        # ball (the former path, kept to show that both give the same matches: tests and bench_matching.py)
        self.windowed = True

    @property
    def stride(self) -> int:
        """Coarse lattice step: the option, or two samples per voxel of the finest level.

        The similarity varies on the scale of the finest level's voxels; a
        coarser lattice can step over a narrow peak (measured: random-weight
        MAISI features on a 48^3 volume lose 14% parity at stride 2 where the
        finest level has 1.5 target voxels per level voxel; stride 1 is exact).
        """
        if self.options.coarse_stride is not None:
            return int(self.options.coarse_stride)
        ratio = min(t / s for lv in self.target.levels for t, s in zip(lv.target_shape, lv.src_shape))
        return max(1, int(ratio / 2 + 0.5))

    # --- cached lattices -----------------------------------------------------

    @property
    def lattice(self) -> MatchLattice:
        """The coarse lattice and what its strategies keep (each computed on first use)."""
        if self._lattice is None:
            self._lattice = MatchLattice(self.target, self.stride, self.options.strategy,
                                         self.options.upsampled_budget_mb)
        return self._lattice

    @property
    def full_inv_norms(self) -> list[torch.Tensor]:
        """1/|U(m_l)| on the full moving grid, per level (float32; computed for the first heatmap, then kept)."""
        if self._full_inv is None:
            lat = full_lattice(self.grid.shape)
            self._full_inv = [self.target.inv_norm(li, lat) for li in range(len(self.target.levels))]
        return self._full_inv

    # --- matching ----------------------------------------------------------------

    def match(self, points_ras, prior_ras=None, mask: Optional[np.ndarray] = None,
              progress: Optional[Progress] = None, cancel: Optional[Cancel] = None,
              forward_backward: Optional[bool] = None, labels: Optional[list] = None) -> MatchResult:
        """Match fixed-volume RAS points; ``prior_ras`` (N, 3) centres local search.

        ``mask`` is a boolean array on the moving pyramid's grid (see
        :meth:`mask_from_volume`): candidates outside it are never chosen.
        """
        pts = as_points(points_ras)
        n = len(pts)
        if n == 0:
            raise InputError("no points to match: the landmark list is empty")
        opts = self.options
        check_radius_resolution(opts.radius_mm, self.grid.ijk_to_ras)
        if prior_ras is None and opts.radius_mm is not None:
            prior_ras = resolve_prior(None, opts.radius_mm)(pts)  # the same world point
        prior = None if prior_ras is None else as_points(prior_ras)
        if prior is not None and len(prior) != n:
            raise InputError(f"{len(prior)} prior positions given for {n} points")
        mask_t = None
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != tuple(self.grid.shape):
                raise InputError(f"candidate mask has shape {mask.shape}, the moving grid is {tuple(self.grid.shape)}")
            if not mask.any():
                raise InputError("candidate mask is empty: no voxel of the moving volume is allowed")
            mask_t = torch.from_numpy(mask).to(self.device)

        out_vox = np.zeros((n, 3), np.int64)
        out_pts = np.zeros((n, 3))
        sim = np.full(n, np.nan)
        margin = np.full(n, np.nan)
        lattice = self.lattice
        lat = lattice.axes
        local = prior is not None and opts.radius_mm is not None
        windowed = local and self.windowed
        strategy = lattice.choose(n, [p.stop - p.start for p in self._window_positions(prior[0])[1]]
                                  if windowed else None)
        # a query's coarse map and about three temporaries of its size, in float32
        batch = 1 if windowed else int(np.clip(opts.memory_budget_mb * 2**20 // (16 * int(np.prod(lattice.shape))),
                                             1, 64))
        for start in range(0, n, batch):
            check_cancel(cancel)
            report(progress, "match", start / n)
            sl = slice(start, min(n, start + batch))
            qs = self.target.query_descriptors(self.fixed, pts[sl])
            if windowed:  # only the window around the prior: its cost grows with the radius, not the scan
                win, pos = self._window_positions(prior[start])
                if min(p.stop - p.start for p in pos) <= 0:
                    raise InputError(f"point #{start} at {np.round(pts[start], 2).tolist()} has no candidate voxel "
                                     "in the moving volume within the search radius and mask")
                use_lat = [a[p] for a, p in zip(lat, pos)]
                crops = self.target.window_dots(qs, win)
                s = lattice.window_scores(qs, crops, pos, strategy)
                dots = self.target.paste(crops)
            else:
                dots = self.target.dot_maps(qs)
                s = lattice.scores(qs, dots, strategy)  # (b, *cshape), exact values
                use_lat = lat
            b = s.shape[0]
            cshape = tuple(s.shape[1:])
            if mask_t is not None:
                s.masked_fill_(~on_lattice(mask_t, use_lat).reshape(1, *cshape), NEG)
            if local:
                pr = torch.from_numpy(prior[sl].astype(np.float32)).to(self.device)
                ras = lattice.ras_grid(None if use_lat is lat else use_lat)
                far_from_prior = torch.cdist(pr, ras) > opts.radius_mm + self._coarse_slack()
                s.masked_fill_(far_from_prior.reshape(b, *cshape), NEG)
            none_left = ~torch.isfinite(s.reshape(b, -1).amax(dim=1))
            if none_left.any():
                bad = int(torch.nonzero(none_left)[0]) + start
                name = f"point {labels[bad]!r}" if labels is not None else f"point #{bad}"
                raise InputError(f"{name} at {np.round(pts[bad], 2).tolist()} has no candidate voxel in the "
                                 f"moving volume within the search radius and mask")
            cand, pool_vals, pool_idx = top_candidates(s, opts.top_k)
            best_v, best_s = self._refine(dots, cand, use_lat, sl, prior, mask_t)
            out_vox[sl] = best_v.cpu().numpy()
            sim[sl] = best_s.cpu().numpy()
            pool_ras = lattice.ras_of(pool_idx, use_lat)
            margin[sl] = self._margin(best_v, best_s, pool_vals, pool_ras).cpu().numpy()
            offs = self._subvoxel(dots, best_v, mask_t).cpu().numpy() if opts.subvoxel else np.zeros((b, 3))
            out_pts[sl] = apply_affine(self.grid.ijk_to_ras, out_vox[sl] + offs)
        report(progress, "match", 1.0)
        require_finite_scores(sim, pts, labels)

        fb = np.full(n, np.nan)
        extra = {"strategy": strategy}  # which exact strategy scored the coarse lattice (matching.strategy)
        do_fb = opts.forward_backward if forward_backward is None else forward_backward
        if do_fb:
            check_cancel(cancel)
            back = self.backward()
            back_prior = pts if (prior is not None and opts.radius_mm is not None) else None
            back_progress = (lambda stage, frac: progress("match back (forward-backward check)", frac)) if progress else None
            back_res = back.match(out_pts, prior_ras=back_prior, forward_backward=False, cancel=cancel,
                                  progress=back_progress)
            fb = np.linalg.norm(back_res.points - pts, axis=1)
            extra["fb_strategy"] = back_res.extra["strategy"]
        return MatchResult(out_pts, sim, margin, fb, out_vox, extra)

    def _margin(self, best_v, best_s, pool_vals, pool_ras) -> torch.Tensor:
        """Peak minus the best coarse candidate farther than ``margin_radius_mm`` from the match.

        Candidates come from the pool of highest coarse values (``pool_ras``: their positions); when
        all of them are near the match, the lowest pool value bounds the rest, so the margin
        returned is a lower bound (conservative).
        """
        match_ras = self.lattice.world(best_v).float()
        dist = (pool_ras - match_ras[:, None]).norm(dim=-1)  # (b, pool)
        far = (dist > self.options.margin_radius_mm) & torch.isfinite(pool_vals)
        other = torch.where(far, pool_vals, torch.full_like(pool_vals, NEG)).amax(dim=1)
        fallback = torch.where(torch.isfinite(pool_vals[:, -1]), pool_vals[:, -1], best_s)
        other = torch.where(torch.isfinite(other), other, fallback)
        return best_s - other

    def backward(self) -> "Matcher":
        """The matcher from moving back to fixed (same options), built once."""
        if self._backward is None:
            self._backward = Matcher(self.moving, self.fixed, self.options, device=self.device)
            self._backward.windowed = self.windowed
        return self._backward

    def _window_positions(self, prior_ras) -> tuple:
        """The window of one prior position (:meth:`_window`) and the lattice points inside it, as one
        slice per axis (the lattice is sorted, so they are a box of it)."""
        win = self._window(prior_ras)
        pos = [slice(int(np.searchsorted(a, lo)), int(np.searchsorted(a, hi))) for a, lo, hi in
               zip(self.lattice.axes, win[0], win[1])]
        return win, pos

    def _window(self, prior_ras) -> tuple:
        """Target-voxel box [lo, hi) holding every voxel within radius + slack of one prior position,
        plus a margin for the coarse neighbours, the hill-climbing windows and the sub-voxel fit."""
        inv = np.linalg.inv(self.grid.ijk_to_ras)
        centre = apply_affine(inv, np.asarray(prior_ras, float)[None])[0]
        half = (self.options.radius_mm + self._coarse_slack()) * np.linalg.norm(inv[:3, :3], axis=1)
        margin = self.stride + 2 * self.options.refine_radius + 2
        shape = np.array(self.grid.shape)
        lo = np.clip(np.floor(centre - half).astype(int) - margin, 0, shape)
        hi = np.clip(np.ceil(centre + half).astype(int) + margin + 1, 0, shape)
        return lo, hi

    def _coarse_slack(self) -> float:
        """Half a coarse cell diagonal: coarse candidates a little outside the ball may lead inside."""
        sp = np.linalg.norm(self.grid.ijk_to_ras[:3, :3], axis=0) * self.stride
        return float(np.linalg.norm(sp) / 2)

    def _allowed(self, ijk: torch.Tensor, rows: torch.Tensor, sl: slice, prior, mask_t) -> torch.Tensor:
        ok = torch.ones(ijk.shape[0], dtype=torch.bool, device=self.device)
        if mask_t is not None:
            ok &= mask_t[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
        if prior is not None and self.options.radius_mm is not None:
            pr = torch.from_numpy(np.asarray(prior[sl], dtype=np.float64)).to(self.device)[rows]
            ok &= (self.lattice.world(ijk) - pr).norm(dim=1) <= self.options.radius_mm
        return ok

    def _refine(self, dots, cand, lat, sl, prior, mask_t):
        """Hill-climb every coarse candidate at full resolution, keep the best per query,
        then climb that one again with a window twice as wide (steps over tiny bumps)."""
        b, k = cand.shape
        # flat coarse index -> target voxel, without materialising the whole lattice
        ny, nz = len(lat[1]), len(lat[2])
        c = cand.clamp_min(0)
        axes = [torch.from_numpy(np.asarray(a)).to(self.device) for a in lat]
        start = torch.stack([axes[0][c // (ny * nz)], axes[1][(c // nz) % ny], axes[2][c % nz]], -1)
        centers, best_s = self._climb(dots, start, cand >= 0, self.options.refine_radius, sl, prior, mask_t)
        pick = best_s.argmax(dim=1)
        rows = torch.arange(b, device=self.device)
        centers, best_s = self._climb(dots, centers[rows, pick][:, None],
                                      torch.ones(b, 1, dtype=torch.bool, device=self.device),
                                      2 * self.options.refine_radius, sl, prior, mask_t)
        return centers[:, 0], best_s[:, 0]

    def _climb(self, dots, centers, alive, radius, sl, prior, mask_t):
        """Move each (query, candidate) centre to the best voxel of its window until none moves."""
        b, k = centers.shape[:2]
        dev = self.device
        shape = torch.tensor(self.grid.shape, device=dev)
        rows = torch.arange(b, device=dev)[:, None].expand(b, k)
        step = torch.arange(-radius, radius + 1, device=dev)
        win = torch.stack(torch.meshgrid(step, step, step, indexing="ij"), -1).reshape(-1, 3)
        best_s = torch.full((b, k), NEG, device=dev)
        for _ in range(64):
            pts = (centers[:, :, None, :] + win[None, None]).clamp(min=torch.zeros_like(shape), max=shape - 1)
            flat_pts = pts.reshape(-1, 3)
            flat_rows = rows[:, :, None].expand(b, k, win.shape[0]).reshape(-1)
            vals = self.target.similarity_at(dots, flat_rows, flat_pts)
            vals = vals.masked_fill(~self._allowed(flat_pts, flat_rows, sl, prior, mask_t), NEG).reshape(b, k, -1)
            vbest, arg = vals.max(dim=2)
            new_centers = torch.gather(pts, 2, arg[:, :, None, None].expand(b, k, 1, 3))[:, :, 0]
            moved = (new_centers != centers).any(-1) & alive & (vbest > best_s)
            best_s = torch.where(alive, torch.maximum(best_s, vbest), best_s)
            centers = torch.where(moved[..., None], new_centers, centers)
            if not moved.any():
                break
        return centers, best_s

    def _subvoxel(self, dots, vox, mask_t) -> torch.Tensor:
        """Per-axis parabola through the peak and its two neighbours; offsets in [-0.5, 0.5]."""
        b = vox.shape[0]
        shape = torch.tensor(self.grid.shape, device=self.device)
        steps = _STEPS.to(self.device)  # centre, +x,+y,+z, -x,-y,-z
        pts = vox[:, None, :] + steps[None]  # (b, 7, 3)
        inside = ((pts >= 0) & (pts < shape)).all(-1)
        pts = torch.minimum(pts.clamp_min(0), shape - 1)
        rows = torch.arange(b, device=self.device)[:, None].expand(b, 7)
        vals = self.target.similarity_at(dots, rows.reshape(-1), pts.reshape(-1, 3)).reshape(b, 7)
        s0, sp, sm = vals[:, :1], vals[:, 1:4], vals[:, 4:7]
        den = sm - 2 * s0 + sp
        ok = (den < 0) & inside[:, 1:4] & inside[:, 4:7]
        off = torch.where(ok, 0.5 * (sm - sp) / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(den))
        return off.clamp(-0.5, 0.5)

    # --- heatmaps ------------------------------------------------------------------

    def heatmap(self, point_ras) -> Volume:
        """Similarity of one fixed point to every moving voxel, as a volume on the moving pyramid grid."""
        qs = self.target.query_descriptors(self.fixed, as_points(point_ras)[:1])
        dots = self.target.dot_maps(qs)
        lattice = self.lattice
        if lattice.shape == tuple(self.grid.shape):  # stride 1: the lattice is the grid, and what it keeps serves
            arr = lattice.scores(qs, dots, lattice.choose(1))[0]
        else:
            arr = self.target.similarity(dots, full_lattice(self.grid.shape), self.full_inv_norms)[0]
        arr = arr.cpu().numpy().astype(np.float32)
        return Volume(arr, self.grid.ijk_to_ras.copy(), "similarity")

    def mask_from_volume(self, mask: Volume) -> np.ndarray:
        """A label/mask volume (any geometry) as a boolean candidate mask on the moving grid."""
        res = resample(mask, self.grid, order=0, fill_value=0)
        return np.asarray(res.array) > 0


_STEPS = torch.tensor([(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (-1, 0, 0), (0, -1, 0), (0, 0, -1)])


__all__ = ["MatchOptions", "MatchResult", "Matcher"]
