"""Known displacement fields and grids for the registration and MRML transform tests."""

from __future__ import annotations

import numpy as np

from MedDIFTLib.data.geometry import Grid, make_ijk_to_ras
from MedDIFTLib.registration import DenseField
from MedDIFTLib.registration.descriptors import AxisGrid


def oblique_grid() -> Grid:
    """An oblique (17 degrees about A), anisotropic grid: pins LPS/RAS and direction handling."""
    a = np.radians(17.0)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    return Grid((20, 18, 11), make_ijk_to_ras((1.3, 0.9, 2.7), (-12.0, 7.5, 30.0), rot))


def smooth_field() -> DenseField:
    """A known smooth field with a turned and shifted pre-alignment."""
    grid = AxisGrid((9, 8, 7), np.array([-20.0, -5.0, 10.0]), np.full(3, 4.0))
    x = grid.points()
    u = np.stack([2.0 * np.sin(x[..., 1] / 15.0), 1.5 * np.cos(x[..., 2] / 12.0), 0.8 * np.sin(x[..., 0] / 9.0)], -1)
    a = np.radians(5.0)
    pre = np.eye(4)
    pre[:3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    pre[:3, 3] = [4.0, -3.0, 2.5]
    return DenseField(pre, grid, u)
