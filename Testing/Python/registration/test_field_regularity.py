"""Regularity of the map: folding and the spread of the log-Jacobian, on fields whose Jacobian is known."""

from __future__ import annotations

import numpy as np
import pytest

from MedDIFTLib.data.geometry import Volume, make_ijk_to_ras
from MedDIFTLib.evaluation.cases import phantom_suite
from MedDIFTLib.evaluation.harness import evaluate, write_report
from MedDIFTLib.evaluation.methods import Identity, Method
from MedDIFTLib.registration import DenseField
from MedDIFTLib.registration.descriptors import AxisGrid, covering_axis_grid
from MedDIFTLib.registration.jacobian import LOG_FLOOR, jacobian_determinant, regularity

H = 2.5  # mm, the field grid's spacing


def _grid(shape=(24, 20, 16)) -> AxisGrid:
    return AxisGrid(shape, np.array([-30.0, -25.0, -20.0]), np.full(3, H))


def _turn(deg: float, scale: float = 1.0) -> np.ndarray:
    a = np.radians(deg)
    m = np.eye(4)
    m[:3, :3] = scale * np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    m[:3, 3] = [5.0, -3.0, 2.0]
    return m


def test_identity_and_rigid_maps_neither_fold_nor_spread():
    grid = _grid()
    for pre in (np.eye(4), _turn(8.0)):
        stats = DenseField(pre, grid, np.zeros(grid.shape + (3,))).jacobian_stats()
        assert stats["folding_percent"] == 0.0 and stats["folding_share"] == 0.0
        assert stats["log_jacobian_std"] == pytest.approx(0.0, abs=1e-12)  # det is 1 up to rounding
        assert stats["jacobian_min"] == pytest.approx(1.0, abs=1e-12)


def test_a_smooth_field_has_its_analytic_jacobian():
    grid = _grid()
    x = grid.points()
    a, length = 4.0, 12.0  # u_x = a sin(x / L): det(I + Du) = 1 + (a / L) cos(x / L), between 0.67 and 1.33
    u = np.zeros(grid.shape + (3,))
    u[..., 0] = a * np.sin(x[..., 0] / length)
    u[..., 2] = 0.05 * x[..., 2]  # a uniform stretch along S: a factor 1.05 everywhere
    pre = _turn(8.0, scale=1.1)  # its linear part scales volume by 1.1^3
    det = DenseField(pre, grid, u).jacobian()
    truth = 1.1**3 * (1 + (a / length) * np.cos(x[..., 0] / length)) * 1.05
    inner = (slice(1, -1), slice(None), slice(None))  # central differences there; one-sided at the edges
    # central differences of a sine: relative error (h / L)^2 / 6 = 0.7 % of the cosine's term, at most
    np.testing.assert_allclose(det[inner], truth[inner], rtol=0.01 * a / length, atol=0)
    stats = regularity(det[inner])
    assert stats["folding_percent"] == 0.0
    # the global factors drop out of the spread: it is the std of log(1 + (a/L) cos(x/L)) alone
    want = np.std(np.log(1 + (a / length) * np.cos(x[inner][..., 0] / length)))
    assert stats["log_jacobian_std"] == pytest.approx(want, rel=0.02)


def test_a_folded_slab_is_counted_voxel_by_voxel():
    grid = _grid()
    i = np.arange(grid.shape[0], dtype=np.float64)
    # u_x = -3 h clip(i, 8, 13): inside the slab d(x + u_x)/dx = -2; at its two faces central differences
    # give -0.5: folded; outside 1. So slices 8..13 fold: 6 of 24.
    ux = -3.0 * H * np.clip(i, 8, 13)
    u = np.zeros(grid.shape + (3,))
    u[..., 0] = ux[:, None, None]
    det = jacobian_determinant(u, H)
    assert set(np.unique(np.round(det, 9))) == {1.0, -0.5, -2.0}
    stats = DenseField(np.eye(4), grid, u).jacobian_stats()
    assert stats["folding_share"] == pytest.approx(6 / 24)
    assert stats["folding_percent"] == pytest.approx(100 * 6 / 24)
    # folded voxels enter the log at the floor (as the lung challenges clip them): the spread is large
    want = np.std(np.log(np.where(det > 0, det, LOG_FLOOR)))
    assert stats["log_jacobian_std"] == pytest.approx(want) and want > 5.0


