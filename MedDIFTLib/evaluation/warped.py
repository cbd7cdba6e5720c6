"""Real CT with exact ground truth: a scan deformed by a known, smooth, invertible motion.

No real CT pair here comes with dense ground truth, and the phantom's anatomy is
simpler than a patient's. So the fixed scan is a *real* CT and the moving scan is
that CT pulled back through a known map ``phi`` (fixed -> moving points, RAS mm):

    moving(y) = gain * fixed(phi^-1(y)) + offset + noise,   fixed sampled trilinearly,
                                                            -1000 HU outside its grid,

on the fixed scan's own grid. Every landmark's true position in the moving scan is
``phi(landmark)``, exact to the inversion tolerance, so TRE is measured without
annotation error. ``phi`` is a few long-wavelength plane waves (smooth, everywhere,
like organs shifting and bulging) optionally followed by a rigid motion (a patient lying
differently), the same composition as :class:`.motion.RepositionedMotion`.

Caveat for whoever reads the numbers: the moving scan is an interpolated copy of
the fixed one (slightly smoother, same noise pattern underneath the added noise),
so this tests geometry recovery on real anatomy, not scanner-to-scanner changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.geometry import Volume, as_points
from ..data.points import PointSet
from ..errors import InputError
from ..registration.mask import body_mask
from .case import Case
from .motion import RepositionedMotion, invert_displacement

MAX_DU = 0.5  # bound on |Du| (operator norm): x <- y - u(x) then contracts at least 2x per step
AIR_HU = -1000.0
_DEFAULT_SHIFT_DIRECTION = np.array([1.0, -1.0, 1.0]) / np.sqrt(3.0)
SOFT_TISSUE_HU = (-200.0, 300.0)  # fat, muscle, organs and vessels; not air, lung parenchyma or bone
CONTRAST_HU = 120.0  # what the phantom's contrast follow-up adds to its soft tissue (an injected agent)
VARIANTS = ("smooth", "repositioned", "contrast")


def variant_settings(variant: str, rotation_deg: float, shift_mm) -> dict:
    """What a named variant of the warped real-CT suite adds to the smooth field: ``repositioned`` a rigid
    motion, ``contrast`` the phantom's contrast change on the moving scan's soft tissue.

    Args:
        variant: one of :data:`VARIANTS`.
        rotation_deg: the repositioned variant's turn about S.
        shift_mm: the repositioned variant's shift (length along (1, -1, 1)/sqrt(3), or a 3-vector).
    """
    if variant not in VARIANTS:
        raise InputError(f"unknown warped-CT variant {variant!r}; choose from {list(VARIANTS)}")
    if variant == "repositioned":
        return {"rotation_deg": rotation_deg, "shift_mm": shift_mm}
    if variant == "contrast":
        return {"soft_tissue_offset_hu": CONTRAST_HU}
    return {}


@dataclass
class SmoothWaves:
    """u(p) = sum_m a_m sin(k_m . p + phase_m); phi(p) = p + u(p).

    A few plane waves of long wavelength: a low-frequency field that moves every part of the
    scan (local bumps left most landmarks nearly still), cheap to evaluate exactly at millions
    of voxels, with an analytic Jacobian Du = sum_m a_m k_m^T cos(k_m . p + phase_m).
    :func:`make_waves` bounds ||Du|| rigorously and refuses fields where it reaches
    :data:`MAX_DU`: phi then stays invertible (det > 0) and the fixed-point inverse contracts.
    """

    vectors: np.ndarray  # (M, 3) a_m, mm
    wavevectors: np.ndarray  # (M, 3) k_m, rad / mm
    phases: np.ndarray  # (M,)

    def _arg(self, p):
        return p @ self.wavevectors.T + self.phases

    def displacement(self, pts) -> np.ndarray:
        return np.sin(self._arg(as_points(pts))) @ self.vectors

    def jacobian(self, pts) -> np.ndarray:
        """Du at each point, (N, 3, 3) with [n, i, j] = d u_i / d p_j."""
        c = np.cos(self._arg(as_points(pts)))
        return np.einsum("nm,mi,mj->nij", c, self.vectors, self.wavevectors)

    def fixed_to_moving(self, pts) -> np.ndarray:
        p = as_points(pts)
        return p + self.displacement(p)

    def moving_to_fixed(self, pts, tol: float = 1e-10, max_iter: int = 200) -> np.ndarray:
        x, converged = invert_displacement(self.displacement, pts, tol, max_iter)
        if not converged:
            raise InputError("the displacement did not invert (fixed-point iteration did not converge)")
        return x

    def jacobian_det(self, pts, h=None) -> np.ndarray:
        """det(I + Du), analytic (``h`` is accepted for the motions' finite-difference signature)."""
        return np.linalg.det(np.eye(3) + self.jacobian(pts))


def make_waves(
    volume: Volume, amplitude_mm: float = 8.0, wavelength_mm: float = 120.0, n_waves: int = 6, seed: int = 0
) -> SmoothWaves:
    """A seeded random field whose largest |u| over ``volume``'s box is ``amplitude_mm``.

    Random directions for both the displacement and the wave, wavelengths between 1x and 2x
    ``wavelength_mm``, random phases; the field is then scaled so its peak over the box is the
    amplitude (so the parameter means what a reader expects). ||Du|| is computed exactly on a
    grid (step wavelength/16) over the box padded by sum |a_m| (where the inverse's iterates
    can go), plus L * half the grid diagonal with L = sum |a_m| |k_m|^2 its Lipschitz constant:
    a true bound. Raises :class:`InputError` when it reaches :data:`MAX_DU`.
    """
    if amplitude_mm < 0 or wavelength_mm <= 0 or n_waves < 1:
        raise InputError("amplitude_mm must be >= 0, wavelength_mm > 0 and n_waves >= 1")
    rng = np.random.default_rng(seed)

    def unit(n):
        v = rng.normal(size=(n, 3))
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    vectors = unit(n_waves) * rng.uniform(0.5, 1.0, size=(n_waves, 1))
    k = unit(n_waves) * (2 * np.pi / (wavelength_mm * rng.uniform(1.0, 2.0, size=(n_waves, 1))))
    waves = SmoothWaves(vectors, k, rng.uniform(0, 2 * np.pi, size=n_waves))
    lo, hi = volume.grid.bounds_ras()
    step = wavelength_mm / 16.0

    def grid(pad):
        axes = [np.arange(a - pad, b + pad + step, step) for a, b in zip(lo, hi)]
        return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)

    peak = max(float(np.linalg.norm(waves.displacement(grid(0.0)), axis=1).max()), 1e-12)
    waves.vectors = waves.vectors * (amplitude_mm / peak)
    norms = np.linalg.norm(waves.vectors, axis=1)
    pts = grid(float(norms.sum()))
    du = max(
        float(np.linalg.norm(waves.jacobian(pts[i : i + 200000]), ord=2, axis=(1, 2)).max())
        for i in range(0, len(pts), 200000)
    )
    du += float(norms @ (np.linalg.norm(waves.wavevectors, axis=1) ** 2)) * step * np.sqrt(3) / 2
    if du >= MAX_DU:
        raise InputError(
            f"a {amplitude_mm:g} mm deformation with {wavelength_mm:g} mm wavelength has |Du| up to "
            f"{du:.2f} (must stay below {MAX_DU}) and may not be invertible; lower the amplitude or "
            "raise the wavelength"
        )
    waves.du_bound = du  # type: ignore[attr-defined]  # an attribute, deliberately not a dataclass field
    return waves


