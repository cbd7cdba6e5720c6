"""Landmark files: exact coordinates, round trips, the real benchmark files, and every error."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import shared_file
from MedDIFTLib.data.geometry import Grid, Volume
from MedDIFTLib.data.landmark_io import (
    DIRLAB_4DCT_GEOMETRY,
    DIRLAB_COPD_GEOMETRY,
    read_points,
    write_points,
)
from MedDIFTLib.data.points import PointSet
from MedDIFTLib.errors import InputError, LandmarkFormatError

C30, S30 = np.sqrt(3.0) / 2.0, 0.5


def oblique_matrix():
    """i: 1.5 mm along (cos30, sin30, 0); j: 2.0 mm along -(-sin30, cos30, 0) (flipped); k: 3 mm along S."""
    m = np.eye(4)
    m[:3, 0] = 1.5 * np.array([C30, S30, 0.0])
    m[:3, 1] = -2.0 * np.array([-S30, C30, 0.0])
    m[:3, 2] = [0.0, 0.0, 3.0]
    m[:3, 3] = [10.0, -20.0, 5.0]
    return m


# voxel (2, 1, 4) of oblique_matrix(), by hand: origin + 3*(c, s, 0) - 2*(-s, c, 0) + 12*(0, 0, 1)
OBLIQUE_VOXEL = (2.0, 1.0, 4.0)
OBLIQUE_RAS = (10.0 + 3 * C30 + 2 * S30, -20.0 + 3 * S30 - 2 * C30, 17.0)  # (13.598076, -20.232051, 17)


def sample_set():
    return PointSet(
        [[1.5, -2.25, 3.0], [-40.125, 17.0, -1200.5], [0.1, 0.2, 0.3]],
        labels=["apex", "carina, left", "F-3"],
        values={"similarity": [0.91, 0.123456789, np.nan], "confidence": [0.5, 1.0, 0.25]},
        descriptions=["", "near the bifurcation", ""],
        locked=[False, True, False],
    )


def write_text(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


# ---------------------------------------------------------------------------
# PointSet
# ---------------------------------------------------------------------------


def test_pointset_defaults_labels_f1_to_fn_and_empty_values():
    ps = PointSet(np.zeros((3, 3)))
    assert len(ps) == 3
    assert ps.labels == ["F-1", "F-2", "F-3"]
    assert ps.values == {} and ps.descriptions == ["", "", ""] and not ps.locked.any()


def test_pointset_rejects_values_of_wrong_length():
    with pytest.raises(InputError, match="similarity.*2 entries for 3 points"):
        PointSet(np.zeros((3, 3)), values={"similarity": [1.0, 2.0]})


def test_pointset_subset_keeps_labels_values_in_given_order():
    ps = sample_set()
    sub = ps.subset([2, 0])
    assert sub.labels == ["F-3", "apex"]
    np.testing.assert_array_equal(sub.points, ps.points[[2, 0]])
    np.testing.assert_array_equal(sub.values["confidence"], [0.25, 0.5])
    assert ps.subset(np.array([False, True, False])).labels == ["carina, left"]


def test_label_index_finds_one_and_refuses_missing_or_duplicate():
    ps = PointSet(np.zeros((3, 3)), labels=["a", "b", "a"])
    assert ps.label_index("b") == 1
    assert ps.duplicate_labels() == {"a": [0, 2]}
    with pytest.raises(InputError, match="no point labelled 'z'"):
        ps.label_index("z")
    with pytest.raises(InputError, match="'a' is used by 2 points"):
        ps.label_index("a")


def test_from_voxel_through_oblique_flipped_anisotropic_matrix_matches_hand_value():
    ps = PointSet.from_voxel([OBLIQUE_VOXEL], oblique_matrix())
    np.testing.assert_allclose(ps.points[0], OBLIQUE_RAS, atol=1e-12)
    np.testing.assert_allclose(ps.to_voxel(oblique_matrix())[0], OBLIQUE_VOXEL, atol=1e-12)
    vol = Volume(np.zeros((4, 4, 6)), oblique_matrix())
    np.testing.assert_allclose(ps.to_voxel(vol)[0], OBLIQUE_VOXEL, atol=1e-12)
    np.testing.assert_allclose(ps.to_voxel(vol.grid)[0], OBLIQUE_VOXEL, atol=1e-12)


# ---------------------------------------------------------------------------
# exact coordinates, format by format
# ---------------------------------------------------------------------------


def test_dirlab_one_based_index_with_spacing_gives_benchmark_mm(tmp_path):
    p = write_text(tmp_path, "case1_300_T00_xyz.txt", "10\t20\t30\n 1.000000\t 1.000000\t 1.000000\t\n")
    ps = read_points(p, spacing=(0.97, 0.97, 2.5))
    np.testing.assert_allclose(ps.points, [[8.73, 18.43, 72.5], [0.0, 0.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(read_points(p, case="case1").points, ps.points, atol=1e-12)
    np.testing.assert_allclose(read_points(p, case="COPD1").points[0], [5.625, 11.875, 72.5], atol=1e-12)


def test_dirlab_index_with_reference_subtracts_one_then_uses_ijk_to_ras(tmp_path):
    p = write_text(tmp_path, "pts.txt", "3 2 5\n")  # 1-based (3, 2, 5) is ijk (2, 1, 4)
    ps = read_points(p, reference=oblique_matrix())
    np.testing.assert_allclose(ps.points[0], OBLIQUE_RAS, atol=1e-12)


def test_dirlab_geometry_tables_hold_published_values():
    assert DIRLAB_4DCT_GEOMETRY["case1"] == {"spacing": (0.97, 0.97, 2.5), "shape": (256, 256, 94)}
    assert DIRLAB_4DCT_GEOMETRY["case10"] == {"spacing": (0.97, 0.97, 2.5), "shape": (512, 512, 120)}
    assert DIRLAB_COPD_GEOMETRY["copd10"]["spacing"] == (0.742, 0.742, 2.5)
    assert len(DIRLAB_4DCT_GEOMETRY) == len(DIRLAB_COPD_GEOMETRY) == 10


def test_learn2reg_voxel_through_oblique_reference_matches_hand_value(tmp_path):
    p = write_text(tmp_path, "LungCT_0001_0000.csv", "2.0,1.0,4.0\n0,0,0\n")
    ps = read_points(p, "learn2reg", reference=oblique_matrix())
    np.testing.assert_allclose(ps.points, [OBLIQUE_RAS, [10.0, -20.0, 5.0]], atol=1e-12)


@pytest.mark.parametrize(
    "system_line, expected",
    [
        ("# CoordinateSystem = LPS", (-1.0, -2.0, 3.0)),
        ("# CoordinateSystem = 1", (-1.0, -2.0, 3.0)),
        ("# CoordinateSystem = RAS", (1.0, 2.0, 3.0)),
        ("# CoordinateSystem = 0", (1.0, 2.0, 3.0)),
    ],
)
def test_fcsv_point_1_2_3_in_lps_or_ras(tmp_path, system_line, expected):
    text = (
        "# Markups fiducial file version = 4.11\n" + system_line + "\n"
        "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n"
        '1,1,2,3,0,0,0,1,1,1,1,"a, b",similarity=0.75; seen twice,\n'
    )
    ps = read_points(write_text(tmp_path, "f.fcsv", text))
    np.testing.assert_array_equal(ps.points[0], expected)
    assert ps.labels == ["a, b"] and ps.locked[0]
    assert ps.values["similarity"][0] == 0.75 and ps.descriptions == ["seen twice"]


@pytest.mark.parametrize("system, expected", [("LPS", (-1.0, -2.0, 3.0)), ("RAS", (1.0, 2.0, 3.0))])
def test_mrk_json_point_1_2_3_in_lps_or_ras(tmp_path, system, expected):
    doc = {
        "@schema": "x",
        "markups": [
            {
                "type": "Fiducial",
                "coordinateSystem": system,
                "controlPoints": [
                    {"label": "P", "position": [1, 2, 3], "description": "similarity=0.91; confidence=0.5"}
                ],
            }
        ],
    }
    ps = read_points(write_text(tmp_path, "p.mrk.json", json.dumps(doc)))
    np.testing.assert_array_equal(ps.points[0], expected)
    assert ps.values == {"similarity": pytest.approx([0.91]), "confidence": pytest.approx([0.5])}


def test_mrk_json_undefined_point_reads_as_nan_row(tmp_path):
    doc = {
        "@schema": "x",
        "markups": [
            {
                "type": "Fiducial",
                "controlPoints": [{"label": "a", "position": [1, 2, 3]}, {"label": "b", "positionStatus": "undefined"}],
            }
        ],
    }
    ps = read_points(write_text(tmp_path, "p.mrk.json", json.dumps(doc)))
    assert ps.defined.tolist() == [True, False]
    assert np.isnan(ps.points[1]).all()


def test_elastix_point_file_is_lps(tmp_path):
    ps = read_points(write_text(tmp_path, "fixed.txt", "point\n1\n1 2 3\n"))
    np.testing.assert_array_equal(ps.points[0], [-1.0, -2.0, 3.0])


def test_elastix_index_file_goes_through_reference(tmp_path):
    p = write_text(tmp_path, "fixed.txt", "index\n1\n2 1 4\n")
    np.testing.assert_allclose(read_points(p, reference=oblique_matrix()).points[0], OBLIQUE_RAS, atol=1e-12)


def test_transformix_outputpoints_reads_output_point_by_default_and_other_fields(tmp_path):
    line = (
        "Point\t0\t; InputIndex = [ 2 1 4 ]\t; InputPoint = [ 1.000000 2.000000 3.000000 ]\t; "
        "OutputIndexFixed = [ 3 1 4 ]\t; OutputPoint = [ 1.500000 2.000000 3.250000 ]\t; "
        "Deformation = [ 0.500000 0.000000 0.250000 ]\n"
    )
    p = write_text(tmp_path, "outputpoints.txt", line * 2)
    ps = read_points(p)
    np.testing.assert_array_equal(ps.points, [[-1.5, -2.0, 3.25]] * 2)
    np.testing.assert_array_equal(ps.values["deformation_r"], [-0.5, -0.5])
    np.testing.assert_array_equal(read_points(p, field="InputPoint").points[0], [-1.0, -2.0, 3.0])
    inp = read_points(p, field="InputIndex", reference=oblique_matrix())
    np.testing.assert_allclose(inp.points[0], OBLIQUE_RAS, atol=1e-12)


def test_dirqa_mat_swaps_y_x_columns_by_default(tmp_path):
    from scipy.io import savemat

    p = tmp_path / "case1.mat"
    savemat(
        p,
        {
            "landmark_EE": np.array([[20, 10, 30]], dtype=np.uint8),
            "landmark_new_EI": np.array([[20.5, 10.0, 30.0]]),
            "landmark_changed_idx": np.array([[1]], np.uint8),
        },
    )
    ps = read_points(p, variable="landmark_EE", spacing=(0.97, 0.97, 2.5))
    np.testing.assert_allclose(ps.points[0], [8.73, 18.43, 72.5], atol=1e-12)
    raw = read_points(p, variable="landmark_EE", spacing=(0.97, 0.97, 2.5), swap_xy=False)
    np.testing.assert_allclose(raw.points[0], [18.43, 8.73, 72.5], atol=1e-12)
    new = read_points(p, variable="landmark_new_EI", case="case1")
    np.testing.assert_allclose(new.points[0], [8.73, 18.915, 72.5], atol=1e-12)
    assert new.values["changed"].tolist() == [1.0]


# ---------------------------------------------------------------------------
# round trips in every writable format
# ---------------------------------------------------------------------------

FULL = [
    ("p.csv", {}),
    ("p.mrk.json", {}),
    ("p.mrk.json", {"coordinate_system": "RAS"}),
    ("p.fcsv", {}),
    ("p.fcsv", {"coordinate_system": "RAS"}),
]


@pytest.mark.parametrize("name, opts", FULL)
def test_round_trip_keeps_points_labels_values_descriptions(tmp_path, name, opts):
    ps = sample_set()
    back = read_points(write_points(ps, tmp_path / name, **opts))
    np.testing.assert_allclose(back.points, ps.points, atol=1e-6)
    assert back.labels == ps.labels and back.descriptions == ps.descriptions
    assert back.locked.tolist() == ps.locked.tolist()
    assert set(back.values) == set(ps.values)
    for k in ps.values:
        np.testing.assert_allclose(back.values[k], ps.values[k], atol=1e-12, equal_nan=True)


@pytest.mark.parametrize(
    "fmt, opts",
    [
        ("learn2reg", {"reference": oblique_matrix()}),
        ("dirlab", {"spacing": (0.625, 0.625, 2.5)}),
        ("dirlab", {"reference": oblique_matrix()}),
        ("elastix", {}),
        ("elastix", {"kind": "index", "reference": oblique_matrix()}),
    ],
)
def test_round_trip_of_points_in_index_and_elastix_formats(tmp_path, fmt, opts):
    ps = sample_set()
    path = write_points(ps, tmp_path / "p.txt", fmt, **opts)
    read_opts = {k: v for k, v in opts.items() if k != "kind"}
    back = read_points(path, fmt, **read_opts)
    np.testing.assert_allclose(back.points, ps.points, atol=1e-6)


def test_written_lps_files_hold_flipped_coordinates(tmp_path):
    ps = PointSet([[1.0, 2.0, 3.0]])
    fcsv = write_points(ps, tmp_path / "a.fcsv").read_text().splitlines()
    assert fcsv[1] == "# CoordinateSystem = LPS" and fcsv[3].startswith("1,-1,-2,3,")
    doc = json.loads(write_points(ps, tmp_path / "a.mrk.json").read_text())
    assert doc["markups"][0]["coordinateSystem"] == "LPS"
    assert doc["markups"][0]["controlPoints"][0]["position"] == [-1.0, -2.0, 3.0]
    assert write_points(ps, tmp_path / "a.txt", "elastix").read_text() == "point\n1\n-1 -2 3\n"
    assert write_points(ps, tmp_path / "b.txt", "dirlab", spacing=(0.5, 1.0, 1.5)).read_text() == "3\t3\t3\n"


def test_undefined_points_survive_mrk_json_but_not_elastix(tmp_path):
    ps = PointSet([[1.0, 2.0, 3.0], [np.nan] * 3])
    back = read_points(write_points(ps, tmp_path / "u.mrk.json"))
    assert back.defined.tolist() == [True, False]
    with pytest.raises(InputError, match="cannot store points without a position.*F-2"):
        write_points(ps, tmp_path / "u.txt", "elastix")


def test_write_is_atomic_and_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "p.csv"
    write_points(sample_set(), target)
    before = target.read_text()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_points(PointSet([[9.0, 9.0, 9.0]]), target)
    assert target.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]


# ---------------------------------------------------------------------------
# Slicer's own readers and writers (slicer-core), when installed
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mrml():
    return pytest.importorskip("slicer_core", reason="slicer-core (3D Slicer's MRML in Python) is not installed")


def _slicer_storage(mrml, ext):
    return mrml.vtkMRMLMarkupsJsonStorageNode() if ext == "mrk.json" else mrml.vtkMRMLMarkupsFiducialStorageNode()


@pytest.mark.parametrize("ext", ["mrk.json", "fcsv"])
@pytest.mark.parametrize("system", ["LPS", "RAS"])
def test_slicer_reads_our_markups_files_at_the_same_ras_points(tmp_path, mrml, ext, system):
    ps = sample_set()
    path = write_points(ps, tmp_path / f"ours.{ext}", coordinate_system=system)
    scene = mrml.vtkMRMLScene()
    node, storage = mrml.vtkMRMLMarkupsFiducialNode(), _slicer_storage(mrml, ext)
    scene.AddNode(node)
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1
    assert node.GetNumberOfControlPoints() == len(ps)
    for i in range(len(ps)):
        np.testing.assert_allclose(node.GetNthControlPointPosition(i), ps.points[i], atol=1e-6)
        assert node.GetNthControlPointLabel(i) == ps.labels[i]
        assert bool(node.GetNthControlPointLocked(i)) == bool(ps.locked[i])
    assert node.GetNthControlPointDescription(0) == "similarity=0.91; confidence=0.5"


@pytest.mark.parametrize("ext", ["mrk.json", "fcsv"])
def test_we_read_files_written_by_slicer(tmp_path, mrml, ext):
    scene = mrml.vtkMRMLScene()
    node, storage = mrml.vtkMRMLMarkupsFiducialNode(), _slicer_storage(mrml, ext)
    scene.AddNode(node)
    scene.AddNode(storage)
    node.AddControlPoint([1.0, 2.0, 3.0], "A,b")
    node.AddControlPoint([-4.5, 5.0, 6.25], "B")
    node.SetNthControlPointDescription(1, "similarity=0.5; confidence=1")
    node.SetNthControlPointLocked(1, True)
    path = tmp_path / f"slicer.{ext}"
    storage.SetFileName(str(path))
    assert storage.WriteData(node) == 1
    ps = read_points(path)
    np.testing.assert_allclose(ps.points, [[1.0, 2.0, 3.0], [-4.5, 5.0, 6.25]], atol=1e-9)
    assert ps.labels == ["A,b", "B"] and ps.locked.tolist() == [False, True]
    np.testing.assert_allclose(ps.values["confidence"], [np.nan, 1.0], equal_nan=True)


# ---------------------------------------------------------------------------
# the real files in ../shared
# ---------------------------------------------------------------------------


def test_real_copd1_text_files_have_300_points_and_known_first_rows():
    ins = read_points(shared_file("landmarks/dirlab-copd/copd1_300_iBH_xyz_r1.txt"), case="copd1")
    exp = read_points(shared_file("landmarks/dirlab-copd/copd1_300_eBH_xyz_r1.txt"), case="copd1")
    assert len(ins) == len(exp) == 300
    # first rows "188 260 4" and "194.000000 257.000000 7.000000", (index - 1) * (0.625, 0.625, 2.5)
    np.testing.assert_allclose(ins.points[0], [116.875, 161.875, 7.5], atol=1e-9)
    np.testing.assert_allclose(exp.points[0], [120.625, 160.0, 15.0], atol=1e-9)


@pytest.mark.parametrize("case", range(1, 11))
def test_real_dirqa_mat_files_hold_300_points_per_variable(case):
    path = shared_file(f"landmarks/dirlab-4dct/case{case}.mat")
    for var in ("landmark_EE", "landmark_dirlab_EI", "landmark_new_EI"):
        ps = read_points(path, variable=var, case=f"case{case}")
        assert ps.points.shape == (300, 3) and np.all(ps.defined)
        # after the swap, x (left-right) spreads wider than y (antero-posterior), as in a thorax
        assert ps.points[:, 0].std() > 1.2 * ps.points[:, 1].std()
        # inside the published image extent
        shape = np.array(DIRLAB_4DCT_GEOMETRY[f"case{case}"]["shape"])
        spacing = np.array(DIRLAB_4DCT_GEOMETRY[f"case{case}"]["spacing"])
        assert np.all(ps.points >= 0) and np.all(ps.points <= (shape - 1) * spacing)
    assert set(np.unique(ps.values["changed"])) <= {0.0, 1.0}


def test_real_dirqa_case1_reproduces_published_initial_error_3_89_mm():
    path = shared_file("landmarks/dirlab-4dct/case1.mat")
    ee = read_points(path, variable="landmark_EE", case="case1")
    ei = read_points(path, variable="landmark_dirlab_EI", case="case1")
    d = np.linalg.norm(ee.points - ei.points, axis=1)
    assert d.mean() == pytest.approx(3.89, abs=0.005)
    assert d.std() == pytest.approx(2.78, abs=0.01)


def test_real_elastix_point_sets_have_equal_counts_and_lps_first_point():
    fixed = read_points(shared_file("landmarks/elastix-ct3d-lung/itkelastix_CT_3D_lung_fixed_point_set_corrected.txt"))
    moving = read_points(
        shared_file("landmarks/elastix-ct3d-lung/itkelastix_CT_3D_lung_moving_point_set_corrected.txt")
    )
    assert len(fixed) == len(moving) == 51
    np.testing.assert_allclose(fixed.points[0], [36.351, 36.974, -1204.5], atol=1e-9)
    full = read_points(shared_file("landmarks/elastix-ct3d-lung/itkelastix_CT_3D_lung_fixed_point_set.txt"))
    assert len(full) == 100


def test_real_elastix_lung_baseline_points_sit_on_voxel_centres_of_the_baseline_grid():
    from MedDIFTLib.data.image_io import read_volume

    mask = read_volume(shared_file("ct/elastix-lung/3DCT_lung_baseline_mask.mha"))
    ps = read_points(shared_file("ct/elastix-lung/3DCT_lung_baseline_landmarks.txt"))
    assert len(ps) == 100
    ijk = ps.to_voxel(mask)  # only right if LPS was flipped to RAS: else far off the lattice
    np.testing.assert_allclose(ijk, np.round(ijk), atol=1e-6)


@pytest.mark.parametrize("scan", ["baseline", "followup"])
def test_real_elastix_lung_index_files_land_inside_the_lung_mask(scan):
    from MedDIFTLib.data.image_io import read_volume

    mask = read_volume(shared_file(f"ct/elastix-lung/3DCT_lung_{scan}_mask.mha"))
    ps = read_points(shared_file(f"ct/elastix-lung/3DCT_lung_{scan}.txt"), reference=mask)
    assert len(ps) == 10
    ijk = np.round(ps.to_voxel(mask)).astype(int)
    assert np.all(mask.array[tuple(ijk.T)] == 1)
    if scan == "baseline":  # index (94, 92, 114): LPS origin + index * (1.366, 1.366, 2.5), flipped
        np.testing.assert_allclose(ps.points[0], [25.423, 24.680, -1149.5], atol=1e-3)


# ---------------------------------------------------------------------------
# errors name the file and the problem
# ---------------------------------------------------------------------------


def test_error_missing_file(tmp_path):
    with pytest.raises(LandmarkFormatError, match=r"nothere\.csv: no such file"):
        read_points(tmp_path / "nothere.csv")


@pytest.mark.parametrize("name", ["empty.csv", "empty.fcsv", "empty.mrk.json", "empty.txt"])
def test_error_empty_file(tmp_path, name):
    path = write_text(tmp_path, name, "\n  \n")
    with pytest.raises(LandmarkFormatError, match=rf"{name}: file is empty"):
        read_points(path)


def test_error_non_numeric_value_names_line(tmp_path):
    p = write_text(tmp_path, "landmarks.txt", "1 2 3\n4 5 6\n7 8 9\n1 abc 3\n")
    with pytest.raises(LandmarkFormatError, match=r"landmarks\.txt line 4: expected 3 numbers, got '1 abc 3'"):
        read_points(p, spacing=(1, 1, 1))


def test_error_wrong_column_count(tmp_path):
    p = write_text(tmp_path, "pts.txt", "1 2 3\n1 2\n")
    with pytest.raises(LandmarkFormatError, match=r"pts\.txt line 2: expected 3 numbers, got 2"):
        read_points(p, spacing=(1, 1, 1))
    c = write_text(tmp_path, "pts.csv", "label,x,y,z\na,1,2,3\nb,1,2\n")
    with pytest.raises(LandmarkFormatError, match=r"pts\.csv line 3: expected 4 columns .* got 3"):
        read_points(c)


def test_error_csv_missing_columns_and_missing_header(tmp_path):
    with pytest.raises(LandmarkFormatError, match=r"a\.csv line 1: header has no column\(s\) 'z'"):
        read_points(write_text(tmp_path, "a.csv", "label,x,y\np,1,2\n"))
    with pytest.raises(
        LandmarkFormatError, match=r"b\.csv line 1: no header row.*format learn2reg \(points_format = learn2reg\)"
    ):
        read_points(write_text(tmp_path, "b.csv", "1,2,3\n"))
    with pytest.raises(LandmarkFormatError, match=r"c\.csv line 2: column 'similarity' must be a number, got 'high'"):
        read_points(write_text(tmp_path, "c.csv", "label,x,y,z,similarity\np,1,2,3,high\n"))


def test_csv_accepts_r_a_s_header(tmp_path):
    ps = read_points(write_text(tmp_path, "ras.csv", "label,r,a,s\np,1,2,3\n"))
    np.testing.assert_array_equal(ps.points[0], [1.0, 2.0, 3.0])


def test_error_elastix_count_mismatch(tmp_path):
    p = write_text(tmp_path, "fixed.txt", "point\n3\n1 2 3\n4 5 6\n")
    with pytest.raises(LandmarkFormatError, match=r"fixed\.txt line 2: says 3 points but the file has 2"):
        read_points(p)


def test_error_unknown_extension_and_format_list_supported(tmp_path):
    p = write_text(tmp_path, "points.xyz", "1 2 3\n")
    with pytest.raises(LandmarkFormatError, match=r"points\.xyz: unknown landmark file extension '\.xyz'.*mrk\.json"):
        read_points(p)
    with pytest.raises(LandmarkFormatError, match=r"points\.xyz: cannot read landmark format 'vtk'; supported: csv, "):
        read_points(p, "vtk")
    with pytest.raises(LandmarkFormatError, match=r"p\.mat: DIR-QA \.mat files are read-only"):
        write_points(sample_set(), tmp_path / "p.mat")
    with pytest.raises(
        LandmarkFormatError,
        match=r"p\.txt: a \.txt landmark file is written as elastix or dirlab.*name the output \.csv",
    ):
        write_points(sample_set(), tmp_path / "p.txt")


@pytest.mark.parametrize(
    "name, text, fmt, needs",
    [
        ("k.csv", "1,2,3\n", "learn2reg", "reference="),
        ("e.txt", "index\n1\n1 2 3\n", None, "reference="),
        ("d.txt", "1 2 3\n", None, "spacing="),
    ],
)
def test_error_voxel_index_format_without_geometry(tmp_path, name, text, fmt, needs):
    p = write_text(tmp_path, name, text)
    with pytest.raises(LandmarkFormatError, match=rf"{name}: format .*voxel indices; pass .*{needs}"):
        read_points(p, fmt)


def test_error_writing_voxel_formats_without_geometry(tmp_path):
    with pytest.raises(LandmarkFormatError, match=r"k\.csv: format learn2reg .*reference="):
        write_points(sample_set(), tmp_path / "k.csv", "learn2reg")
    with pytest.raises(LandmarkFormatError, match=r"i\.txt: format elastix 'index'.*reference="):
        write_points(sample_set(), tmp_path / "i.txt", "elastix", kind="index")


def test_error_json_that_is_not_a_markups_point_list(tmp_path):
    with pytest.raises(LandmarkFormatError, match=r"a\.mrk\.json: not a Slicer markups file"):
        read_points(write_text(tmp_path, "a.mrk.json", '{"points": [[1, 2, 3]]}'))
    with pytest.raises(LandmarkFormatError, match=r"b\.mrk\.json line 1: not valid JSON"):
        read_points(write_text(tmp_path, "b.mrk.json", "{markups"))
    line = {"@schema": "x", "markups": [{"type": "Line", "controlPoints": []}]}
    with pytest.raises(LandmarkFormatError, match=r"c\.mrk\.json: holds 0 point lists .*found types: Line"):
        read_points(write_text(tmp_path, "c.mrk.json", json.dumps(line)))
    bad = {"@schema": "x", "markups": [{"type": "Fiducial", "controlPoints": [{"label": "q", "position": [1, 2]}]}]}
    with pytest.raises(LandmarkFormatError, match=r"d\.mrk\.json: control point 1 \('q'\): position must be 3 numbers"):
        read_points(write_text(tmp_path, "d.mrk.json", json.dumps(bad)))


def test_error_fcsv_unknown_coordinate_system(tmp_path):
    p = write_text(tmp_path, "f.fcsv", "# CoordinateSystem = 2\n1,1,2,3\n")
    with pytest.raises(LandmarkFormatError, match=r"f\.fcsv line 1: CoordinateSystem '2' is not supported"):
        read_points(p)


def test_error_mat_variable_missing_or_ambiguous(tmp_path):
    from scipy.io import savemat

    p = tmp_path / "case1.mat"
    savemat(p, {"landmark_EE": np.ones((2, 3)), "landmark_new_EI": np.ones((2, 3))})
    with pytest.raises(LandmarkFormatError, match=r"case1\.mat: holds 2 point variables .*variable="):
        read_points(p, case="case1")
    with pytest.raises(LandmarkFormatError, match=r"case1\.mat: has no variable 'landmark_XX'; it holds landmark_EE"):
        read_points(p, variable="landmark_XX", case="case1")


def test_error_mat_v73_without_h5py_says_to_install_it(tmp_path):
    try:
        import h5py  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("h5py is installed: the missing-h5py message cannot be shown")
    p = tmp_path / "case1.mat"
    p.write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(512, b" "))
    with pytest.raises(LandmarkFormatError, match=r"case1\.mat: is a MATLAB v7\.3 \(HDF5\) file; .*needs the h5py"):
        read_points(p, variable="landmark_EE", case="case1")


def test_error_option_that_does_not_apply_to_the_format(tmp_path):
    p = write_text(tmp_path, "p.csv", "label,x,y,z\na,1,2,3\n")
    with pytest.raises(InputError, match=r"p\.csv: option\(s\) spacing do not apply to landmark format 'csv'"):
        read_points(p, spacing=(1, 1, 1))


def test_error_dirlab_geometry_given_twice_or_unknown_case(tmp_path):
    p = write_text(tmp_path, "d.txt", "1 2 3\n")
    with pytest.raises(InputError, match=r"d\.txt: pass only one of reference, spacing or case"):
        read_points(p, spacing=(1, 1, 1), case="case1")
    with pytest.raises(InputError, match=r"unknown DIR-Lab case 'case11'"):
        read_points(p, case="case11")


def test_grid_reference_is_accepted(tmp_path):
    p = write_text(tmp_path, "k.csv", "2,1,4\n")
    ps = read_points(p, "learn2reg", reference=Grid((4, 4, 6), oblique_matrix()))
    np.testing.assert_allclose(ps.points[0], OBLIQUE_RAS, atol=1e-12)
