"""Regularity of a map ``phi(x) = A (x + u(x))``: folding and the spread of the log-Jacobian.

Both figures are the ones lung-registration challenges report (Learn2Reg): the share
of voxels where ``det(D phi) <= 0`` (the map folds: anatomy turned inside out) and
the standard deviation of ``log det(D phi)`` (how unevenly the map compresses and
stretches). They are computed in physical units (millimetre differences on the
field's own grid, with the pre-alignment's linear part), so they compare between
scans of any resolution; a folded voxel enters the log at ``LOG_FLOOR``, as the
challenges clip it, so folding raises the spread instead of vanishing from it.

They are reported over two regions: the fixed scan's field of view (the grid's
points inside its voxel box: an oblique scan's covering grid has corners outside it)
and, when the scan is at hand, its body (above ``BODY_HU`` with each axial slice's
holes filled, so the lungs count): the air around a patient carries no anatomy and
its displacement is only the continuation of its surroundings.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..data.geometry import Volume

LOG_FLOOR = 1e-9  # det(D phi) of a folded voxel enters log at this value
BODY_HU = -500.0  # soft tissue and bone are above, air below; the lungs are filled in


def jacobian_determinant(u: np.ndarray, spacing, linear: np.ndarray | None = None) -> np.ndarray:
    """det(D phi) at every sample of ``u`` (X, Y, Z, 3) in mm on an axis-aligned grid of ``spacing`` mm:
    ``det(A) * det(I + Du)``, central differences inside, one-sided at the edges.

    Args:
        u: displacement in mm, RAS components, on the grid's (X, Y, Z) axes (R, A, S).
        spacing: the grid's spacing in mm, one number or one per axis.
        linear: the 3x3 linear part of ``A`` (default: the identity).
    """
    spacing = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
    shape = u.shape[:3]
    j = np.zeros(shape + (3, 3))
    for c in range(3):
        for a in range(3):
            if shape[a] > 1:
                j[..., c, a] = np.gradient(u[..., c], spacing[a], axis=a, edge_order=1)
        j[..., c, c] += 1.0
    det_a = 1.0 if linear is None else float(np.linalg.det(linear))
    return np.linalg.det(j) * det_a


def regularity(det: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """Folding (share and percent of voxels with det <= 0) and the standard deviation of the log-Jacobian
    over ``mask`` (default: every voxel), with the number of voxels counted.

    Args:
        det: det(D phi) per voxel.
        mask: where to count (boolean, the shape of ``det``).
    """
    d = det[mask] if mask is not None else det.ravel()
    if d.size == 0:
        return {
            "voxels": 0,
            "folding_share": float("nan"),
            "folding_percent": float("nan"),
            "log_jacobian_std": float("nan"),
        }
    folded = float(np.mean(d <= 0))
    return {
        "voxels": int(d.size),
        "folding_share": folded,
        "folding_percent": 100.0 * folded,
        "log_jacobian_std": float(np.std(np.log(np.maximum(d, LOG_FLOOR)))),
    }


def body_mask(fixed: Volume, points: np.ndarray) -> np.ndarray:
    """The fixed scan's body at world points (X, Y, Z, 3) of an axis-aligned grid: above ``BODY_HU``,
    each axial slice's holes filled (the lungs), only inside the scan's voxel box."""
    ijk = fixed.world_to_ijk(points.reshape(-1, 3))
    hu = ndimage.map_coordinates(
        np.asarray(fixed.array, dtype=np.float32), ijk.T, order=1, mode="constant", cval=-1024.0
    )
    solid = (hu > BODY_HU).reshape(points.shape[:3])
    filled = np.stack([ndimage.binary_fill_holes(solid[:, :, k]) for k in range(solid.shape[2])], axis=2)
    return filled & field_of_view(fixed, points)


def field_of_view(fixed: Volume, points: np.ndarray) -> np.ndarray:
    """Which grid points (X, Y, Z, 3) lie inside the fixed scan's voxel box."""
    return fixed.contains(points.reshape(-1, 3)).reshape(points.shape[:3])


__all__ = ["jacobian_determinant", "regularity", "body_mask", "field_of_view", "LOG_FLOOR"]
