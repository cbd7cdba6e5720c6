"""Registration of two scans when their features can be recomputed: turns are undone before descriptors.

Descriptors are computed along the voxel axes (MIND-SSC's neighbour pairs,
the CNN's kernels), so they change when the anatomy turns: sampling the
moving descriptors at pre-aligned positions moves them to the right place but
leaves them turned. On the repositioned phantom (a turn about S on top of a
shift and breathing) the turned descriptors give a clearly larger error than
features recomputed in the fixed scan's orientation (the README gives the figures).

So, when the pre-alignment turns by more than ``OBLIQUE_TOLERANCE_DEG``, the
moving scan is *re-described in the fixed frame*: its header (not its voxels)
is moved by the inverse pre-alignment, which makes it an oblique scan lying
over the fixed one, and the backbone's own oblique handling resamples it onto
RAS axes before describing it. A coarse global match underestimates a turn
(turned descriptors again), so the rigid part of the resulting dense field is
fitted (least-trimmed squares, which ignores the breathing half of the
motion) and the step is repeated while it still turns; the pre-alignment is
the composition of the steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from ..data.geometry import OBLIQUE_TOLERANCE_DEG, Volume, apply_affine
from ..evidence import checked_initial, prealign_evidence
from ..features.pyramid import FeaturePyramid
from ..runtime import Cancel, Progress, check_cancel, report
from .dense import RegistrationOptions, register
from .field import DenseField
from .mask import body_weights
from .prealign import least_trimmed, prealign, rotation_deg
from .rigid import refine_rigid

MAX_ROUNDS = 4
SETTLED_DEG = OBLIQUE_TOLERANCE_DEG  # a round that would turn by less than this ends the refinement


def rigid_part(field: DenseField, fixed: Volume, samples: int = 20000) -> np.ndarray:
    """The rigid transform that best explains the field in the fixed scan's solid tissue.

    Only voxels above -400 HU count: air outside the body has no features (the field
    there is only the smooth continuation of its surroundings) and the lungs breathe;
    least-trimmed squares then keeps the half of the rest that moves most rigidly.
    """
    from scipy import ndimage

    pts = field.grid.points().reshape(-1, 3)
    hu = ndimage.map_coordinates(
        np.asarray(fixed.array, dtype=np.float32), fixed.world_to_ijk(pts).T, order=1, mode="constant", cval=-1000.0
    )
    solid = pts[hu > -400.0]
    if len(solid) < 100:
        solid = pts
    src = solid[:: max(1, len(solid) // samples)]
    return least_trimmed(src, apply_affine(field.prealign, src + field.displacement_at(src)))


def in_fixed_frame(moving: Volume, a: np.ndarray) -> Volume:
    """The moving scan laid over the fixed one by ``a`` (fixed -> moving points): header only."""
    return Volume(moving.array, np.linalg.inv(a) @ moving.ijk_to_ras, moving.name, dict(moving.metadata))


def _round(pf, pm, features, moving: Volume, a: np.ndarray, opts, weights, progress, cancel, device) -> DenseField:
    """One registration at pre-alignment ``a``: when ``a`` turns, the moving scan is re-described in the
    fixed frame and the field composed with ``a``."""
    turned = rotation_deg(a) > OBLIQUE_TOLERANCE_DEG
    pm_k = features(in_fixed_frame(moving, a)) if turned else pm
    field = register(
        pf,
        pm_k,
        opts,
        initial=np.eye(4) if turned else a,
        progress=progress,
        cancel=cancel,
        device=device,
        weights=weights,
    )
    if turned:  # the field maps fixed points into the re-described scan: compose with a
        field = DenseField(a @ field.prealign, field.grid, field.u, field.info)
    return field


def register_volumes(
    fixed: Volume,
    moving: Volume,
    features: Callable[[Volume], FeaturePyramid],
    options: RegistrationOptions | None = None,
    initial: np.ndarray | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    device=None,
) -> DenseField:
    """Dense fixed -> moving map of two scans; ``features(volume)`` gives (cached) pyramids;
    ``device``: where to compute (default: the fixed pyramid's)."""
    opts = options or RegistrationOptions()
    initial = checked_initial(initial)  # before any work: an affine, invertible matrix that keeps an overlap
    given = None if initial is None else prealign_evidence(fixed, moving, initial, given=True)
    pf, pm = features(fixed), features(moving)
    pre: dict = {"prealign": opts.prealign}
    if initial is not None:
        a = np.asarray(initial, dtype=np.float64)
        pre["prealign_used"] = "given"
    elif opts.prealign == "none":
        a = np.eye(4)
        pre["prealign_used"] = "none"
    else:
        from .dense import registration_grid

        spacing = opts.prealign_spacing_mm or opts.control * float(registration_grid(pf, opts).spacing[0])
        report(progress, "pre-align", 0.0)
        a, pre = prealign(pf, pm, spacing, opts.prealign, opts.levels, device=device)
        if pre.get("prealign_used") == opts.prealign:  # a repositioning was found: its six parameters exactly
            a, pre["rigid_refinement"] = refine_rigid(fixed, moving, a)
    pre.update(given or prealign_evidence(fixed, moving, a, given=False))  # refused when no overlap
    weights = body_weights(fixed) if opts.body_mask else None
    rounds: list[dict] = []
    coarse = replace(opts, fine_iterations=0)  # a round that turns is seldom the last: no fine level yet
    # one round only when the transform is the user's, none, or already exact (the six-parameter fit)
    one_round = opts.prealign == "none" or initial is not None or pre.get("rigid_refinement", {}).get("used")
    for _ in range(MAX_ROUNDS):
        check_cancel(cancel)
        used = coarse if rotation_deg(a) > OBLIQUE_TOLERANCE_DEG and not one_round else opts
        field = _round(pf, pm, features, moving, a, used, weights, progress, cancel, device)
        rounds.append(
            {"rotation_deg": round(rotation_deg(a), 2), "translation_mm": [round(float(v), 2) for v in a[:3, 3]]}
        )
        if one_round:
            break
        residual = rigid_part(field, fixed) @ np.linalg.inv(a)  # what the field still turns, beyond a
        if rotation_deg(residual) <= SETTLED_DEG:
            break
        a = residual @ a
    if used is not opts:  # the last round ran without the fine level: run it again with it
        field = _round(pf, pm, features, moving, a, opts, weights, progress, cancel, device)
    field.info.update(pre)
    field.info["prealign_rounds"] = rounds
    return field
