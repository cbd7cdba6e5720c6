"""Geometry: every conversion checked against hand-computed points."""

from __future__ import annotations

import numpy as np
import pytest

from MedDIFTLib.data.geometry import (
    LPS_TO_RAS,
    Grid,
    Volume,
    apply_affine,
    axis_aligned_ras,
    covering_grid,
    decompose_ijk_to_ras,
    ijk_to_ras_from_itk,
    itk_from_ijk_to_ras,
    make_ijk_to_ras,
    obliquity_deg,
    reorient_to_ras,
    require_inside,
    resample,
    resized_grid,
)
from MedDIFTLib.data.image_io import read_volume, write_volume
from MedDIFTLib.errors import GeometryError, ImageReadError, InputError

# An oblique (30 degrees about z, 10 about x), anisotropic, LPS-flipped ITK geometry.
SPACING = (0.7, 1.3, 2.5)
ORIGIN_LPS = (10.0, -20.0, 30.0)


def _oblique_direction_lps():
    a, b = np.deg2rad(30.0), np.deg2rad(10.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    flip = np.diag([-1.0, 1.0, 1.0])  # i runs right-to-left in LPS terms
    return rz @ rx @ flip


def _oblique_volume(shape=(9, 7, 5)):
    m = ijk_to_ras_from_itk(SPACING, ORIGIN_LPS, _oblique_direction_lps())
    arr = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    return Volume(arr, m, "oblique")


def test_itk_geometry_maps_a_voxel_to_hand_computed_ras():
    m = ijk_to_ras_from_itk(SPACING, ORIGIN_LPS, _oblique_direction_lps())
    ijk = np.array([2.0, 3.0, 4.0])
    lps = np.array(ORIGIN_LPS) + _oblique_direction_lps() @ (ijk * SPACING)
    expected = np.array([-lps[0], -lps[1], lps[2]])
    np.testing.assert_allclose(apply_affine(m, ijk)[0], expected, atol=1e-12)
    # and in plain numbers for the axis-aligned case: LPS origin (10,-20,30), spacing 2 -> RAS
    m2 = ijk_to_ras_from_itk((2, 2, 2), (10, -20, 30), np.eye(3))
    np.testing.assert_allclose(apply_affine(m2, [1, 1, 1])[0], [-12.0, 18.0, 32.0])


def test_world_to_ijk_inverts_ijk_to_world():
    v = _oblique_volume()
    ijk = np.array([[0, 0, 0], [8, 6, 4], [2.25, 3.5, 1.75]])
    np.testing.assert_allclose(v.world_to_ijk(v.ijk_to_world(ijk)), ijk, atol=1e-12)


def test_itk_round_trip_preserves_spacing_origin_direction():
    m = ijk_to_ras_from_itk(SPACING, ORIGIN_LPS, _oblique_direction_lps())
    spacing, origin, direction = itk_from_ijk_to_ras(m)
    np.testing.assert_allclose(spacing, SPACING, atol=1e-12)
    np.testing.assert_allclose(origin, ORIGIN_LPS, atol=1e-12)
    np.testing.assert_allclose(np.reshape(direction, (3, 3)), _oblique_direction_lps(), atol=1e-12)
    s, o, d = decompose_ijk_to_ras(m)
    np.testing.assert_allclose(s, SPACING)
    np.testing.assert_allclose(o, [-10.0, 20.0, 30.0])


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd", ".mha", ".mhd"])
def test_file_round_trip_keeps_oblique_anisotropic_geometry_exactly(tmp_path, ext):
    v = _oblique_volume()
    path = write_volume(v, tmp_path / f"vol{ext}")
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, v.array)
    tol = 1e-5 if ext == ".nii.gz" else 1e-9  # NIfTI stores the matrix in float32
    np.testing.assert_allclose(back.ijk_to_ras, v.ijk_to_ras, atol=tol)
    # a known point lands where it should
    np.testing.assert_allclose(back.ijk_to_world([2, 3, 4]), v.ijk_to_world([2, 3, 4]), atol=1e-4)


def test_nifti_affine_agrees_with_nibabel(tmp_path):
    nib = pytest.importorskip("nibabel", reason="nibabel gives an independent reading of the NIfTI affine")
    v = _oblique_volume()
    path = write_volume(v, tmp_path / "vol.nii.gz")
    np.testing.assert_allclose(nib.load(str(path)).affine, v.ijk_to_ras, atol=1e-5)


