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

import numpy as np
import torch

from ..data.geometry import Grid, Volume, apply_affine, as_points, resample
from ..errors import InputError
from ..evidence import check_radius_resolution, require_finite_scores
from ..features.options import resolve_device
from ..features.pyramid import FeaturePyramid
from ..options import MatchOptions  # its home; importable here as before
from ..runtime import Cancel, Progress, check_cancel, report
from .priors import resolve_prior
from .refine import Allowed, refine, subvoxel
from .similarity import SimilarityTarget, full_lattice
from .strategy import NEG, MatchLattice, on_lattice, top_candidates


@dataclass
class MatchResult:
    """Matches in the moving volume (RAS mm), with their scores."""

    points: np.ndarray  # (N, 3) RAS mm
    similarity: np.ndarray  # (N,) peak mean cosine similarity
    margin: np.ndarray  # (N,) peak minus best candidate outside margin_radius_mm
    fb_error_mm: np.ndarray  # (N,) forward-backward error, NaN when not computed
    voxel: np.ndarray  # (N, 3) integer target voxel of the peak (moving pyramid grid)
    extra: dict = field(default_factory=dict)
    argmax_gap_mm: np.ndarray | None = None  # (N,) prior "dense": the field's position to the argmax
    confidence_factor: np.ndarray | None = None  # (N,) 0..1, prior "dense": lowered as that gap grows

    @property
    def confidence(self) -> np.ndarray:
        """A 0..1 summary: the margin, scaled (a margin of 0.1 or more is clear-cut), times the
        ``confidence_factor`` where one is set."""
        base = np.clip(self.margin / 0.1, 0.0, 1.0)
        return base if self.confidence_factor is None else base * self.confidence_factor


