"""The phantom's body and organ shapes in mm (RAS, origin at the centre of the chest).

Both the phantom's anatomy (:mod:`.phantom`) and its breathing motion (:mod:`.motion`, which moves the lungs
more than the chest wall) are drawn on these shapes; they live here so that neither imports the other's module.
"""

from __future__ import annotations

import numpy as np

BODY_AXES = (150.0, 105.0)  # lateral, antero-posterior semi-axes
BODY_CENTRE_Y = 0.0
LUNG_CENTRES = ((62.0, 5.0, 15.0), (-62.0, 5.0, 15.0))  # right lung at +x (RAS: +x is patient right)
LUNG_AXES = (50.0, 70.0, 95.0)
HEART = ((-15.0, 40.0, -35.0), (50.0, 42.0, 48.0))
SPINE_XY = (0.0, -80.0)


def ellipsoid_depth(pts: np.ndarray, centre, axes) -> np.ndarray:
    """Approximate signed depth (mm) inside an ellipsoid (exact on the axes' sphere).

    Args:
        pts: (N, 3) RAS mm.
        centre: the ellipsoid's centre, RAS mm.
        axes: its three semi-axes, mm.
    """
    q = (pts - np.asarray(centre)) / np.asarray(axes)
    return (1.0 - np.sqrt((q**2).sum(1))) * min(axes)
