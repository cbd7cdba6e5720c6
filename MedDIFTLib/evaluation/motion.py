"""Exact, invertible motions of the phantom: breathing, and a patient who lies differently.

Each maps fixed-scan points to moving-scan points (``fixed_to_moving``), inverts
itself to sub-micrometre precision (``moving_to_fixed``) and knows its Jacobian
determinant, which the phantom uses to keep lung mass constant. Ground truth
for every accuracy figure comes from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..data.geometry import apply_affine, as_points
from ..errors import InputError
from .body import BODY_CENTRE_Y, LUNG_AXES, LUNG_CENTRES, ellipsoid_depth


def invert_displacement(
    displacement: Callable[[np.ndarray], np.ndarray], pts, tol: float, max_iter: int = 200
) -> tuple[np.ndarray, bool]:
    """Solve ``x + u(x) = y`` for each point ``y`` by the fixed-point iteration ``x <- y - u(x)``, a contraction
    wherever ``|Du| < 1`` (every motion here keeps it so).

    Args:
        displacement: ``u``, (N, 3) RAS mm to (N, 3) mm.
        pts: the points ``y``, (N, 3) RAS mm.
        tol: the largest change of a step, mm, at which the iteration stops.
        max_iter: steps at most.

    Returns:
        The points ``x``, and whether the iteration converged (else its last iterate).
    """
    y = as_points(pts)
    x = y - displacement(y)
    for _ in range(max_iter):
        nx = y - displacement(x)
        if np.max(np.abs(nx - x), initial=0.0) < tol:
            return nx, True
        x = nx
    return x, False


class Motion(Protocol):
    """What every motion here offers: points both ways (RAS mm) and the Jacobian determinant."""

    def fixed_to_moving(self, pts) -> np.ndarray: ...

    def moving_to_fixed(self, pts, tol: float = ..., max_iter: int = ...) -> np.ndarray: ...

    def jacobian_det(self, pts, h: float = ...) -> np.ndarray: ...


@dataclass
class BreathingMotion:
    """Smooth, invertible fixed -> moving map: phi(p) = p + u(p).

    * cranio-caudal: the diaphragm moves by ``amplitude_mm`` at the lung base,
      decaying upwards (a sigmoid in z), strongest centrally;
    * antero-posterior and lateral expansion/contraction, fading upwards;
    * ``sliding``: the chest wall follows only ``wall_fraction`` of the
      lungs' cranio-caudal motion, with a smooth transition of
      ``sliding_width_mm`` at the pleura (kept wide enough to stay invertible).

    The inverse is found by fixed-point iteration x <- y - u(x), a contraction
    because |Du| < 1 everywhere for the allowed parameters (checked).
    """

    amplitude_mm: float = 20.0
    ap_expansion: float = -0.08
    lateral_expansion: float = -0.04
    sliding: bool = False
    wall_fraction: float = 0.3
    sliding_width_mm: float = 30.0
    base_z_mm: float = -20.0
    decay_mm: float = 40.0

    def __post_init__(self):
        # the diaphragm sigmoid has slope amplitude / (4 decay): keep it below 0.5
        if abs(self.amplitude_mm) / (4 * self.decay_mm) > 0.5:
            raise InputError(
                "breathing amplitude too large for an invertible motion; lower amplitude_mm or raise decay_mm"
            )
        # the pleural blend has slope 1/width: the shear it adds must stay well below 1
        if self.sliding and abs(self.amplitude_mm) * (1 - self.wall_fraction) / self.sliding_width_mm > 0.5:
            raise InputError("sliding transition too sharp for an invertible motion; widen sliding_width_mm")

    def displacement(self, pts) -> np.ndarray:
        p = as_points(pts)
        x, y, z = p.T
        g = 1.0 / (1.0 + np.exp((z - self.base_z_mm) / self.decay_mm))  # ~1 at the base, ->0 upwards
        g2 = 1.0 / (1.0 + np.exp((z - self.base_z_mm - 80.0) / (2 * self.decay_mm)))
        central = np.exp(-((x / 120.0) ** 2) - (y / 110.0) ** 2)
        uz = self.amplitude_mm * g * central
        if self.sliding:
            depth = np.maximum(*[ellipsoid_depth(p, c, LUNG_AXES) for c in LUNG_CENTRES])
            w = 1.0 / (1.0 + np.exp(-depth / (self.sliding_width_mm / 4.0)))
            uz = uz * (self.wall_fraction + (1 - self.wall_fraction) * w)
        ux = self.lateral_expansion * x * g2
        uy = self.ap_expansion * (y - BODY_CENTRE_Y) * g2
        return np.stack([ux, uy, uz], 1)

    def fixed_to_moving(self, pts) -> np.ndarray:
        p = as_points(pts)
        return p + self.displacement(p)

    def moving_to_fixed(self, pts, tol: float = 1e-9, max_iter: int = 200) -> np.ndarray:
        return invert_displacement(self.displacement, pts, tol, max_iter)[0]

    def jacobian_det(self, pts, h: float = 0.25) -> np.ndarray:
        """det(D phi) by central differences (h mm)."""
        p = as_points(pts)
        cols = []
        for a in range(3):
            e = np.zeros(3)
            e[a] = h
            cols.append((self.fixed_to_moving(p + e) - self.fixed_to_moving(p - e)) / (2 * h))
        return np.linalg.det(np.stack(cols, -1))


@dataclass
class RepositionedMotion:
    """Breathing, then the whole patient moved rigidly: phi(p) = R (b(p) - c) + c + t.

    A follow-up where the patient lies differently: rotation ``angle_deg`` about the
    S axis through ``centre`` (RAS mm) and a translation ``shift_mm``, on top of
    ``breathing``. Exact both ways, and a rigid motion keeps the Jacobian of ``b``.
    """

    breathing: Motion = field(default_factory=BreathingMotion)
    angle_deg: float = 8.0
    shift_mm: tuple = (15.0, -12.0, 15.0)
    centre: tuple = (0.0, 0.0, 0.0)

    @property
    def rigid(self) -> np.ndarray:
        """The rigid part as a 4x4 RAS matrix."""
        a = np.radians(self.angle_deg)
        r = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
        c = np.asarray(self.centre, dtype=np.float64)
        m = np.eye(4)
        m[:3, :3] = r
        m[:3, 3] = c - r @ c + np.asarray(self.shift_mm, dtype=np.float64)
        return m

    def fixed_to_moving(self, pts) -> np.ndarray:
        return apply_affine(self.rigid, self.breathing.fixed_to_moving(pts))

    def moving_to_fixed(self, pts, tol: float = 1e-9, max_iter: int = 200) -> np.ndarray:
        return self.breathing.moving_to_fixed(apply_affine(np.linalg.inv(self.rigid), pts), tol, max_iter)

    def jacobian_det(self, pts, h: float = 0.25) -> np.ndarray:
        return self.breathing.jacobian_det(pts, h)
