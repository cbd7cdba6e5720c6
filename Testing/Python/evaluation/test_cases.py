"""Benchmark layouts: Learn2Reg and DIR-Lab (raw .img and converted), each landmark read in its own
image's voxel convention; real DIR-Lab landmark files where ../shared has them."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_file
from MedDIFTLib.data.landmark_io import write_points
from MedDIFTLib.data.points import PointSet
from MedDIFTLib.errors import ImageReadError, InputError
from MedDIFTLib.evaluation.cases import (
    dirlab_4dct_cases,
    dirlab_copd_cases,
    learn2reg_cases,
    read_dirlab_image,
)


def _write_raw(path, array_ijk, shift=1024):
    """DIR-Lab's published format: little-endian int16, x fastest, no header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (np.asarray(array_ijk) + shift).astype("<i2").transpose(2, 1, 0).tofile(path)


def test_raw_image_geometry_intensity_and_voxel_order(tmp_path):
    arr = np.full((8, 6, 5), -1000, np.int16)
    arr[2, 1, 3] = 40  # one bright voxel at i=2, j=1, k=3
    _write_raw(tmp_path / "a.img", arr)
    vol = read_dirlab_image(tmp_path / "a.img", spacing=(0.97, 0.97, 2.5), inplane=(8, 6), slices=5)
    assert vol.shape == (8, 6, 5) and vol.array[2, 1, 3] == 40 and vol.array[0, 0, 0] == -1000
    assert vol.metadata["intensity_offset"] == -1024
    # ITK identity directions in LPS: i to the left, j posterior, k superior; index 0 at the origin
    np.testing.assert_allclose(vol.ijk_to_world([[1, 2, 3]]), [[-0.97, -1.94, 7.5]])
    _write_raw(tmp_path / "hu.img", arr, shift=0)  # already in HU: left as it is
    assert read_dirlab_image(tmp_path / "hu.img", (1, 1, 1), (8, 6)).metadata["intensity_offset"] == 0
    with pytest.raises(ImageReadError, match=r"has 5 slices of 8x6, the published size is 94"):
        read_dirlab_image(tmp_path / "a.img", (1, 1, 1), (8, 6), slices=94)
    (tmp_path / "cut.img").write_bytes((tmp_path / "a.img").read_bytes()[:-7])
    with pytest.raises(ImageReadError, match=r"cut.img: 473 bytes is not a whole number of 8x6 int16 slices"):
        read_dirlab_image(tmp_path / "cut.img", (1, 1, 1), (8, 6))


def _scan_and_indices(shape, seed):
    """A CT-like int16 array and 1-based landmark indices inside it."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(-1000, 1500, size=shape).astype(np.int16)
    idx = np.stack([rng.integers(1, n + 1, size=6) for n in shape], axis=1)
    return arr, idx


def test_dirlab_copd_layout_reads_raw_images_and_one_based_landmarks(tmp_path):
    """copd2 (512x512 slices, 0.645 mm) in the nested folder layout: the voxels come back exactly and
    each landmark sits on the voxel its 1-based index names, in each image's own geometry."""
    folder = tmp_path / "copd2" / "copd2"
    data = {}
    for seed, phase in enumerate(("iBH", "eBH")):
        arr, idx = _scan_and_indices((512, 512, 4), seed)
        _write_raw(folder / f"copd2_{phase}CT.img", arr)
        np.savetxt(folder / f"copd2_300_{phase}_xyz_r1.txt", idx, fmt="%d", delimiter="\t")
        data[phase] = (arr, idx)
    (case,) = list(dirlab_copd_cases(tmp_path))
    assert (case.dataset, case.name) == ("dirlab-copd", "copd2")
    np.testing.assert_array_equal(case.fixed.array, data["iBH"][0])
    np.testing.assert_array_equal(case.moving.array, data["eBH"][0])
    np.testing.assert_allclose(np.diag(case.fixed.ijk_to_ras)[:3], [-0.645, -0.645, 2.5])
    np.testing.assert_allclose(case.fixed.world_to_ijk(case.fixed_points.points), data["iBH"][1] - 1, atol=1e-9)
    np.testing.assert_allclose(case.moving.world_to_ijk(case.moving_points.points), data["eBH"][1] - 1, atol=1e-9)
    # the value at the first landmark is the value at its voxel
    i, j, k = data["iBH"][1][0] - 1
    assert case.fixed.array[i, j, k] == data["iBH"][0][i, j, k]