def _body_scan(grid: AxisGrid) -> Volume:
    """A scan over the field grid: air, and a body (40 HU) over x > 0 holding a 'lung' (-850 HU)."""
    x = grid.points()
    hu = np.full(grid.shape, -1000.0, dtype=np.float32)
    hu[x[..., 0] > 0] = 40.0
    lung = (np.abs(x[..., 0] - 12.0) < 6.0) & (np.abs(x[..., 1]) < 8.0)
    hu[lung] = -850.0
    return Volume(hu, make_ijk_to_ras(grid.spacing, grid.origin))


def test_regions_count_the_body_with_its_lungs_and_leave_out_the_air_around_it():
    grid = _grid()
    scan = _body_scan(grid)
    x = grid.points()[..., 0]
    i = np.arange(grid.shape[0], dtype=np.float64)
    u = np.zeros(grid.shape + (3,))
    u[..., 0] = (-3.0 * H * np.clip(i, 2, 5))[:, None, None]  # a fold in the air, x = -25 .. -17.5 mm
    stats = DenseField(np.eye(4), grid, u).jacobian_stats(scan)
    assert stats["folding_share"] == pytest.approx(4 / 24)  # the field of view: the whole grid here
    assert stats["body_folding_share"] == 0.0 and stats["body_log_jacobian_std"] == pytest.approx(0.0, abs=1e-12)
    assert stats["body_voxels"] == int((x > 0).sum())  # the lung's voxels are in the body: its holes are filled


def test_an_oblique_scan_counts_only_grid_points_inside_its_box():
    grid = _grid()
    a = np.radians(30.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    scan = Volume(np.zeros((10, 10, 10), np.float32), make_ijk_to_ras((2.0, 2.0, 2.0), (-5.0, -5.0, -5.0), rot))
    stats = DenseField(np.eye(4), grid, np.zeros(grid.shape + (3,))).jacobian_stats(scan)
    inside = scan.contains(grid.points().reshape(-1, 3)).sum()
    assert 0 < inside < np.prod(grid.shape) and stats["voxels"] == inside


class _KnownMap(Method):
    """Maps points with a known field folded in a slab (of 4 of its 16 slices along R): no registration."""

    name = "known map"

    def _field(self, case) -> DenseField:
        lo, hi = case.fixed.grid.bounds_ras()
        grid = covering_axis_grid(case.fixed.grid, (hi[0] - lo[0]) / 16)
        u = np.zeros(grid.shape + (3,))
        u[..., 0] = (-3.0 * grid.spacing[0] * np.clip(np.arange(grid.shape[0]), 6, 9))[:, None, None]
        return DenseField(np.eye(4), grid, u)

    def map_points(self, case):
        return self._field(case).map_points(case.fixed_points.points)

    def regularity(self, case):
        return self._field(case).jacobian_stats(case.fixed)


def test_the_evaluation_reports_the_regularity_of_methods_that_keep_a_map(tmp_path):
    cases = phantom_suite(seeds=(1,), amplitudes=(10.0,), n_landmarks=4, shape=(48, 48, 48), spacing=(6.0, 6.0, 6.0))
    res = evaluate(cases, [Identity(), _KnownMap()], log=lambda m: None)
    summ = res.summary("phantom")
    assert summ["known map"]["folding_percent"] == pytest.approx(100 * 4 / 16)
    assert summ["known map"]["log_jacobian_std"] > 5.0  # folded voxels enter the log at its floor
    assert np.isnan(summ["identity"]["folding_percent"])  # no map: no figure, not a zero
    text = write_report(res, tmp_path).read_text()
    assert "| method | folding (% of voxels) | SD log-Jacobian |" in text
    assert f"| known map | 25.000 | {summ['known map']['log_jacobian_std']:.3f} |" in text
    assert "| identity | nan" not in text