def warp_motion(
    volume: Volume,
    amplitude_mm: float = 8.0,
    rotation_deg: float = 0.0,
    shift_mm=0.0,
    wavelength_mm: float = 120.0,
    n_waves: int = 6,
    seed: int = 0,
):
    """The smooth field, then (if any) a rotation about S through the box centre and a translation.

    ``shift_mm`` is a 3-vector (RAS mm) or a length along (1, -1, 1)/sqrt(3). Returns an object with
    ``fixed_to_moving``, ``moving_to_fixed`` and ``jacobian_det``, like :mod:`.motion`'s motions.
    """
    smooth = make_waves(volume, amplitude_mm, wavelength_mm, n_waves, seed)
    shift = np.asarray(shift_mm, dtype=np.float64)
    shift = shift * _DEFAULT_SHIFT_DIRECTION if shift.ndim == 0 else shift.reshape(3)
    if rotation_deg == 0 and not np.any(shift):
        return smooth
    lo, hi = volume.grid.bounds_ras()
    return RepositionedMotion(smooth, float(rotation_deg), tuple(shift.tolist()), tuple(((lo + hi) / 2).tolist()))


def _sample(volume: Volume, ras: np.ndarray, fill: float = AIR_HU) -> np.ndarray:
    """Trilinear values of ``volume`` at RAS points, ``fill`` outside its voxel centres' hull."""
    from scipy import ndimage

    ijk = volume.world_to_ijk(ras)
    return ndimage.map_coordinates(
        np.asarray(volume.array, dtype=np.float32), ijk.T, order=1, mode="constant", cval=fill, prefilter=False
    )


