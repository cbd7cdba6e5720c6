"""The whole job in one object: backbone, feature cache, matchers, heatmaps.

The CLI, the background worker and the Slicer module all drive a
:class:`MatchSession`, so there is exactly one implementation of "match these
landmarks between these two volumes". A session keeps the model and every
pyramid it computed in memory, which makes repeated (interactive) queries
cheap.

The session owns every cache of a run: the disk cache of pyramids, the pyramids
and matchers in memory, the input checks already done, and the :class:`SharedCaches` it hands to its backbone (MAISI's
VAE encodings and the weight files' digests), which sessions that differ only
in options may share (an ablation). A volume's digest is remembered by
:mod:`MedDIFTLib.data.digest` alone.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from .data.digest import volume_digest
from .data.geometry import Volume, require_inside, resample
from .data.points import PointSet
from .errors import InputError, WeightsError, opt, render
from .evidence import check_radius_resolution
from .features import create_backbone
from .features.base import Backbone
from .features.cache import FeatureCache, MemoryLRU, extract_cached
from .features.options import check_engine_options, resolve_device
from .features.pyramid import FeaturePyramid
from .matching.priors import DEFAULT_PRIOR, DENSE_CHECK_MM, identity_prior, resolve_prior
from .matching.search import Matcher, MatchResult
from .options import BackboneName, EngineOptions, MatchOptions, MindLevel, PriorKind, RegistrationOptions
from .runtime import Cancel, Progress, staged

if TYPE_CHECKING:
    from .features.maisi.backbone import MaisiBackbone

log = logging.getLogger(__name__)


@dataclass
class SharedCaches:
    """In-memory caches a session gives its backbone; sessions that differ only in options may share
    one (an ablation changes the timestep, not the VAE encoding of a volume)."""

    encodings: MemoryLRU = field(default_factory=lambda: MemoryLRU(8))  # MAISI VAE posteriors
    file_digests: dict = field(default_factory=dict)  # weight file (path, size, mtime) -> sha256


@dataclass
class MatchReport:
    """What a match returns: the matched points (same labels; ``similarity``, ``confidence``,
    ``margin``, ``fb_error_mm`` values) and the warnings about doubtful inputs (also logged)."""

    points: PointSet
    warnings: list = field(default_factory=list)


def resolve_backbone(opts: EngineOptions, shared: SharedCaches | None = None) -> tuple[Backbone, str]:
    """The backbone to use, and a plain sentence saying which and why. Its options are checked first
    (:func:`~MedDIFTLib.features.options.check_engine_options`), and an explicit ``maisi`` finds its
    weights before anything announces it."""
    name = opts.backbone
    if name == BackboneName.MAISI and not opts.random_init:
        from .features.maisi.weights import find_weights

        check_engine_options(opts, BackboneName.MAISI.value)
        find_weights(opts.weights_dir)
    if name == BackboneName.AUTO:
        from .features.maisi.weights import find_weights

        try:
            find_weights(opts.weights_dir)
            name = BackboneName.MAISI.value
        except WeightsError as err:
            name = BackboneName.MIND_SSC.value
            reason = str(err).split(";")[0]
            note = (
                f"{reason}; using the weight-free MIND-SSC descriptor instead. This is NOT the MedDIFT "
                "diffusion-feature method: install the weights (`meddift weights download`) to use it."
            )
            return _build(name, opts, shared), note
    bb = _build(name, opts, shared)
    note = (
        "MAISI v1 diffusion features (MedDIFT)"
        if name == BackboneName.MAISI
        else "weight-free MIND-SSC descriptor (not the diffusion-feature method)"
    )
    if name == BackboneName.MAISI:
        try:  # a lenient load is never silent: the CLI prints this note, the worker sends it to Slicer
            how = cast("MaisiBackbone", bb).load_note()  # the MAISI backbone, built just above
        except WeightsError:  # refused: the same error stops the first extraction, with the files named
            how = ""
        if how:
            note += f" (weights: {how})"
    return bb, note


def _build(name: str, opts: EngineOptions, shared: SharedCaches | None = None) -> Backbone:
    """The backbone ``name`` with the options that apply to it; its own class resolves ``device``
    (``auto``: an accelerator only for a backbone that wants one)."""
    check_engine_options(opts, name)
    if name == BackboneName.MAISI:
        shared = shared or SharedCaches()
        kw: dict[str, Any] = dict(
            weights_dir=opts.weights_dir,
            device=opts.device,
            timestep=opts.timestep,
            ensemble=opts.ensemble,
            latent=opts.latent,
            region=opts.region,
            seed=opts.seed,
            size_policy=opts.size_policy,
            random_init=opts.random_init,
            encodings=shared.encodings,
            file_digests=shared.file_digests,
        )
        if opts.levels:
            kw["levels"] = tuple(opts.levels)
        return create_backbone(BackboneName.MAISI.value, **kw)
    kw = {"device": opts.device}
    if opts.levels:
        kw["levels"] = tuple(opts.levels)
    return create_backbone(name, **kw)


@dataclass
class MatchSession:
    """Backbone + caches + matchers for any number of volumes."""

    engine: EngineOptions = field(default_factory=EngineOptions)
    matching: MatchOptions = field(default_factory=MatchOptions)
    shared: SharedCaches = field(default_factory=SharedCaches)
    registration: RegistrationOptions | None = None  # for prior="dense" (None: the defaults)

    def __post_init__(self) -> None:
        self.backbone, self.backbone_note = resolve_backbone(self.engine, self.shared)
        # options that do not apply to the backbone used: said once, when the session starts
        self.option_warnings = check_engine_options(self.engine, self.backbone.name)
        # where matching computes: the engine's device (auto: CUDA when there is one), whatever the backbone
        # used for the features; pyramids stay on the CPU (cache, memory) and each matcher moves its own
        self.match_device = resolve_device(self.engine.device)
        self.cache = FeatureCache(self.engine.cache_dir) if self.engine.use_cache else None
        self._pyramids: dict[str, FeaturePyramid] = {}
        # (digests) -> Matcher; (digests, "field scores") -> FieldScorer
        self._matchers: dict[tuple, Any] = {}
        self._checked: dict[str, list] = {}  # volume digest -> its warnings
        self._fields: dict[tuple, object] = {}  # (digests, registration options) -> DenseField
        self._reg_backbone: Backbone | None = None

    def with_matching(self, matching: MatchOptions) -> MatchSession:
        """The same backbone and in-memory features with other search options (ablations, retuning)."""
        other = copy.copy(self)
        other.matching, other._matchers = matching, {}
        return other

    def forget(self) -> None:
        """Drop the features kept in memory (sessions made by :meth:`with_matching` share them)."""
        self._pyramids.clear()
        self._matchers.clear()
        self._fields.clear()

    def describe(self) -> dict:
        """What runs, as a configure reply says it (worker and server alike): the backbone, its note,
        the option warnings (neutral templates, see :func:`~MedDIFTLib.errors.render`) and the device."""
        dev = getattr(self.backbone, "device", None)
        return {
            "backbone": self.backbone.name,
            "note": self.backbone_note,
            "warning_templates": list(self.option_warnings),
            "device": str(dev) if dev is not None else "cpu",
            "cuda_available": torch.cuda.is_available(),
        }

    # --- features ------------------------------------------------------------

    def check_inputs(
        self, fixed: Volume, moving: Volume, points: PointSet | None = None, local_search: bool = False
    ) -> list[str]:
        """Refuse unusable inputs (InputError) and return the warnings about doubtful ones."""
        from .data.checks import check_ct, check_labels, check_pair, check_voxel_sizes

        out = []
        for role, vol in (("fixed", fixed), ("moving", moving)):
            key = volume_digest(vol)
            if key not in self._checked:
                self._checked[key] = check_ct(vol, role)
            out += self._checked[key]
        out += check_pair(fixed, moving, local_search)
        if self.backbone.name == BackboneName.MIND_SSC:
            out += check_voxel_sizes(fixed, moving)
        if points is not None:
            out += check_labels(points)
        for w in out:
            log.warning(render(w))
        return out

    def features(
        self,
        volume: Volume,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
        backbone: Backbone | None = None,
    ) -> FeaturePyramid:
        """The volume's pyramid from the session's backbone (or ``backbone``), computed once: the session
        backbone's levels come from the registration's (:meth:`registration_backbone`), extracted once."""
        backbone = backbone or self.backbone
        key = self._pyramid_key(volume, backbone)
        if key not in self._pyramids:
            reg = self.registration_backbone() if backbone is self.backbone else backbone
            if reg is not backbone:
                pyramid = self.features(volume, progress, cancel, reg).select(backbone.level_names)
                pyramid.identity.update(backbone.identity())
            else:
                pyramid = extract_cached(backbone, volume, self.cache, progress, cancel)
            self._pyramids[key] = pyramid
        return self._pyramids[key]

    def _pyramid_key(self, volume: Volume, backbone: Backbone):
        return (
            volume_digest(volume) if backbone is self.backbone else (volume_digest(volume), repr(backbone.identity()))
        )

    def registration_backbone(self) -> Backbone:
        """The backbone whose pyramids dense registration uses: the session's own, except that the
        weight-free MIND-SSC gets its full-resolution level too. Point matching gains nothing from it
        (1.65 vs 1.67 mm on a phantom case) and its global search would cost more; registration does
        (phantom suite: 1.18 mm mean without it, 0.84 mm with it). Its pyramid holds the session's levels too."""
        bb = self.backbone
        finest = MindLevel.MIND1.value
        if bb.name == BackboneName.MIND_SSC and not self.engine.levels and finest not in bb.level_names:
            if self._reg_backbone is None:
                self._reg_backbone = create_backbone(
                    bb.name, levels=(finest,) + tuple(bb.level_names), device=self.engine.device
                )
            return self._reg_backbone
        return bb

    def matcher(
        self, fixed: Volume, moving: Volume, progress: Progress | None = None, cancel: Cancel | None = None
    ) -> Matcher:
        key = (volume_digest(fixed), volume_digest(moving))
        if key not in self._matchers:
            pf = self.features(fixed, staged(progress, "fixed"), cancel)
            pm = self.features(moving, staged(progress, "moving"), cancel)
            self._matchers[key] = Matcher(pf, pm, self.matching, device=self.match_device)
        return self._matchers[key]

    # --- the job -------------------------------------------------------------

    def match(
        self,
        fixed: Volume,
        moving: Volume,
        points: PointSet,
        prior: Any = None,
        mask: Volume | None = None,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
    ) -> MatchReport:
        """Matched points in the moving volume (same labels, with similarity and confidence values)
        and the warnings about doubtful inputs, as a :class:`MatchReport`.

        Points without a position (NaN) stay without one.

        Args:
            fixed, moving: the scans.
            points: landmarks on the fixed scan.
            prior: anything :func:`~MedDIFTLib.matching.priors.resolve_prior` takes: None (the default,
                :data:`~MedDIFTLib.matching.priors.DEFAULT_PRIOR`: the dense registration; with a mask, the
                paper's argmax), ``"none"`` (the paper's argmax: within the session's search radius of the
                same world point, global without one), ``"dense"``, ``"coarse"`` (the coarsest level
                first), a function of fixed RAS points, a 4x4 matrix, a transform file, or a resolved prior.
            mask: candidates only where this volume is > 0 (resampled onto the moving scan).
            progress, cancel: see :mod:`MedDIFTLib.runtime`.
        """
        if len(points) == 0:
            raise InputError("the landmark list is empty: place at least one point on the fixed volume")
        defined = points.defined
        if not defined.any():
            raise InputError("no landmark has a position: all points are undefined")
        pts = points.points[defined]
        assert points.labels is not None  # PointSet.__post_init__ sets the labels
        labels = [lb for lb, d in zip(points.labels, defined) if d]
        require_inside(fixed.grid, pts, what="landmarks", labels=labels)
        resolved = self._resolved_prior(prior, mask)
        # a window around the same world point: empty when the scans do not overlap
        local = resolved.kind == PriorKind.IDENTITY and self.matching.radius_mm is not None
        warnings = self.check_inputs(fixed, moving, points, local_search=local)
        if resolved.kind == PriorKind.DENSE:
            res = self._dense_match(fixed, moving, pts, progress, cancel)
        else:
            res = self._point_match(fixed, moving, pts, labels, resolved, mask, warnings, progress, cancel)
        matched = _matched_points(points, res, self.features(moving).grid)
        return MatchReport(matched, warnings)

    def _resolved_prior(self, prior: Any, mask: Volume | None):
        """The prior of a match, refused in words where it cannot work: the dense map unless "none" (the
        paper's argmax), and the argmax when a candidate mask restricts a point search."""
        prior = (DEFAULT_PRIOR if mask is None else PriorKind.NONE.value) if prior is None else prior
        resolved = resolve_prior(prior, self.matching.radius_mm)
        if mask is not None and resolved.kind == PriorKind.DENSE:
            raise InputError(
                "a candidate mask restricts the point search, and the dense prior does not search: "
                f"leave out the mask, or match by the paper's argmax ({opt('prior', 'none')})"
            )
        if resolved.needs_radius and self.matching.radius_mm is None:
            raise InputError(
                f"a prior needs a search radius ({opt('radius', 'MM')}): it only narrows a local "
                "search; give a radius, or leave the prior out for a global search"
            )
        return resolved

    def _point_match(self, fixed, moving, pts, labels, resolved, mask, warnings: list, progress, cancel):
        """The paper's argmax, global or around the prior's points (a prior field's coverage warnings are
        added to ``warnings``)."""
        matcher = self.matcher(fixed, moving, progress, cancel)
        prior_pts = None
        if resolved.kind == PriorKind.COARSE:
            prior_pts = self.coarse_prior(matcher, pts, cancel)
        elif resolved.fn is not None:
            prior_pts = resolved(pts)
            warnings += getattr(resolved.fn, "warnings", [])  # a prior field covering only some points
        mask_arr = matcher.mask_from_volume(mask) if mask is not None else None
        return matcher.match(pts, prior_ras=prior_pts, mask=mask_arr, progress=progress, cancel=cancel, labels=labels)

    def _dense_match(self, fixed: Volume, moving: Volume, pts: np.ndarray, progress, cancel):
        """Points from the dense field, scored (and, with an explicit radius, moved) by the paper's argmax.

        The field's position is the match unless the backbone says the argmax around it sharpens it
        (:attr:`~MedDIFTLib.features.base.Backbone.field_argmax`, decided there only); with a search
        radius the argmax within it is. The argmax within ``DENSE_CHECK_MM`` scores it (similarity,
        margin, ``argmax_gap_mm``): a lookup in a small window on the registration's own pyramids
        (:mod:`~MedDIFTLib.registration.field_lookup`), so once the field is known a click is cheap.
        """
        check_radius_resolution(self.matching.radius_mm, moving.grid.ijk_to_ras)  # before the registration
        field = self.register(fixed, moving, self.registration, progress=progress, cancel=cancel)
        window = self.matching.radius_mm or DENSE_CHECK_MM
        move = self.matching.radius_mm is not None or self.backbone.field_argmax
        return self._field_scorer(fixed, moving, progress, cancel).score(
            pts,
            field.map_points(pts),
            window,
            move=move,
            forward_backward=self.matching.forward_backward,
            progress=progress,
            cancel=cancel,
        )

    def _field_scorer(self, fixed: Volume, moving: Volume, progress, cancel):
        """The pair's :class:`~MedDIFTLib.registration.field_lookup.FieldScorer`, made once: the field's own
        pyramids, restricted to the levels point matching uses."""
        from .registration.field_lookup import FieldScorer

        key = (volume_digest(fixed), volume_digest(moving), "field scores")
        if key not in self._matchers:
            bb = self.registration_backbone()
            pf = self.features(fixed, staged(progress, "fixed"), cancel, bb)
            pm = self.features(moving, staged(progress, "moving"), cancel, bb)
            levels = self.matching.levels or [n for n in self.backbone.level_names if n in pf.names] or None
            self._matchers[key] = FieldScorer(pf, pm, levels, device=self.match_device)
        return self._matchers[key]

    def coarse_prior(self, matcher: Matcher, pts: np.ndarray, cancel: Cancel | None = None) -> np.ndarray:
        """Global match with the coarsest level only: a cheap prior for the full local search."""
        coarsest = min(matcher.target.levels, key=lambda lv: np.prod(lv.src_shape)).level.name
        own = matcher.options
        opts = MatchOptions(
            levels=[coarsest],
            forward_backward=False,
            subvoxel=False,
            coarse_stride=matcher.stride,
            memory_budget_mb=own.memory_budget_mb,
            strategy=own.strategy,
            upsampled_budget_mb=own.upsampled_budget_mb,
        )
        return Matcher(matcher.fixed, matcher.moving, opts, device=matcher.device).match(pts, cancel=cancel).points

    # --- dense correspondence ---------------------------------------------------

    def register(
        self,
        fixed: Volume,
        moving: Volume,
        options=None,
        initial: np.ndarray | None = None,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
    ):
        """The dense fixed -> moving map (:class:`~MedDIFTLib.registration.DenseField`), kept in memory
        per pair and options and in the session's disk cache (:mod:`~MedDIFTLib.registration.field_cache`):
        a pair reopened by another run, worker or server is not registered again."""
        from .registration import RegistrationOptions
        from .registration.field_cache import cached_field, field_key, store_field
        from .registration.volumes import register_volumes

        opts = options or RegistrationOptions()
        key = (
            volume_digest(fixed),
            volume_digest(moving),
            repr(opts),
            None if initial is None else np.round(np.asarray(initial, dtype=np.float64), 9).tobytes(),
        )
        if key not in self._fields:
            self.check_inputs(fixed, moving)
            bb = self.registration_backbone()
            disk_key = field_key(key[0], key[1], bb.identity(), opts, initial)
            field = cached_field(self.cache, disk_key)
            if field is not None and progress is not None:
                progress("registration (cached)", 1.0)
            elif field is None:
                feats = lambda vol: self.features(vol, staged(progress, "features"), cancel, bb)  # noqa: E731
                field = register_volumes(
                    fixed, moving, feats, opts, initial, progress, cancel, device=self.match_device
                )
                store_field(self.cache, disk_key, field)
            self._fields[key] = field
        return self._fields[key]

    def heatmap(self, fixed: Volume, moving: Volume, point_ras) -> Volume:
        """Similarity of one fixed point to every voxel, on the moving volume's own grid."""
        matcher = self.matcher(fixed, moving)
        require_inside(fixed.grid, np.atleast_2d(point_ras), what="heatmap point")
        hm = matcher.heatmap(point_ras)
        # the pyramid grid is the RAS-reoriented moving grid: same voxel centres, so order 0 is exact
        out = resample(hm, moving.grid, order=0, fill_value=0.0, dtype=np.float32)
        out.name = f"{moving.name or 'moving'} similarity"
        return out