class Matcher:
    """Matches fixed-volume points into the moving volume.

    Holds the prepared moving target (its norm maps are computed once and
    reused), so interactive queries cost only their own dot products.
    ``device``: where to compute (``cpu``, ``cuda[:N]``, ``auto``, a torch device); default: where the
    moving pyramid's features are. An unusable one is refused in words before any work.
    """

    def __init__(self, fixed: FeaturePyramid, moving: FeaturePyramid, options: MatchOptions | None = None, device=None):
        self.options = options or MatchOptions()
        names = self.options.levels or [n for n in moving.names if n in fixed.names]
        missing = [n for n in names if n not in fixed.names or n not in moving.names]
        if missing or not names:
            raise InputError(
                f"feature levels {missing or names} are not in both pyramids "
                f"(fixed {fixed.names}, moving {moving.names})"
            )
        self.device = moving.levels[0].features.device if device is None else resolve_device(str(device))
        self.fixed, self.moving = fixed, moving
        self.target = SimilarityTarget(moving, names, self.device)
        self.grid: Grid = self.target.grid
        self._full_inv: list[torch.Tensor] | None = None
        self._lattice: MatchLattice | None = None
        self._backward: Matcher | None = None

    @property
    def stride(self) -> int:
        """Coarse lattice step: the option, or two samples per voxel of the finest level.

        The similarity varies on the scale of the finest level's voxels; a
        coarser lattice can step over a narrow peak and lose parity with the
        dense argmax (stride 1 is exact), so the step follows the finest level.
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
            self._lattice = MatchLattice(
                self.target, self.stride, self.options.strategy, self.options.upsampled_budget_mb
            )
        return self._lattice

    @property
    def full_inv_norms(self) -> list[torch.Tensor]:
        """1/|U(m_l)| on the full moving grid, per level (float32; computed for the first heatmap, then kept)."""
        if self._full_inv is None:
            lat = full_lattice(self.grid.shape)
            self._full_inv = [self.target.inv_norm(li, lat) for li in range(len(self.target.levels))]
        return self._full_inv

    # --- matching ----------------------------------------------------------------

    def match(
        self,
        points_ras,
        prior_ras=None,
        mask: np.ndarray | None = None,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
        forward_backward: bool | None = None,
        labels: list | None = None,
    ) -> MatchResult:
        """Match fixed-volume RAS points into the moving volume.

        Args:
            points_ras: (N, 3) fixed-volume points, RAS mm.
            prior_ras: (N, 3) moving-volume positions that centre a local search (``radius_mm``); default with a
                radius: the same world points.
            mask: boolean array on the moving pyramid's grid (see :meth:`mask_from_volume`): candidates outside
                it are never chosen.
            progress: called with (stage, fraction).
            cancel: polled between batches; raises :class:`~MedDIFTLib.errors.CancelledError` when set.
            forward_backward: match each match back (default: the options' ``forward_backward``).
            labels: point names, for errors in the user's terms.
        """
        search = self._search(points_ras, prior_ras, mask, labels)
        n = len(search.pts)
        res = MatchResult(
            np.zeros((n, 3)),
            np.full(n, np.nan),
            np.full(n, np.nan),
            np.full(n, np.nan),
            np.zeros((n, 3), np.int64),
            {"strategy": search.strategy},
        )  # strategy: see matching.strategy
        batch = self._batch_size(search)
        for start in range(0, n, batch):
            check_cancel(cancel)
            report(progress, "match", start / n)
            self._match_batch(search, slice(start, min(n, start + batch)), res)
        report(progress, "match", 1.0)
        require_finite_scores(res.similarity, search.pts, labels)
        do_fb = self.options.forward_backward if forward_backward is None else forward_backward
        if do_fb:
            self._forward_backward(search, res, progress, cancel)
        return res

    # --- the steps of a match ------------------------------------------------------

    def _search(self, points_ras, prior_ras, mask, labels) -> _Search:
        """Validation: points, priors and mask checked in the user's terms before any work."""
        pts = as_points(points_ras)
        n = len(pts)
        if n == 0:
            raise InputError("no points to match: the landmark list is empty")
        radius = self.options.radius_mm
        check_radius_resolution(radius, self.grid.ijk_to_ras)
        if prior_ras is None and radius is not None:
            prior_ras = resolve_prior(None, radius)(pts)  # the same world point
        prior = None if prior_ras is None else as_points(prior_ras)
        if prior is not None and len(prior) != n:
            raise InputError(f"{len(prior)} prior positions given for {n} points")
        search = _Search(pts, prior if radius is not None else None, self._mask_tensor(mask), labels)
        search.strategy = self._choose_strategy(search)
        return search

    def _mask_tensor(self, mask) -> torch.Tensor | None:
        if mask is None:
            return None
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != tuple(self.grid.shape):
            raise InputError(f"candidate mask has shape {mask.shape}, the moving grid is {tuple(self.grid.shape)}")
        if not mask.any():
            raise InputError("candidate mask is empty: no voxel of the moving volume is allowed")
        return torch.from_numpy(mask).to(self.device)

    def _choose_strategy(self, search: _Search) -> str:
        """The exact strategy for this call: by the lattice's cost estimate, on windows in a local search."""
        if search.prior is None:
            return self.lattice.choose(len(search.pts))
        window = self._window_positions(search.prior[0])[1]
        return self.lattice.choose(len(search.pts), [p.stop - p.start for p in window])

    def _batch_size(self, search: _Search) -> int:
        """Queries per batch: one window at a time in a local search, else as many whole-lattice maps as the
        memory budget holds."""
        return 1 if search.prior is not None else self._lattice_batch()

    def _lattice_batch(self) -> int:
        # a query's coarse map and about three temporaries of its size, in float32
        cells = int(np.prod(self.lattice.shape))
        return int(np.clip(self.options.memory_budget_mb * 2**20 // (16 * cells), 1, 64))

    def _match_batch(self, search: _Search, sl: slice, res: MatchResult) -> None:
        """Coarse scores, masks, the best candidates refined, margin and sub-voxel fit, written into ``res``."""
        qs = self.target.query_descriptors(self.fixed, search.pts[sl])
        dots, s, lat = self._coarse_scores(qs, search, sl)
        self._mask_scores(s, lat, search, sl)
        cand, pool_vals, pool_idx = top_candidates(s, self.options.top_k)
        allowed = self._allowed(search, sl)
        best_v, best_s = refine(self.target, dots, cand, lat, self.options.refine_radius, allowed)
        res.voxel[sl] = best_v.cpu().numpy()
        res.similarity[sl] = best_s.cpu().numpy()
        res.margin[sl] = self._margin(best_v, best_s, pool_vals, self.lattice.ras_of(pool_idx, lat)).cpu().numpy()
        offs = np.zeros((len(cand), 3))
        if self.options.subvoxel:
            offs = subvoxel(self.target, dots, best_v).cpu().numpy()
        res.points[sl] = apply_affine(self.grid.ijk_to_ras, res.voxel[sl] + offs)

    def _coarse_scores(self, qs, search: _Search, sl: slice) -> tuple:
        """Windowing: (dot maps, exact coarse scores (b, *cshape), the lattice axes they lie on). A local search
        scores only the window around its prior (its cost grows with the radius, not the scan); a global one
        the whole lattice."""
        if search.prior is None:
            dots = self.target.dot_maps(qs)
            return dots, self.lattice.scores(qs, dots, search.strategy), self.lattice.axes
        win, pos = self._window_positions(search.prior[sl.start])
        if min(p.stop - p.start for p in pos) <= 0:
            raise search.no_candidate(sl.start)
        crops = self.target.window_dots(qs, win)
        s = self.lattice.window_scores(qs, crops, pos, search.strategy)
        return self.target.paste(crops), s, [a[p] for a, p in zip(self.lattice.axes, pos)]

    def _mask_scores(self, s: torch.Tensor, lat, search: _Search, sl: slice) -> None:
        """Masks: lattice points outside the candidate mask or the search ball (plus the coarse slack) lose;
        a query left without any candidate is refused by name."""
        b, cshape = s.shape[0], tuple(s.shape[1:])
        if search.mask is not None:
            s.masked_fill_(~on_lattice(search.mask, lat).reshape(1, *cshape), NEG)
        if search.prior is not None:
            pr = torch.from_numpy(search.prior[sl].astype(np.float32)).to(self.device)
            ras = self.lattice.ras_grid(None if lat is self.lattice.axes else lat)
            assert self.options.radius_mm is not None  # a search keeps its prior only with a radius (_search)
            far_from_prior = torch.cdist(pr, ras) > self.options.radius_mm + self._coarse_slack()
            s.masked_fill_(far_from_prior.reshape(b, *cshape), NEG)
        none_left = ~torch.isfinite(s.reshape(b, -1).amax(dim=1))
        if none_left.any():
            raise search.no_candidate(int(torch.nonzero(none_left)[0]) + sl.start)

    def _forward_backward(self, search: _Search, res: MatchResult, progress, cancel) -> None:
        """Match the matches back into the fixed volume (centred on the query points in a local search) and
        record how far from their query points they land."""
        check_cancel(cancel)

        def back_progress(stage, frac):
            progress("match back (forward-backward check)", frac)

        back = self.backward().match(
            res.points,
            prior_ras=search.pts if search.prior is not None else None,
            forward_backward=False,
            cancel=cancel,
            progress=back_progress if progress is not None else None,
        )
        res.fb_error_mm[:] = np.linalg.norm(back.points - search.pts, axis=1)
        res.extra["fb_strategy"] = back.extra["strategy"]

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

    def backward(self) -> Matcher:
        """The matcher from moving back to fixed (same options), built once."""
        if self._backward is None:  # the same kind of matcher (a subclass's search both ways)
            self._backward = type(self)(self.moving, self.fixed, self.options, device=self.device)
        return self._backward

    def _window_positions(self, prior_ras) -> tuple:
        """The window of one prior position (:meth:`_window`) and the lattice points inside it, as one
        slice per axis (the lattice is sorted, so they are a box of it)."""
        win = self._window(prior_ras)
        pos = [
            slice(int(np.searchsorted(a, lo)), int(np.searchsorted(a, hi)))
            for a, lo, hi in zip(self.lattice.axes, win[0], win[1])
        ]
        return win, pos

    def _window(self, prior_ras) -> tuple:
        """Target-voxel box [lo, hi) holding every voxel within radius + slack of one prior position,
        plus a margin for the coarse neighbours, the hill-climbing windows and the sub-voxel fit."""
        inv = np.linalg.inv(self.grid.ijk_to_ras)
        centre = apply_affine(inv, np.asarray(prior_ras, float)[None])[0]
        assert self.options.radius_mm is not None  # windows are only for a search with a prior, so a radius
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

    def _allowed(self, search: _Search, sl: slice) -> Allowed:
        """Whether voxels may be matches of the batch ``sl``: inside the candidate mask and their query's ball."""

        def allowed(ijk: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            ok = torch.ones(ijk.shape[0], dtype=torch.bool, device=self.device)
            if search.mask is not None:
                ok &= search.mask[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
            if search.prior is not None:
                pr = torch.from_numpy(np.asarray(search.prior[sl], dtype=np.float64)).to(self.device)[rows]
                ok &= (self.lattice.world(ijk) - pr).norm(dim=1) <= self.options.radius_mm
            return ok

        return allowed

    # --- heatmaps ------------------------------------------------------------------

    def heatmap(self, point_ras) -> Volume:
        """Similarity of one fixed point to every moving voxel, as a volume on the moving pyramid grid."""
        qs = self.target.query_descriptors(self.fixed, as_points(point_ras)[:1])
        dots = self.target.dot_maps(qs)
        lattice = self.lattice
        arr: torch.Tensor | np.ndarray
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


@dataclass
class _Search:
    """One call's checked inputs, shared by the steps of :meth:`Matcher.match`."""

    pts: np.ndarray  # (N, 3) fixed RAS mm
    prior: np.ndarray | None  # (N, 3) moving RAS mm centring a local search; None: a global search
    mask: torch.Tensor | None  # candidate mask on the moving grid, on the matcher's device
    labels: list | None  # point names for errors
    strategy: str = ""  # the exact strategy that scores the coarse lattice

    def no_candidate(self, i: int) -> InputError:
        """The error for query ``i`` when the radius and mask leave it nothing to choose from."""
        name = f"point {self.labels[i]!r}" if self.labels is not None else f"point #{i}"
        return InputError(
            f"{name} at {np.round(self.pts[i], 2).tolist()} has no candidate voxel in the "
            "moving volume within the search radius and mask"
        )


__all__ = ["MatchOptions", "MatchResult", "Matcher"]
