"""Scene code against a real MRML scene (PyPI's slicer-core): volumes, markups, transforms, events."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (Slicer's MRML library) is not installed")
vtk = pytest.importorskip("vtk")

from MedDIFTLib.data.geometry import Volume, apply_affine, ijk_to_ras_from_itk  # noqa: E402
from MedDIFTLib.data.points import PointSet  # noqa: E402
from MedDIFTLib.errors import InputError  # noqa: E402
from MedDIFTSceneLib.scene import (  # noqa: E402
    PointEvents,
    add_volume_node,
    numpy_to_vtk_matrix,
    output_markups_node,
    pointset_from_markups,
    show_heatmap,
    volume_from_node,
    write_markups,
)


@pytest.fixture
def scene():
    s = slicer.vtkMRMLScene()
    logic = slicer.vtkMRMLColorLogic()
    logic.SetMRMLScene(s)  # adds Slicer's default colour tables
    yield s
    logic.SetMRMLScene(None)


def _oblique_volume(shape=(7, 6, 5)):
    a = np.deg2rad(30.0)
    d = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ np.diag([-1.0, 1.0, 1.0])
    arr = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    return Volume(arr, ijk_to_ras_from_itk((0.7, 1.3, 2.5), (10.0, -20.0, 30.0), d), "ct")


def _linear_transform(scene, matrix):
    t = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    t.SetMatrixTransformToParent(numpy_to_vtk_matrix(matrix))
    return t


def test_volume_round_trip_keeps_voxels_and_oblique_geometry(scene):
    vol = _oblique_volume()
    node = add_volume_node(scene, vol, "ct")
    back = volume_from_node(node)
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.ijk_to_ras, vol.ijk_to_ras, atol=1e-9)
    # the node's own IJK-to-RAS (what Slicer shows) maps voxel (2,3,4) where the engine does
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    p = m.MultiplyPoint([2, 3, 4, 1])[:3]
    np.testing.assert_allclose(p, vol.ijk_to_world([2, 3, 4])[0], atol=1e-9)


def test_volume_under_a_linear_transform_is_read_in_world_coordinates(scene):
    vol = _oblique_volume()
    node = add_volume_node(scene, vol, "ct")
    shift = np.eye(4)
    shift[:3, 3] = [5.0, -7.0, 11.0]
    rot = np.eye(4)
    rot[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    t = _linear_transform(scene, shift @ rot)
    node.SetAndObserveTransformNodeID(t.GetID())
    back = volume_from_node(node)
    np.testing.assert_allclose(
        back.ijk_to_world([2, 3, 4])[0], apply_affine(shift @ rot, vol.ijk_to_world([2, 3, 4]))[0], atol=1e-9
    )


def test_nonlinear_parent_transform_is_refused_with_advice(scene):
    node = add_volume_node(scene, _oblique_volume(), "ct")
    grid = scene.AddNewNodeByClass("vtkMRMLGridTransformNode")
    node.SetAndObserveTransformNodeID(grid.GetID())
    with pytest.raises(InputError, match="non-linear transform.*harden"):
        volume_from_node(node)


def test_markups_read_world_positions_labels_and_undefined_points(scene):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "F")
    node.AddControlPoint(vtk.vtkVector3d(1, 2, 3), "lesion")
    node.AddControlPoint(vtk.vtkVector3d(4, 5, 6), "carina")
    node.UnsetNthControlPointPosition(1)
    m = np.eye(4)
    m[:3, 3] = [10, 0, 0]
    t = _linear_transform(scene, m)
    node.SetAndObserveTransformNodeID(t.GetID())
    ps = pointset_from_markups(node)
    assert ps.labels == ["lesion", "carina"]
    np.testing.assert_allclose(ps.points[0], [11, 2, 3])
    assert np.all(np.isnan(ps.points[1]))


def test_write_markups_puts_values_in_descriptions_and_locks(scene):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "out")
    ps = PointSet(
        np.array([[1.0, 2.0, 3.0], [np.nan, np.nan, np.nan]]),
        ["a", "b"],
        {"similarity": np.array([0.91, np.nan]), "confidence": np.array([0.5, np.nan])},
    )
    write_markups(node, ps)
    assert node.GetNumberOfControlPoints() == 2
    assert node.GetNthControlPointDescription(0) == "similarity=0.91; confidence=0.5"
    assert node.GetNthControlPointLocked(0)
    assert node.GetNthControlPointPositionStatus(1) == node.PositionUndefined
    p = [0.0, 0.0, 0.0]
    node.GetNthControlPointPositionWorld(0, p)
    assert p == [1.0, 2.0, 3.0]


def test_existing_points_are_never_overwritten_without_asking(scene):
    user = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "mine")
    user.AddControlPoint(vtk.vtkVector3d(1, 1, 1), "keep")
    with pytest.raises(InputError, match="already has points"):
        output_markups_node(scene, "out", user)
    with pytest.raises(InputError, match="already has points"):
        output_markups_node(scene, "out", user, overwrite=lambda node: False)
    assert output_markups_node(scene, "out", user, overwrite=lambda node: True) is user
    fresh = output_markups_node(scene, "out")
    assert fresh is not user and fresh.GetNumberOfControlPoints() == 0


def test_heatmap_display_uses_a_colour_table_and_threshold(scene):
    hm = _oblique_volume().with_array(np.linspace(-0.2, 0.9, 7 * 6 * 5).reshape(7, 6, 5).astype(np.float32))
    node = add_volume_node(scene, hm, "similarity")
    show_heatmap(scene, node, threshold=0.3)
    disp = node.GetDisplayNode()
    assert disp.GetColorNodeID() is not None and "ColorTableNode" in disp.GetColorNodeID()
    assert disp.GetApplyThreshold()
    assert disp.GetLowerThreshold() == pytest.approx(0.3)
    assert disp.GetWindowLevelMax() == pytest.approx(0.9, abs=1e-6)


def test_point_events_fire_on_placement_and_moves_but_not_while_paused(scene):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "F")
    calls = []
    ev = PointEvents(node, calls.append)
    node.AddControlPoint(vtk.vtkVector3d(1, 2, 3), "a")
    node.AddControlPoint(vtk.vtkVector3d(4, 5, 6), "b")
    assert calls == [0, 1]
    node.SetNthControlPointPosition(0, 7, 8, 9)
    assert calls == [0, 1, 0]
    node.SetNthControlPointLabel(0, "renamed")  # no move: no new match
    assert calls == [0, 1, 0]
    with ev.pause():
        node.SetNthControlPointPosition(1, 0, 0, 0)
    assert calls == [0, 1, 0]
    # a drag: intermediate moves are skipped, the end of the interaction matches once
    _invoke_int(node, node.PointStartInteractionEvent, 1)
    node.SetNthControlPointPosition(1, 1, 1, 1)
    node.SetNthControlPointPosition(1, 2, 2, 2)
    assert calls == [0, 1, 0]
    _invoke_int(node, node.PointEndInteractionEvent, 1)
    assert calls == [0, 1, 0, 1]
    ev.remove()
    node.SetNthControlPointPosition(0, 0, 0, 0)
    assert calls == [0, 1, 0, 1]


def _invoke_int(node, event, index):
    """Invoke a markups event with the point index as call data, as Slicer's interaction widget does."""
    node.InvokeEvent(event, index)


def test_module_side_libraries_load_without_torch():
    """The Slicer module must load before its dependencies are installed (they come on first Apply)."""
    import subprocess
    import sys

    from conftest import REPO

    code = (
        f"import sys; sys.path.insert(0, {str(REPO / 'MedDIFT')!r}); sys.path.insert(0, {str(REPO)!r}); "
        "import MedDIFTSceneLib.logic, MedDIFTSceneLib.tracking, MedDIFTSceneLib.dependencies; "
        "print(sorted(m for m in ('torch', 'monai', 'einops') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_requirements_never_replace_slicers_own_packages(tmp_path):
    from MedDIFTSceneLib.dependencies import requirements

    (tmp_path / "r.txt").write_text("# comment\nmonai>=1.6,<1.7\nSimpleITK>=2.2\nnumpy\neinops>=0.7  # attention\n")
    assert requirements(tmp_path / "r.txt") == ["monai>=1.6,<1.7", "einops>=0.7"]
