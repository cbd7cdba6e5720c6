"""Evaluation harness: baselines' landmark conventions on known transforms, the report."""

from __future__ import annotations

import numpy as np
import pytest

from MedDIFTLib.evaluation import Case, Identity, MedDIFTMethod, SimpleITKBSpline, evaluate, phantom_suite, write_report
from MedDIFTLib.geometry import Volume, make_ijk_to_ras
from MedDIFTLib.landmarks import PointSet


def _shifted_case(shift_vox=(3, -2, 2), spacing=3.0):
    """Moving = fixed content moved by a known shift: fixed point p is at p + shift in the moving scan."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    big = ndimage.gaussian_filter(rng.normal(size=(60, 60, 60)), 2.0).astype(np.float32) * 4000
    s = np.asarray(shift_vox)
    fixed = Volume(big[8:48, 8:48, 8:48], make_ijk_to_ras((spacing,) * 3, (0, 0, 0)))
    # moving voxel j shows fixed content at j - s: the content moved by +s voxels
    moving = Volume(big[8 - s[0]:48 - s[0], 8 - s[1]:48 - s[1], 8 - s[2]:48 - s[2]], fixed.ijk_to_ras.copy())
    pts = fixed.ijk_to_world(np.array([[15, 20, 18], [22, 14, 25], [18, 25, 20]], float))
    truth = pts + s * spacing
    return Case("synthetic", "shift", fixed, moving, PointSet(pts, ["a", "b", "c"]), PointSet(truth, ["a", "b", "c"]))


def test_bspline_baseline_maps_fixed_points_into_the_moving_scan():
    """The transform's direction and the LPS/RAS flip are right: a known shift is recovered."""
    case = _shifted_case()
    mapped = SimpleITKBSpline(mesh_mm=60.0, iterations=30, shrink=(2, 1), sigmas=(1.0, 0.0)).map_points(case)
    err = np.linalg.norm(mapped - case.moving_points.points, axis=1)
    before = np.linalg.norm(case.fixed_points.points - case.moving_points.points, axis=1)
    assert err.max() < 0.5 * before.min()


def test_meddift_method_maps_into_the_moving_scan(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDDIFT_WEIGHTS_DIR", str(tmp_path / "none"))
    case = _shifted_case()
    mapped = MedDIFTMethod(radius_mm=20.0).map_points(case)
    err = np.linalg.norm(mapped - case.moving_points.points, axis=1)
    assert np.median(err) < 3.0  # one 3 mm voxel


def test_report_on_a_small_phantom_suite(tmp_path):
    cases = phantom_suite(seeds=(1,), amplitudes=(20.0,), n_landmarks=6, shape=(64, 64, 64), spacing=(5.0, 5.0, 5.0))
    res = evaluate(cases, [Identity()], log=lambda m: None)
    report = write_report(res, tmp_path)
    text = report.read_text()
    assert "## phantom (1 cases; TRE in mm)" in text and "| identity | 6 |" in text
    assert (tmp_path / "phantom_tre_box.png").exists() and (tmp_path / "phantom_tre_vs_initial.png").exists()
    rows = (tmp_path / "landmarks.csv").read_text().splitlines()
    assert rows[0] == "dataset,case,method,label,tre_mm,initial_mm" and len(rows) == 7
    # identity: the TRE is the initial displacement
    for r in rows[1:]:
        f = r.split(",")
        assert float(f[4]) == pytest.approx(float(f[5]))


def test_learn2reg_layout_is_read_with_each_image_s_voxel_convention(tmp_path):
    """A phantom pair written in the Learn2Reg layout: keypoints in voxel indices of each image,
    the moving image on another (shifted, anisotropic) grid; the loader returns the true RAS pairs."""
    from MedDIFTLib.evaluation import learn2reg_cases
    from MedDIFTLib.geometry import make_ijk_to_ras
    from MedDIFTLib.image_io import write_volume
    from MedDIFTLib.landmarks import write_points
    from MedDIFTLib.phantom import make_pair, sample_landmarks

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
    from MedDIFTLib.errors import InputError

    with pytest.raises(InputError, match="case LungCT_0001: missing .*LungCT_0001_0001.csv"):
        list(learn2reg_cases(tmp_path))
