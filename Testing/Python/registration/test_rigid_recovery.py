"""Exact rigid recovery: a patient turned by 8 degrees and shifted by 30 mm, on isotropic,
anisotropic and oblique scans.

The phantom is rendered twice from its analytic anatomy, the second time at the points
the known rigid motion sends each voxel to (no breathing, no expansion: the rigid part is
the whole motion), so the truth is exact. Errors are the angle of ``R_est^T R_true`` and
the distance between the estimated and true images of the fixed scan's centre.
"""

from __future__ import annotations

import numpy as np
import pytest

from MedDIFTLib.data.geometry import make_ijk_to_ras
from MedDIFTLib.evaluation.motion import BreathingMotion, RepositionedMotion
from MedDIFTLib.evaluation.phantom import make_pair
from MedDIFTLib.features import create_backbone
from MedDIFTLib.registration.prealign import prealign, rotation_deg
from MedDIFTLib.registration.rigid import refine_rigid

MOTION = RepositionedMotion(
    BreathingMotion(amplitude_mm=0.0, ap_expansion=0.0, lateral_expansion=0.0),
    angle_deg=8.0,
    shift_mm=(20.0, -20.0, 10.0),  # 30 mm
)


def _oblique(spacing: float) -> np.ndarray:
    a = np.radians(20.0)  # about A: the slices tilted as in a gantry-tilted scan
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    return make_ijk_to_ras((spacing,) * 3, (-144.0, -144.0, -144.0), rot)


SCANS = {
    "isotropic": {"shape": (48, 48, 48), "spacing": (6.0, 6.0, 6.0)},
    "anisotropic": {"shape": (72, 72, 36), "spacing": (4.0, 4.0, 8.0)},
    "oblique": {"shape": (48, 48, 48), "spacing": (6.0, 6.0, 6.0), "ijk_to_ras": _oblique(6.0)},
}


def _errors(pair, m: np.ndarray) -> tuple[float, float]:
    """(degrees of R_est^T R_true, mm between estimated and true images of the scan's centre)."""
    true = MOTION.rigid
    lo, hi = pair.fixed.grid.bounds_ras()
    c = (lo + hi) / 2.0
    turn = rotation_deg(np.linalg.inv(m) @ true)
    return turn, float(np.linalg.norm(m[:3, :3] @ c + m[:3, 3] - (true[:3, :3] @ c + true[:3, 3])))


@pytest.mark.parametrize("scan", sorted(SCANS))
def test_turn_and_shift_are_recovered_from_no_initial_guess(scan):
    pair = make_pair(seed=2, motion=MOTION, **SCANS[scan])
    assert _errors(pair, np.eye(4)) == pytest.approx((8.0, 30.0), abs=3.5)  # the motion is as large as stated
    m, info = refine_rigid(pair.fixed, pair.moving, np.eye(4))
    turn, shift = _errors(pair, m)
    # the bounds: a tenth of a 6 mm voxel at the scan's 144 mm radius is 0.4 degrees
    assert info["used"] and turn < 0.5 and shift < 1.0, (turn, shift, info)
    assert np.linalg.det(m[:3, :3]) == pytest.approx(1.0, abs=1e-9)  # rigid: no scale crept in


def test_the_match_fit_falls_short_of_the_turn_and_the_refinement_completes_it():
    pair = make_pair(seed=2, motion=MOTION, **SCANS["isotropic"])
    bb = create_backbone("mind-ssc")
    coarse, pre = prealign(bb.extract(pair.fixed), bb.extract(pair.moving), spacing_mm=24.0)
    assert pre["prealign_used"] == "rigid", pre
    assert _errors(pair, coarse)[0] > 2.0  # turned descriptors: the robust fit alone misses degrees
    m, info = refine_rigid(pair.fixed, pair.moving, coarse)
    turn, shift = _errors(pair, m)
    assert turn < 0.5 and shift < 1.0, (turn, shift, info)


def test_a_pair_without_motion_keeps_its_start():
    pair = make_pair(shape=(40, 40, 40), spacing=(7.0, 7.0, 7.0), seed=2, motion=MOTION)
    m, info = refine_rigid(pair.fixed, pair.fixed, np.eye(4))
    turn, shift = rotation_deg(m), float(np.linalg.norm(m[:3, 3]))
    # same scan: the identity is the optimum; L-BFGS may wander by less than a hundredth of a voxel
    assert turn < 0.05 and shift < 0.1, (turn, shift, info)


def test_a_scan_too_small_for_any_level_is_left_alone():
    pair = make_pair(shape=(4, 40, 40), spacing=(7.0, 7.0, 7.0), seed=2, motion=MOTION)
    start = np.eye(4)
    start[:3, 3] = [1.0, 2.0, 3.0]
    m, info = refine_rigid(pair.fixed, pair.moving, start)
    np.testing.assert_array_equal(m, start)
    assert info["used"] is False