def _matched_points(points: PointSet, res: MatchResult, moving_grid) -> PointSet:
    """The matches as a point set of every input row: the defined rows from ``res``, with their
    scores; rows without a position stay without one (NaN)."""
    defined, n = points.defined, len(points)
    out = np.full((n, 3), np.nan)
    out[defined] = res.points
    confidence, fb_flag = _checked_confidence(res, moving_grid)
    columns = [
        ("similarity", res.similarity),
        ("confidence", confidence),
        ("margin", res.margin),
        ("fb_error_mm", res.fb_error_mm),
        ("fb_flag", fb_flag),
    ]
    if res.argmax_gap_mm is not None:
        columns.append(("argmax_gap_mm", res.argmax_gap_mm))
    values = {}
    for name, arr in columns:
        full = np.full(n, np.nan)
        full[defined] = arr
        values[name] = full
    assert points.labels is not None  # PointSet.__post_init__ sets the labels
    return PointSet(out, list(points.labels), values, name=f"{points.name or 'landmarks'} matched")


def _checked_confidence(res, moving_grid) -> tuple[np.ndarray, np.ndarray]:
    """Confidence that says what similarity and margin alone do not: whether the match leads back.

    The margin (peak over the best candidate elsewhere, 0.1 or more is clear-cut) is scaled down
    as the forward-backward error grows, reaching zero at twice ``limit``; ``limit`` is two voxels
    of the moving scan, the scale at which matches are placed. ``fb_flag`` is 1 where the error
    passes ``limit`` (shown in every output), 0 where it does not, NaN where it was not checked.
    """
    limit = 2.0 * float(np.max(np.linalg.norm(np.asarray(moving_grid.ijk_to_ras)[:3, :3], axis=0)))
    base = np.asarray(res.confidence, dtype=np.float64)
    fb = np.asarray(res.fb_error_mm, dtype=np.float64)
    checked = np.isfinite(fb)
    factor = np.where(checked, np.clip(1.0 - fb / (2.0 * limit), 0.0, 1.0), 1.0)
    flag = np.where(checked, (fb > limit).astype(np.float64), np.nan)
    return base * factor, flag


__all__ = ["EngineOptions", "MatchSession", "MatchReport", "SharedCaches", "resolve_backbone", "identity_prior"]
