"""The outputs of ``meddift register`` written the cheap way agree with the direct way, within stated bounds.

The direct way is what the writer did before: every voxel centre listed, the field
interpolated by ``scipy.ndimage.map_coordinates``, the inverse iterated from
``A^-1 y`` at every voxel, the whole moving scan resampled for the figure.
"""

from __future__ import annotations

import gzip

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from MedDIFTLib.data.geometry import Volume, apply_affine, make_ijk_to_ras, resample
from MedDIFTLib.registration import DenseField, write_field
from MedDIFTLib.registration.descriptors import AxisGrid
from MedDIFTLib.registration.outputs import _moving_on_fixed_slices
from synthetic_fields import oblique_grid, smooth_field


def _direct_displacement(field: DenseField, ras: np.ndarray) -> np.ndarray:
    idx = np.clip((ras - field.grid.origin) / field.grid.spacing, 0.0, np.asarray(field.grid.shape) - 1.0)
    u = np.stack([ndimage.map_coordinates(field.u[..., c], idx.T, order=1, mode="nearest") for c in range(3)], 1)
    return apply_affine(field.prealign, ras + u) - ras


def _moving_scan() -> Volume:
    """A textured, oblique, anisotropic moving scan overlapping the smooth field's grid in part."""
    rng = np.random.default_rng(4)
    arr = ndimage.gaussian_filter(rng.normal(0, 400, (22, 19, 12)), 1.0).astype(np.float32)
    a = np.radians(-11.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return Volume(arr, make_ijk_to_ras((1.4, 1.1, 2.6), (-10.0, 5.0, 28.0), rot), "moving")


def test_field_on_a_scan_grid_is_the_direct_interpolation():
    field, grid = smooth_field(), oblique_grid()
    ras = grid.voxel_centres()
    want = _direct_displacement(field, ras).reshape(tuple(grid.shape) + (3,))
    # the same trilinear weights in float64: rounding only
    np.testing.assert_allclose(field.displacement_on(grid), want, rtol=0, atol=1e-9)


def test_inverse_started_on_the_coarse_grid_reaches_the_same_fixed_point():
    field, grid = smooth_field(), oblique_grid()
    ras = grid.voxel_centres()
    direct = field.inverse_points(ras)  # iterated from A^-1 y at every voxel, until no point moves 1e-4 mm
    got = field.inverse_displacement_on(grid).reshape(-1, 3) + ras
    # both stop when no point moves by 1e-4 mm; |Du| < 0.2 here, so each is within 0.25 * 1e-4 of the answer
    np.testing.assert_allclose(got, direct, rtol=0, atol=1e-4)
    np.testing.assert_allclose(field.map_points(got), ras, rtol=0, atol=1e-4)  # and it undoes the field


def test_warped_scan_is_the_direct_resampling_with_the_fill_outside():
    field, grid, moving = smooth_field(), oblique_grid(), _moving_scan()
    warped = field.resample_moving(moving, grid, fill_value=-1024.0)
    ras = grid.voxel_centres()
    src = apply_affine(moving.ras_to_ijk, ras + _direct_displacement(field, ras))
    want = ndimage.map_coordinates(moving.array, src.T, order=1, mode="constant", cval=-1024.0)
    outside = want == -1024.0
    assert 0.1 < outside.mean() < 0.9  # both cases are tested: inside the moving scan and beyond it
    # float64 interpolation, float32 result: a float32 step of values up to ~1000
    np.testing.assert_allclose(warped.array.reshape(-1), want, rtol=0, atol=1e-3)
    np.testing.assert_allclose(warped.ijk_to_ras, grid.ijk_to_ras)


def test_figure_slices_are_those_of_the_whole_resampled_scan():
    moving = _moving_scan()
    fixed = Volume(np.zeros((15, 14, 9), np.float32), make_ijk_to_ras((1.2, 1.3, 2.0), (-8.0, 6.0, 26.0)))
    whole = resample(moving, fixed.grid, order=1, fill_value=-1024.0).array
    cuts = _moving_on_fixed_slices(fixed, moving)
    np.testing.assert_allclose(cuts["coronal"], np.rot90(whole[:, 7, :]), atol=1e-3)
    np.testing.assert_allclose(cuts["axial"], np.rot90(whole[:, :, 4]), atol=1e-3)


def test_nifti_field_keeps_the_vectors_to_float32_precision_and_its_intent(tmp_path):
    grid = AxisGrid((6, 5, 4), np.array([-3.0, 2.0, 5.0]), np.full(3, 2.0)).grid
    rng = np.random.default_rng(1)
    disp = rng.normal(0.0, 30.0, tuple(grid.shape) + (3,))
    path = write_field(disp, grid, tmp_path / "field.nii.gz")
    raw = gzip.decompress(path.read_bytes())
    assert int.from_bytes(raw[68:70], "little") == 1006  # NIFTI_INTENT_DISPVECT
    back = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0, 3)  # LPS as ITK reads it
    lps = disp * np.array([-1.0, -1.0, 1.0])
    # float32 keeps 24 bits: a relative error of 6e-8 (a micrometre at 15 mm)
    np.testing.assert_allclose(back, lps, rtol=1.2e-7, atol=0)
