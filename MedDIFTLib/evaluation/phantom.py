"""A CT-like thorax phantom with an exact, invertible breathing motion.

Every accuracy test and benchmark needs a ground truth to sub-voxel
precision; real scan pairs here have none. The phantom is defined
analytically in world (RAS mm) coordinates, so it can be rendered at any size
and spacing, and the moving scan is rendered *exactly* as the fixed anatomy
pulled back through the motion (no interpolation of the fixed image):

    moving(y) = a * anatomy(phi^-1(y)) + b + noise,

where ``phi`` (fixed -> moving points) is smooth with a positive Jacobian.
The lungs get denser where they shrink (mass is conserved: HU + 1000 scales
with 1/det(D phi)).

Anatomy: air, body with fat and muscle, two lungs at about -850 HU with
branching vessel trees (+40 HU) and airway trees (air lumen, soft wall),
heart and mediastinum, aorta, vertebral bodies with discs, ribs, and optional
spherical lesions. Distinctive landmarks are the vessel bifurcations and the
lesion centres, not random voxels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data.geometry import Grid, Volume, apply_affine, as_points, make_ijk_to_ras
from ..data.points import PointSet
from ..errors import InputError
from .body import BODY_AXES, BODY_CENTRE_Y, HEART, LUNG_AXES, LUNG_CENTRES, SPINE_XY, ellipsoid_depth
from .motion import BreathingMotion, Motion

HU = {
    "air": -1000.0,
    "fat": -100.0,
    "muscle": 40.0,
    "lung": -850.0,
    "vessel": 40.0,
    "airway_wall": -80.0,
    "heart": 45.0,
    "mediastinum": 20.0,
    "aorta": 50.0,
    "bone": 700.0,
    "cancellous": 250.0,
    "disc": 80.0,
    "lesion": 30.0,
}


@dataclass
class Capsule:
    """A tube segment from ``a`` to ``b`` with radius ``r`` (mm)."""

    a: np.ndarray
    b: np.ndarray
    r: float
    kind: str  # vessel | airway | rib


@dataclass
class ThoraxAnatomy:
    """The analytic phantom: tubes, lesions and their distinctive points."""

    capsules: list
    bifurcations: np.ndarray  # (M, 3) vessel branch points, RAS mm
    bifurcation_radius: np.ndarray  # (M,) radius of the parent vessel there
    lesions: np.ndarray  # (L, 3) centres
    lesion_radii: np.ndarray  # (L,)
    seed: int = 0

    # --- rendering -------------------------------------------------------------

    def render(self, pts: np.ndarray, soft_mm: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
        """HU and lung-mask at world points (N, 3). Edges are blended over ``soft_mm``."""
        pts = np.asarray(pts, dtype=np.float64)
        x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
        hu = np.full(len(pts), HU["air"], dtype=np.float32)

        def paint(inside_depth, value):
            """Blend ``value`` where the signed depth (mm inside the shape) is > 0."""
            w = np.clip(inside_depth / soft_mm + 0.5, 0.0, 1.0).astype(np.float32)
            np.multiply(hu, 1 - w, out=hu)
            hu[:] += w * value

        body_r = np.sqrt((x / BODY_AXES[0]) ** 2 + ((y - BODY_CENTRE_Y) / BODY_AXES[1]) ** 2)
        scale = min(BODY_AXES)
        paint((1.0 - body_r) * scale, HU["fat"])
        paint((0.93 - body_r) * scale, HU["muscle"])
        lung_depth = np.full(len(pts), -np.inf)
        for c in LUNG_CENTRES:
            d = ellipsoid_depth(pts, c, LUNG_AXES)
            lung_depth = np.maximum(lung_depth, d)
        heart_depth = ellipsoid_depth(pts, *HEART)
        medi_depth = np.minimum(20.0 - np.abs(x + 2.0), np.minimum(y + 30.0, 75.0 - y))
        medi_depth = np.minimum(medi_depth, 110.0 - z)
        lung_depth = np.minimum(lung_depth, np.minimum(-heart_depth, -medi_depth) - 3.0)
        paint(lung_depth, HU["lung"])
        paint(medi_depth, HU["mediastinum"])
        paint(heart_depth, HU["heart"])
        # aorta: ascending arch approximated by a vertical tube behind the heart
        paint(14.0 - np.hypot(x + 20.0, y + 35.0), HU["aorta"])
        # spine: vertebral bodies (cortical rim, cancellous core) separated by discs every 32 mm
        rs = np.hypot(x - SPINE_XY[0], y - SPINE_XY[1])
        level = np.mod(z + 200.0, 32.0)
        disc = np.minimum(level, 32.0 - level) - 3.0  # > 0 inside a vertebral body
        paint(np.minimum(20.0 - rs, disc), HU["bone"])
        paint(np.minimum(16.5 - rs, disc - 1.5), HU["cancellous"])
        paint(np.minimum(20.0 - rs, -disc), HU["disc"])
        lung = lung_depth > 0
        # tubes (vessels, airways, ribs) and lesions, each only where it can reach
        index = _PointIndex(pts, cell=24.0)
        for cap in self.capsules:
            sel = index.near(
                np.minimum(cap.a, cap.b) - cap.r - 2 * soft_mm, np.maximum(cap.a, cap.b) + cap.r + 2 * soft_mm
            )
            if sel.size == 0:
                continue
            d = _segment_distance(pts[sel], cap.a, cap.b)
            sub = hu[sel]
            if cap.kind == "airway":
                _paint_sub(sub, cap.r - d, HU["airway_wall"], soft_mm)
                _paint_sub(sub, 0.6 * cap.r - d, HU["air"], soft_mm)
            else:
                _paint_sub(sub, cap.r - d, HU["vessel"] if cap.kind == "vessel" else HU["bone"], soft_mm)
            hu[sel] = sub
        for c, r in zip(self.lesions, self.lesion_radii):
            sel = index.near(c - r - 2, c + r + 2)
            if sel.size:
                sub = hu[sel]
                _paint_sub(sub, r - np.linalg.norm(pts[sel] - c, axis=1), HU["lesion"], soft_mm)
                hu[sel] = sub
        return hu, lung

    def lung_depth(self, pts) -> np.ndarray:
        """Signed depth (mm) inside the lungs, as used for the lung mask."""
        pts = as_points(pts)
        d = np.maximum(*[ellipsoid_depth(pts, c, LUNG_AXES) for c in LUNG_CENTRES])
        x, y, z = pts.T
        medi = np.minimum(np.minimum(20.0 - np.abs(x + 2.0), np.minimum(y + 30.0, 75.0 - y)), 110.0 - z)
        return np.minimum(d, np.minimum(-ellipsoid_depth(pts, *HEART), -medi) - 3.0)

    def vessel_distance(self, pts) -> np.ndarray:
        """Distance (mm) from points to the nearest vessel centreline."""
        pts = as_points(pts)
        out = np.full(len(pts), np.inf)
        for cap in self.capsules:
            if cap.kind == "vessel":
                out = np.minimum(out, _segment_distance(pts, cap.a, cap.b))
        return out


def _paint_sub(sub, depth, value, soft_mm):
    w = np.clip(depth / soft_mm + 0.5, 0.0, 1.0).astype(np.float32)
    sub *= 1 - w
    sub += w * value


def _segment_distance(p, a, b) -> np.ndarray:
    ab = b - a
    t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


class _PointIndex:
    """Points bucketed in cubic cells, to find those near a box without scanning all of them."""

    def __init__(self, pts, cell: float):
        self.cell = cell
        keys = np.floor(pts / cell).astype(np.int64)
        self.lo = keys.min(0)
        self.dims = keys.max(0) - self.lo + 1
        flat = np.ravel_multi_index((keys - self.lo).T, self.dims)
        self.order = np.argsort(flat, kind="stable")
        self.starts = np.searchsorted(flat[self.order], np.arange(np.prod(self.dims) + 1))

    def near(self, lo, hi) -> np.ndarray:
        a = np.maximum(np.floor(np.asarray(lo) / self.cell).astype(np.int64) - self.lo, 0)
        b = np.minimum(np.floor(np.asarray(hi) / self.cell).astype(np.int64) - self.lo, self.dims - 1)
        if np.any(b < a):
            return np.empty(0, dtype=np.int64)
        cells = np.stack(np.meshgrid(*[np.arange(a[i], b[i] + 1) for i in range(3)], indexing="ij"), -1).reshape(-1, 3)
        flat = np.ravel_multi_index(cells.T, self.dims)
        parts = [self.order[self.starts[f] : self.starts[f + 1]] for f in flat]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


# ---------------------------------------------------------------------------------
# building the anatomy
# ---------------------------------------------------------------------------------


def _inside_lung(probe: ThoraxAnatomy, p: np.ndarray, margin: float = 4.0) -> bool:
    """Whether point ``p`` lies deeper than ``margin`` mm inside a lung (trees and lesions stay there)."""
    return bool(probe.lung_depth(p[None])[0] > margin)


class _TreeGrower:
    """Grows branching vessel/airway trees into shared lists, so the recursion needs few arguments."""

    def __init__(self, rng: np.random.Generator, probe: ThoraxAnatomy) -> None:
        self.rng = rng
        self.probe = probe
        self.capsules: list[Capsule] = []
        self.bif: list[np.ndarray] = []
        self.bif_r: list[float] = []

    def grow(self, start: np.ndarray, direction: np.ndarray, length: float, radius: float, gen: int, kind: str) -> None:
        """One segment, shortened until it ends inside a lung, then two random children (depth first)."""
        if gen == 0 or radius < 0.8:
            return
        d = direction / np.linalg.norm(direction)
        end = start + d * length
        tries = 0
        while not _inside_lung(self.probe, end, 3.0) and tries < 6:  # shorten towards the lung
            length *= 0.7
            end = start + d * length
            tries += 1
        if tries == 6:
            return
        self.capsules.append(Capsule(start, end, radius, kind))
        if gen > 1 and kind == "vessel":
            self.bif.append(end)
            self.bif_r.append(radius)
        rng = self.rng
        for _ in range(2):
            nd = d + rng.normal(scale=0.55, size=3)
            self.grow(end, nd, length * rng.uniform(0.7, 0.85), radius * rng.uniform(0.68, 0.8), gen - 1, kind)


def _grow_lung_trees(grower: _TreeGrower, generations: int) -> None:
    """Vessel and airway trees of both lungs plus the trachea, in the fixed order of random draws."""
    rng = grower.rng
    for side, (cx, cy, cz) in zip((1.0, -1.0), LUNG_CENTRES):
        hilum = np.array([cx - side * 30.0, cy + 5.0, cz + 5.0])
        for _ in range(3):  # three lobar vessel trees per lung
            direction = np.array([side * rng.uniform(0.3, 1.0), rng.uniform(-0.6, 0.6), rng.uniform(-1.0, 1.0)])
            grower.grow(hilum, direction, rng.uniform(28, 38), 4.5, generations, "vessel")
        bronchus = np.array([cx - side * 35.0, cy - 5.0, cz + 10.0])
        grower.capsules.append(Capsule(np.array([0.0, 0.0, 45.0]), bronchus, 6.0, "airway"))
        for _ in range(2):
            direction = np.array([side * rng.uniform(0.4, 1.0), rng.uniform(-0.5, 0.5), rng.uniform(-1.0, 0.6)])
            grower.grow(bronchus, direction, 30.0, 4.5, generations - 2, "airway")
    grower.capsules.append(Capsule(np.array([0.0, 0.0, 140.0]), np.array([0.0, 0.0, 45.0]), 8.0, "airway"))  # trachea


def _rib_capsules() -> list[Capsule]:
    """Ribs: arcs following the body wall, every 26 mm in z, open anteriorly (no random draws)."""
    capsules: list[Capsule] = []
    for zr in np.arange(-110.0, 130.0, 26.0):
        angles = np.linspace(np.deg2rad(-250), np.deg2rad(70), 17)
        ring = np.stack(
            [
                0.84 * BODY_AXES[0] * np.cos(angles),
                0.84 * BODY_AXES[1] * np.sin(angles) + BODY_CENTRE_Y,
                zr + 6.0 * np.sin(angles),
            ],
            1,
        )
        for a, b in zip(ring[:-1], ring[1:]):
            capsules.append(Capsule(a, b, 4.0, "rib"))
    return capsules


def _place_lesions(
    rng: np.random.Generator, probe: ThoraxAnatomy, lesions: int
) -> tuple[list[np.ndarray], list[float]]:
    """Lesion centres (alternating lungs, rejected until well inside) and radii, drawn last."""
    les: list[np.ndarray] = []
    les_r: list[float] = []
    while len(les) < lesions:
        c = np.array(LUNG_CENTRES[len(les) % 2]) + rng.uniform(-1, 1, 3) * np.array(LUNG_AXES) * 0.6
        if _inside_lung(probe, c, 12.0):
            les.append(c)
            les_r.append(rng.uniform(4.0, 7.0))
    return les, les_r


def make_anatomy(seed: int = 0, lesions: int = 3, generations: int = 5) -> ThoraxAnatomy:
    """Random vessel/airway trees and lesions inside the fixed lungs (deterministic per seed)."""
    rng = np.random.default_rng(seed)
    probe = ThoraxAnatomy([], np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3)), np.zeros(0))
    grower = _TreeGrower(rng, probe)
    _grow_lung_trees(grower, generations)
    capsules = grower.capsules + _rib_capsules()
    les, les_r = _place_lesions(rng, probe, lesions)
    return ThoraxAnatomy(
        capsules,
        np.array(grower.bif).reshape(-1, 3),
        np.array(grower.bif_r),
        np.array(les).reshape(-1, 3),
        np.array(les_r),
        seed,
    )


def thorax_grid(shape=(96, 96, 96), spacing=(3.5, 3.5, 3.5), ijk_to_ras: np.ndarray | None = None) -> Grid:
    """An axis-aligned RAS grid centred on the chest (or the given matrix)."""
    if ijk_to_ras is None:
        spacing = np.asarray(spacing, dtype=np.float64)
        origin = -0.5 * (np.asarray(shape) - 1) * spacing
        ijk_to_ras = make_ijk_to_ras(spacing, origin)
    return Grid(tuple(int(s) for s in shape), np.asarray(ijk_to_ras, dtype=np.float64))


def make_thorax(
    shape=(96, 96, 96),
    spacing=(3.5, 3.5, 3.5),
    seed: int = 0,
    lesions: int = 3,
    ijk_to_ras: np.ndarray | None = None,
    anatomy: ThoraxAnatomy | None = None,
):
    """The fixed phantom: (Volume in HU, lung mask Volume, anatomy)."""
    grid = thorax_grid(shape, spacing, ijk_to_ras)
    anatomy = anatomy or make_anatomy(seed, lesions)
    hu, lung = anatomy.render(grid.voxel_centres())
    vol = Volume(hu.reshape(grid.shape), grid.ijk_to_ras.copy(), "phantom fixed")
    return vol, vol.with_array(lung.reshape(grid.shape).astype(np.uint8), "phantom lungs"), anatomy


# ---------------------------------------------------------------------------------
# the pair
# ---------------------------------------------------------------------------------


@dataclass
class PhantomPair:
    """Fixed and moving phantom scans with their exact correspondence."""

    fixed: Volume
    moving: Volume
    motion: Motion  # a motion of .motion: fixed_to_moving, moving_to_fixed, jacobian_det
    anatomy: ThoraxAnatomy
    fixed_lungs: Volume
    moving_lungs: Volume
    settings: dict = field(default_factory=dict)

    def true_moving_points(self, fixed_points) -> np.ndarray:
        return self.motion.fixed_to_moving(fixed_points)

    def true_fixed_points(self, moving_points) -> np.ndarray:
        return self.motion.moving_to_fixed(moving_points)


def make_pair(
    shape=(96, 96, 96),
    spacing=(3.5, 3.5, 3.5),
    seed: int = 0,
    motion=None,
    noise_hu: float = 20.0,
    intensity_scale: float = 1.0,
    intensity_offset: float = 0.0,
    lesions: int = 3,
    ijk_to_ras: np.ndarray | None = None,
    moving_ijk_to_ras: np.ndarray | None = None,
    soft_tissue_offset_hu: float = 0.0,
) -> PhantomPair:
    """Fixed and moving scans (HU) of the same phantom, the moving one breathing.

    The moving scan is rendered from the anatomy at phi^-1 of its own voxel
    centres (exact), on the same grid unless ``moving_ijk_to_ras`` is given.
    ``soft_tissue_offset_hu`` is added to the moving scan's soft tissue outside the
    lungs (-200..300 HU), as an injected contrast agent would, before the global
    gain ``intensity_scale`` and offset ``intensity_offset``.
    """
    motion = motion or BreathingMotion()
    anatomy = make_anatomy(seed, lesions)
    fgrid = thorax_grid(shape, spacing, ijk_to_ras)
    mgrid = thorax_grid(shape, spacing, moving_ijk_to_ras if moving_ijk_to_ras is not None else fgrid.ijk_to_ras)
    rng = np.random.default_rng(seed + 7919)
    hu_f, lung_f = anatomy.render(fgrid.voxel_centres())
    ym = mgrid.voxel_centres()
    xm = motion.moving_to_fixed(ym)
    hu_m, lung_m = anatomy.render(xm)
    # mass conservation in the lungs: HU + 1000 scales with 1 / det(D phi)
    det = motion.jacobian_det(xm[lung_m])
    hu_m[lung_m] = (-1000.0 + (hu_m[lung_m] + 1000.0) / det).astype(np.float32)
    if soft_tissue_offset_hu:
        soft = (~lung_m) & (hu_m > -200.0) & (hu_m < 300.0)
        hu_m[soft] = hu_m[soft] + np.float32(soft_tissue_offset_hu)
    hu_m = intensity_scale * hu_m + intensity_offset
    if noise_hu:
        hu_f = hu_f + rng.normal(0, noise_hu, hu_f.shape).astype(np.float32)
        hu_m = hu_m + rng.normal(0, noise_hu, hu_m.shape).astype(np.float32)
    fixed = Volume(hu_f.reshape(fgrid.shape).astype(np.float32), fgrid.ijk_to_ras.copy(), "phantom fixed")
    moving = Volume(hu_m.reshape(mgrid.shape).astype(np.float32), mgrid.ijk_to_ras.copy(), "phantom moving")
    return PhantomPair(
        fixed,
        moving,
        motion,
        anatomy,
        fixed.with_array(lung_f.reshape(fgrid.shape).astype(np.uint8), "phantom fixed lungs"),
        moving.with_array(lung_m.reshape(mgrid.shape).astype(np.uint8), "phantom moving lungs"),
        {
            "shape": list(shape),
            "spacing": list(np.atleast_1d(spacing).astype(float)),
            "seed": seed,
            "noise_hu": noise_hu,
            "intensity_scale": intensity_scale,
            "intensity_offset": intensity_offset,
            "soft_tissue_offset_hu": soft_tissue_offset_hu,
        },
    )


def sample_landmarks(
    pair: PhantomPair, n: int = 20, seed: int = 0, min_distance_mm: float = 10.0, margin_mm: float = 10.0
) -> PointSet:
    """Distinctive fixed-scan landmarks: lesion centres first, then vessel bifurcations.

    Each lies in the lungs, at least ``margin_mm`` inside both fields of view
    (before and after the motion) and ``min_distance_mm`` from the others.
    """
    rng = np.random.default_rng(seed)
    an = pair.anatomy
    cands = [("lesion", c) for c in an.lesions]
    order = rng.permutation(len(an.bifurcations))
    cands += [("bifurcation", an.bifurcations[i]) for i in order]
    chosen: list[np.ndarray] = []
    labels: list[str] = []
    for kind, c in cands:
        if len(chosen) >= n:
            break
        if an.lung_depth(c[None])[0] < 2.0:
            continue
        if not (
            _inside(pair.fixed.grid, c, margin_mm)
            and _inside(pair.moving.grid, pair.true_moving_points(c)[0], margin_mm)
        ):
            continue
        if chosen and np.min(np.linalg.norm(np.array(chosen) - c, axis=1)) < min_distance_mm:
            continue
        chosen.append(c)
        labels.append(f"{'L' if kind == 'lesion' else 'B'}{len(chosen)}")
    if not chosen:
        raise InputError("no distinctive landmark fits inside this phantom's field of view; enlarge the volume")
    return PointSet(np.array(chosen), labels, name="phantom landmarks")


def _inside(grid: Grid, p, margin_mm: float) -> bool:
    ijk = apply_affine(np.linalg.inv(grid.ijk_to_ras), p)[0]
    sp = np.linalg.norm(grid.ijk_to_ras[:3, :3], axis=0)
    m = margin_mm / sp
    return bool(np.all(ijk >= m) and np.all(ijk <= np.asarray(grid.shape) - 1 - m))
