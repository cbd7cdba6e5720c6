"""A fixed/moving pair related by an exactly known rigid transform, for the baselines' conventions.

The moving scan is the fixed phantom's voxel array with a rotated and shifted
IJK-to-RAS matrix: anatomy at fixed point p appears at R p + t in the moving
scan, with no interpolation. A method that applies its transform backwards,
or slips between LPS and RAS, lands far from R p + t.
"""

from __future__ import annotations

import numpy as np

from MedDIFTLib.data.geometry import Volume
from MedDIFTLib.data.points import PointSet
from MedDIFTLib.evaluation.cases import Case

ANGLE_DEG = 6.0  # about the superior axis
SHIFT_RAS = np.array([7.0, -5.0, 8.0])


def rigid_matrix(angle_deg: float = ANGLE_DEG, shift=SHIFT_RAS) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    m = np.eye(4)
    m[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    m[:3, 3] = shift
    return m


def known_rigid_case(shape=(72, 72, 64), spacing=(4.0, 4.0, 4.0), n_landmarks: int = 12) -> Case:
    from MedDIFTLib.evaluation.motion import BreathingMotion
    from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks

    pair = make_pair(shape=shape, spacing=spacing, seed=2, noise_hu=10.0, motion=BreathingMotion(amplitude_mm=0.0))
    lm = sample_landmarks(pair, n=n_landmarks, seed=2, margin_mm=25.0)
    m = rigid_matrix()
    moving = Volume(pair.fixed.array.copy(), m @ pair.fixed.ijk_to_ras, "moved")
    truth = (m[:3, :3] @ lm.points.T).T + m[:3, 3]
    return Case("synthetic", "rigid", pair.fixed, moving, lm, PointSet(truth, list(lm.labels)))