def test_dirlab_4dct_layout_raw_and_converted_images(tmp_path):
    from MedDIFTLib.data.geometry import Volume, make_ijk_to_ras
    from MedDIFTLib.data.image_io import write_volume

    root = tmp_path / "dirlab"
    images, extreme = root / "Case1Pack" / "Images", root / "Case1Pack" / "ExtremePhases"
    extreme.mkdir(parents=True)
    data = {}
    for seed, phase in enumerate(("T00", "T50")):
        arr, idx = _scan_and_indices((256, 256, 94), seed)
        _write_raw(images / f"case1_{phase}_s.img", arr)
        np.savetxt(extreme / f"Case1_300_{phase}_xyz.txt", idx, fmt="%d")
        data[phase] = (arr, idx)
    (case,) = list(dirlab_4dct_cases(root))
    assert case.name == "case1" and case.fixed.shape == (256, 256, 94)
    np.testing.assert_allclose(np.diag(case.fixed.ijk_to_ras)[:3], [-0.97, -0.97, 2.5])
    np.testing.assert_allclose(case.moving.world_to_ijk(case.moving_points.points), data["T50"][1] - 1, atol=1e-9)
    # a converted T50 image (NIfTI with its own oblique geometry) is used when there is no raw one
    a = np.deg2rad(20)
    oblique = make_ijk_to_ras(
        (0.9, 1.1, 2.5), (-120.0, 80.0, -60.0), [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    )
    (images / "case1_T50_s.img").unlink()
    write_volume(Volume(data["T50"][0], oblique), images / "case1_T50_s.nii.gz")
    (case,) = list(dirlab_4dct_cases(root))
    np.testing.assert_allclose(case.moving_points.points, case.moving.ijk_to_world(data["T50"][1] - 1), atol=1e-9)
    np.testing.assert_allclose(case.moving.ijk_to_ras, oblique, atol=1e-5)
    # a missing landmark file is named
    (extreme / "Case1_300_T50_xyz.txt").unlink()
    with pytest.raises(InputError, match=r"DIR-Lab case1: no T50 landmark file under .*Case1Pack"):
        list(dirlab_4dct_cases(root))
    with pytest.raises(InputError, match=r"no DIR-Lab 4DCT case folders"):
        list(dirlab_4dct_cases(tmp_path / "empty"))


def test_real_copd1_landmarks_through_the_loader_give_the_published_initial_error(tmp_path):
    """copd1 (121 slices of 512x512, 0.625 mm): the published mean displacement is 26.33 mm.
    The images are not available: an empty file of the right size stands in for each."""
    ins = shared_file("landmarks/dirlab-copd/copd1_300_iBH_xyz_r1.txt")
    exh = shared_file("landmarks/dirlab-copd/copd1_300_eBH_xyz_r1.txt")
    folder = tmp_path / "copd1"
    folder.mkdir()
    for phase, src in (("iBH", ins), ("eBH", exh)):
        with open(folder / f"copd1_{phase}CT.img", "wb") as f:
            f.truncate(512 * 512 * 121 * 2)  # sparse: no 63 MB written
        (folder / f"copd1_300_{phase}_xyz_r1.txt").write_bytes(src.read_bytes())
    (case,) = list(dirlab_copd_cases(tmp_path))
    assert case.fixed.shape == (512, 512, 121) and len(case.fixed_points) == 300
    d = np.linalg.norm(case.fixed_points.points - case.moving_points.points, axis=1)
    assert d.mean() == pytest.approx(26.33, abs=0.01)


def test_learn2reg_layout_is_read_with_each_image_s_voxel_convention(tmp_path):
    """A phantom pair written in the Learn2Reg layout: keypoints in voxel indices of each image,
    the moving image on another (shifted, anisotropic) grid; the loader returns the true RAS pairs."""
    from MedDIFTLib.data.geometry import make_ijk_to_ras
    from MedDIFTLib.data.image_io import write_volume
    from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks

    moving_grid = make_ijk_to_ras((5.0, 4.0, 6.0), (-150.0, -130.0, -160.0))
    pair = make_pair(shape=(64, 64, 56), spacing=(5.0, 5.0, 5.0), seed=3, moving_ijk_to_ras=moving_grid)
    lm = sample_landmarks(pair, n=5, seed=3)
    truth = PointSet(pair.true_moving_points(lm.points), lm.labels)
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "keypointsTr").mkdir()
    write_volume(pair.fixed, tmp_path / "imagesTr" / "LungCT_0001_0000.nii.gz")
    write_volume(pair.moving, tmp_path / "imagesTr" / "LungCT_0001_0001.nii.gz")
    write_points(lm, tmp_path / "keypointsTr" / "LungCT_0001_0000.csv", format="learn2reg", reference=pair.fixed)
    write_points(truth, tmp_path / "keypointsTr" / "LungCT_0001_0001.csv", format="learn2reg", reference=pair.moving)
    cases = list(learn2reg_cases(tmp_path))
    assert [c.name for c in cases] == ["LungCT_0001"]
    np.testing.assert_allclose(cases[0].fixed_points.points, lm.points, atol=1e-3)
    np.testing.assert_allclose(cases[0].moving_points.points, truth.points, atol=1e-3)
    (tmp_path / "keypointsTr" / "LungCT_0001_0001.csv").unlink()
    with pytest.raises(InputError, match="case LungCT_0001: missing .*LungCT_0001_0001.csv"):
        list(learn2reg_cases(tmp_path))