def warp_volume(
    fixed: Volume,
    motion,
    gain: float = 1.0,
    offset_hu: float = 0.0,
    noise_hu: float = 0.0,
    seed: int = 0,
    name: str = "",
    soft_tissue_offset_hu: float = 0.0,
) -> Volume:
    """The moving scan on the fixed grid: fixed at phi^-1 of each voxel centre, then gain, offset and
    seeded Gaussian noise (so no method can win by matching identical voxel values).

    ``soft_tissue_offset_hu`` is added where the warped scan is soft tissue (:data:`SOFT_TISSUE_HU`),
    before the gain and offset, as the phantom's contrast case does: an injected agent brightens
    organs and vessels but not air, lung parenchyma or bone, so the change is not one global map."""
    y = fixed.grid.voxel_centres()
    hu = _sample(fixed, motion.moving_to_fixed(y)).astype(np.float64)
    if soft_tissue_offset_hu:
        lo, hi = SOFT_TISSUE_HU
        hu[(hu > lo) & (hu < hi)] += soft_tissue_offset_hu
    hu = gain * hu + offset_hu
    if noise_hu:
        hu += np.random.default_rng(seed + 104729).normal(0.0, noise_hu, hu.shape)
    return Volume(
        hu.reshape(fixed.shape).astype(np.float32),
        fixed.ijk_to_ras.copy(),
        name or f"{fixed.name} warped",
        dict(fixed.metadata),
    )


def distinctiveness(volume: Volume, sigma_mm: float = 1.5, window_mm: float = 4.0) -> np.ndarray:
    """Foerstner's corner measure det(T) / trace(T) of the structure tensor T.

    High only where the image varies in all three directions (a vessel branch, a bone corner),
    where a landmark is findable at all; an edge or flat region scores ~0. Intensities are
    clipped to [-1000, 400] HU so that bone edges do not outrank everything in soft tissue and lung.
    """
    from scipy import ndimage

    sp = volume.spacing
    a = np.clip(np.asarray(volume.array, dtype=np.float32), -1000.0, 400.0)
    a = ndimage.gaussian_filter(a, sigma_mm / sp)
    g = np.gradient(a, *sp)
    w = window_mm / sp
    t = {(i, j): ndimage.gaussian_filter(g[i] * g[j], w) for i in range(3) for j in range(i, 3)}
    det = (
        t[0, 0] * (t[1, 1] * t[2, 2] - t[1, 2] ** 2)
        - t[0, 1] * (t[0, 1] * t[2, 2] - t[1, 2] * t[0, 2])
        + t[0, 2] * (t[0, 1] * t[1, 2] - t[1, 1] * t[0, 2])
    )
    tr = t[0, 0] + t[1, 1] + t[2, 2]
    return np.where(tr > 0, det / np.maximum(tr, 1e-12), 0.0)


