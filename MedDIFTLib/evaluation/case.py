"""The unit every evaluation works on: two scans and their corresponding landmarks.

Apart from the loaders (:mod:`.cases`), so that a generator of cases (:mod:`.warped`) and the loaders that call
it both name the type without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data.geometry import Volume
from ..data.points import PointSet


@dataclass
class Case:
    """One fixed/moving pair with corresponding landmarks (RAS mm)."""

    dataset: str
    name: str
    fixed: Volume
    moving: Volume
    fixed_points: PointSet
    moving_points: PointSet  # the truth, same order as fixed_points


__all__ = ["Case"]