def test_real_abdomen_ct_geometry(shared):
    path = shared("ct/totalsegmentator/abdomen_3mm.nii.gz")
    v = read_volume(path)
    assert v.shape == (122, 101, 112)
    np.testing.assert_allclose(v.spacing, [3.0, 3.0, 3.0], atol=1e-6)
    # ITK reports direction diag(-1,-1,1) (LPS flip of x and y) and origin (177.956, -11.319, 94.302) LPS:
    # voxel (0,0,0) is at RAS (-177.956, 11.319, 94.302) and i runs towards +R.
    np.testing.assert_allclose(v.ijk_to_world([0, 0, 0])[0], [-177.95633, 11.319, 94.30176], atol=1e-3)
    np.testing.assert_allclose(v.ijk_to_world([10, 0, 0])[0] - v.ijk_to_world([0, 0, 0])[0], [30, 0, 0], atol=1e-6)
    nib = pytest.importorskip("nibabel", reason="nibabel gives an independent reading of the NIfTI affine")
    np.testing.assert_allclose(nib.load(str(path)).affine, v.ijk_to_ras, atol=1e-4)


def test_reorient_lps_volume_to_ras_keeps_every_voxel_in_place():
    arr = np.random.default_rng(0).normal(size=(4, 5, 6)).astype(np.float32)
    m = make_ijk_to_ras((1.0, 2.0, 3.0), (5, 6, 7), np.diag([-1.0, -1.0, 1.0]))  # i->L, j->P
    v = Volume(arr, m)
    r = reorient_to_ras(v)
    assert r.shape == (4, 5, 6)
    np.testing.assert_allclose(r.ijk_to_ras[:3, :3], np.diag([1.0, 2.0, 3.0]))
    # new voxel (0,0,0) is the old corner (3,4,0): RAS (5-3, 6-8, 7)
    np.testing.assert_allclose(r.ijk_to_ras[:3, 3], [2.0, -2.0, 7.0])
    for ijk in [(0, 0, 0), (3, 4, 5), (1, 2, 3)]:
        ras = r.ijk_to_world(ijk)
        old = np.rint(v.world_to_ijk(ras)[0]).astype(int)
        assert r.array[ijk] == v.array[tuple(old)]


def test_reorient_permuted_axes():
    # i->S, j->R, k->A (a sagittal-like acquisition)
    d = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=float)
    arr = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    v = Volume(arr, make_ijk_to_ras((1.5, 0.5, 2.0), (0, 0, 0), d))
    r = reorient_to_ras(v)
    assert r.shape == (3, 4, 2)
    np.testing.assert_allclose(r.ijk_to_ras[:3, :3], np.diag([0.5, 2.0, 1.5]))
    assert r.array[1, 2, 1] == v.array[1, 1, 2]


def test_reorient_oblique_volume_leaves_the_smallest_rotation():
    v = _oblique_volume()
    r = reorient_to_ras(v)
    _, _, d = decompose_ijk_to_ras(r.ijk_to_ras)
    assert np.all(np.diag(d) > 0.8)  # each axis within ~35 degrees of R, A, S
    for ijk in [(0, 0, 0), (4, 3, 2), (8, 6, 4)]:
        old = np.rint(v.world_to_ijk(r.ijk_to_world(ijk))[0]).astype(int)
        assert r.array[ijk] == v.array[tuple(old)]


def test_resample_reproduces_a_linear_world_ramp_on_an_oblique_grid():
    # f(ras) = 2x - 3y + 0.5z + 7 is reproduced exactly by trilinear interpolation
    src_m = make_ijk_to_ras((1.0, 1.0, 1.0), (-20, -20, -20))
    ijk = np.indices((41, 41, 41)).reshape(3, -1).T
    ras = apply_affine(src_m, ijk)
    f = lambda p: 2 * p[:, 0] - 3 * p[:, 1] + 0.5 * p[:, 2] + 7  # noqa: E731
    src = Volume(f(ras).reshape(41, 41, 41), src_m)
    target = _oblique_volume(shape=(6, 6, 4))
    target_grid = Grid(
        (6, 6, 4), target.ijk_to_ras + np.array([[0, 0, 0, 5], [0, 0, 0, -5], [0, 0, 0, -25], [0, 0, 0, 0]])
    )
    out = resample(src, target_grid, order=1)
    t_ras = apply_affine(target_grid.ijk_to_ras, np.indices((6, 6, 4)).reshape(3, -1).T)
    assert np.all(src.contains(t_ras))
    np.testing.assert_allclose(out.array.reshape(-1), f(t_ras), atol=1e-3)