def _inside_mm(volume: Volume, ras: np.ndarray, margin_mm: float) -> np.ndarray:
    """Per point: at least ``margin_mm`` inside the hull of ``volume``'s voxel centres."""
    ijk = volume.world_to_ijk(ras)
    m = margin_mm / volume.spacing
    return np.all((ijk >= m) & (ijk <= np.asarray(volume.shape) - 1 - m), axis=1)


def sample_landmarks(
    fixed: Volume,
    motion,
    moving: Volume | None = None,
    n: int = 30,
    min_distance_mm: float = 15.0,
    margin_mm: float = 10.0,
    amplitude_mm: float = 0.0,
) -> PointSet:
    """Distinctive fixed-scan voxels, greedily by :func:`distinctiveness` among its local maxima.

    Each lies in the body, ``amplitude_mm + margin_mm`` inside the fixed grid, its true position
    ``margin_mm`` inside the moving grid (so every method can see it and its neighbourhood), and
    ``min_distance_mm`` from every other (so a few structures do not dominate the statistics).
    """
    from scipy import ndimage

    moving = moving or fixed
    score = distinctiveness(fixed)
    peaks = (score == ndimage.maximum_filter(score, size=3)) & (score > 0) & body_mask(fixed)
    ijk = np.argwhere(peaks)
    ras = fixed.ijk_to_world(ijk)
    keep = _inside_mm(fixed, ras, amplitude_mm + margin_mm)
    ijk, ras = ijk[keep], ras[keep]
    keep = _inside_mm(moving, motion.fixed_to_moving(ras), margin_mm)
    ijk, ras = ijk[keep], ras[keep]
    order = np.argsort(-score[tuple(ijk.T)], kind="stable")
    chosen: list[int] = []
    for i in order:
        if len(chosen) >= n:
            break
        if chosen and np.min(np.linalg.norm(ras[chosen] - ras[i], axis=1)) < min_distance_mm:
            continue
        chosen.append(i)
    if not chosen:
        raise InputError(
            f"{fixed.name}: no distinctive landmark inside the body and the fields of view; "
            "lower the margin or the motion"
        )
    return PointSet(ras[chosen], [f"W{i + 1}" for i in range(len(chosen))], name=f"{fixed.name} landmarks")


def make_warped_case(
    fixed: Volume,
    name: str = "",
    dataset: str = "warped-ct",
    amplitude_mm: float = 8.0,
    rotation_deg: float = 0.0,
    shift_mm=0.0,
    wavelength_mm: float = 120.0,
    n_waves: int = 6,
    gain: float = 1.0,
    offset_hu: float = 0.0,
    noise_hu: float = 10.0,
    soft_tissue_offset_hu: float = 0.0,
    n_landmarks: int = 30,
    min_distance_mm: float = 15.0,
    margin_mm: float = 10.0,
    seed: int = 0,
) -> Case:
    """A :class:`Case` from one real scan: fixed = the scan, moving = it warped, truth = phi(landmarks)."""
    motion = warp_motion(fixed, amplitude_mm, rotation_deg, shift_mm, wavelength_mm, n_waves, seed)
    moving = warp_volume(fixed, motion, gain, offset_hu, noise_hu, seed, f"{fixed.name} warped", soft_tissue_offset_hu)
    lm = sample_landmarks(fixed, motion, moving, n_landmarks, min_distance_mm, margin_mm, amplitude_mm)
    assert lm.labels is not None  # PointSet.__post_init__ sets the labels
    truth = PointSet(motion.fixed_to_moving(lm.points), list(lm.labels), name="truth")
    moving.metadata["warp"] = {
        "amplitude_mm": amplitude_mm,
        "rotation_deg": rotation_deg,
        "shift_mm": np.asarray(shift_mm, dtype=float).tolist(),
        "wavelength_mm": wavelength_mm,
        "n_waves": n_waves,
        "gain": gain,
        "offset_hu": offset_hu,
        "noise_hu": noise_hu,
        "soft_tissue_offset_hu": soft_tissue_offset_hu,
        "seed": seed,
    }
    case = Case(dataset, name or fixed.name, fixed, moving, lm, truth)
    case.motion = motion  # type: ignore[attr-defined]  # kept for checks (inverse, Jacobian); the harness ignores it
    return case