def test_obliquity_of_known_rotations():
    assert obliquity_deg(make_ijk_to_ras((1, 2, 3), (0, 0, 0))) == pytest.approx(0.0, abs=1e-6)
    # 30 degrees about S after 10 about R: i is 30 degrees off R, j arccos(cos 30 cos 10) = 31.47 off A
    expected = np.degrees(np.arccos(np.cos(np.deg2rad(30)) * np.cos(np.deg2rad(10))))
    assert obliquity_deg(reorient_to_ras(_oblique_volume()).ijk_to_ras) == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(31.475, abs=1e-3)


def test_axis_aligned_ras_covers_the_oblique_scan_and_keeps_world_values():
    """An oblique, anisotropic, LPS-flipped scan of a linear world ramp, resampled onto RAS axes:
    the grid is axis-aligned with the scan's (RAS-ordered) voxel sizes, its box covers every
    corner of the scan, and the values at the same world points are the ramp's."""
    shape = (40, 30, 16)
    m = ijk_to_ras_from_itk(SPACING, ORIGIN_LPS, _oblique_direction_lps())
    f = lambda p: 2 * p[:, 0] - 3 * p[:, 1] + 0.5 * p[:, 2] + 7  # noqa: E731
    ras = apply_affine(m, np.indices(shape).reshape(3, -1).T)
    v = Volume(f(ras).reshape(shape).astype(np.float32), m, "oblique")
    out = axis_aligned_ras(v, fill_value=-1024.0)
    spacing, _, d = decompose_ijk_to_ras(out.ijk_to_ras)
    np.testing.assert_allclose(d, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(spacing, [0.7, 1.3, 2.5])  # i was closest to R, j to A, k to S
    assert out.grid.shape == covering_grid(v.grid).shape
    lo, hi = v.grid.bounds_ras()
    olo, ohi = out.grid.bounds_ras()
    assert np.all(olo <= lo + 1e-9) and np.all(ohi >= hi - 1e-9) and np.all(ohi - hi < spacing)
    pts = apply_affine(out.ijk_to_ras, np.indices(out.shape).reshape(3, -1).T)
    inner = v.grid.contains(pts, margin_voxels=-0.5)  # inside the scan's voxel centres: interpolated
    np.testing.assert_allclose(out.array.reshape(-1)[inner], f(pts[inner]), atol=2e-3)
    assert np.all(out.array.reshape(-1)[~v.grid.contains(pts, margin_voxels=0.5)] == -1024.0)  # outside: air


def test_axis_aligned_ras_only_reorders_a_scan_that_is_not_oblique():
    v = Volume(np.arange(60, dtype=np.float32).reshape(3, 4, 5), ijk_to_ras_from_itk((1, 2, 3), (5, 6, 7), np.eye(3)))
    out = axis_aligned_ras(v)
    np.testing.assert_array_equal(out.array, reorient_to_ras(v).array)  # LPS -> RAS flips, no interpolation
    np.testing.assert_array_equal(out.ijk_to_ras, reorient_to_ras(v).ijk_to_ras)


def test_resample_fills_outside_and_shifts_by_whole_voxels():
    arr = np.zeros((5, 5, 5), np.float32)
    arr[2, 2, 2] = 1
    v = Volume(arr, make_ijk_to_ras((2, 2, 2), (0, 0, 0)))
    shifted = Grid((5, 5, 5), make_ijk_to_ras((2, 2, 2), (2, 0, 0)))  # one voxel to +R
    out = resample(v, shifted, order=0, fill_value=-1)
    assert out.array[1, 2, 2] == 1
    assert out.array[4, 0, 0] == -1


def test_resized_grid_keeps_voxel_edges():
    g = Grid((4, 6, 8), make_ijk_to_ras((1.0, 1.0, 1.0), (0, 0, 0)))
    r = resized_grid(g, (2, 3, 2))
    # new index 0 covers old 0..1: centre at old 0.5; along k, 8->2: centre at old 1.5
    np.testing.assert_allclose(apply_affine(r.ijk_to_ras, [0, 0, 0])[0], [0.5, 0.5, 1.5])
    np.testing.assert_allclose(np.linalg.norm(r.ijk_to_ras[:3, :3], axis=0), [2.0, 2.0, 4.0])
    lo, hi = g.bounds_ras()
    lo2, hi2 = r.bounds_ras()
    np.testing.assert_allclose(lo, lo2)
    np.testing.assert_allclose(hi, hi2)


def test_points_outside_volume_are_named():
    v = _oblique_volume()
    inside = v.ijk_to_world([4, 3, 2])[0]
    outside = v.ijk_to_world([40, 3, 2])[0]
    require_inside(v.grid, [inside])
    with pytest.raises(GeometryError, match=r"1 of 2 landmarks lie outside the volume.*L2 at"):
        require_inside(v.grid, [inside, outside], what="landmarks", labels=["L1", "L2"])


def test_volume_rejects_non_3d_and_singular_geometry():
    with pytest.raises(InputError, match="must be 3D"):
        Volume(np.zeros((4, 4)), np.eye(4))
    with pytest.raises(GeometryError, match="invertible"):
        Volume(np.zeros((2, 2, 2)), np.zeros((4, 4)))
    with pytest.raises(GeometryError, match="spacing must be positive"):
        make_ijk_to_ras((1, 0, 1), (0, 0, 0))


def test_lps_to_ras_is_its_own_inverse():
    np.testing.assert_allclose(LPS_TO_RAS @ LPS_TO_RAS, np.eye(4))


# --- bad image files --------------------------------------------------------------


def test_missing_image_names_the_file(tmp_path):
    with pytest.raises(ImageReadError, match=r"nothere\.nii\.gz: no such file"):
        read_volume(tmp_path / "nothere.nii.gz")


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(ImageReadError, match=r"broken\.nii\.gz: cannot read image"):
        read_volume(bad)


def test_2d_and_4d_images_are_refused(tmp_path):
    import SimpleITK as sitk

    sitk.WriteImage(sitk.Image(8, 8, sitk.sitkFloat32), str(tmp_path / "slice.nrrd"))
    with pytest.raises(ImageReadError, match=r"slice\.nrrd: is a 2D image"):
        read_volume(tmp_path / "slice.nrrd")
    sitk.WriteImage(sitk.Image([4, 4, 4, 3], sitk.sitkFloat32), str(tmp_path / "phases.nii.gz"))
    with pytest.raises(ImageReadError, match=r"phases\.nii\.gz: is a 4D image"):
        read_volume(tmp_path / "phases.nii.gz")


def test_dicom_series_round_trip(tmp_path):
    """A DICOM series written slice by slice reads back with its geometry and modality."""
    from dicom_series import write_dicom_series

    arr = (np.arange(6 * 5 * 4).reshape(6, 5, 4) * 10 - 500).astype(np.int16)
    spacing = (0.8, 0.9, 2.0)
    folder = write_dicom_series(tmp_path / "series", arr, spacing, (-50.0, 20.0, 100.0), modality="CT")
    v = read_volume(folder)
    assert v.shape == (6, 5, 4)
    np.testing.assert_array_equal(v.array, arr)
    np.testing.assert_allclose(v.spacing, spacing, atol=1e-4)
    np.testing.assert_allclose(v.ijk_to_world([0, 0, 0])[0], [50.0, -20.0, 100.0], atol=1e-4)
    np.testing.assert_allclose(v.ijk_to_world([0, 0, 3])[0], [50.0, -20.0, 106.0], atol=1e-4)
    assert v.metadata["modality"] == "CT"


def test_write_is_atomic_and_refuses_unknown_extension(tmp_path):
    v = _oblique_volume()
    target = tmp_path / "out.nii.gz"
    write_volume(v, target)
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]  # no temporary left behind
    with pytest.raises(InputError, match=r"out\.png: cannot write images"):
        write_volume(v, tmp_path / "out.png")
