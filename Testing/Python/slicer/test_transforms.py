"""The registration field as a real MRML transform node (slicer-core): points go where the engine says."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (Slicer's MRML library) is not installed")

from MedDIFTSceneLib.transforms import add_displacement_transform  # noqa: E402
from synthetic_fields import oblique_grid, smooth_field  # noqa: E402


def test_transform_node_moves_points_as_the_engine_says():
    field, grid = smooth_field(), oblique_grid()
    scene = slicer.vtkMRMLScene()
    node = add_displacement_transform(scene, field.displacement_on(grid), grid.ijk_to_ras, "MedDIFT registration")
    ijk = np.array([[3, 4, 5], [10, 2, 7], [15, 9, 1]], dtype=float)
    ras = ijk @ grid.ijk_to_ras[:3, :3].T + grid.ijk_to_ras[:3, 3]
    from_parent = node.GetTransformFromParent()
    got = np.array([from_parent.TransformPoint(*p) for p in ras])
    np.testing.assert_allclose(got, field.map_points(ras), atol=1e-6)  # fixed (world) -> moving
    # a moving volume under the node is shown over the fixed one: moving points go back to fixed points
    to_parent = node.GetTransformToParent()
    back = np.array([to_parent.TransformPoint(*p) for p in got])
    np.testing.assert_allclose(back, ras, atol=1e-2)
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "moving")
    volume.SetAndObserveTransformNodeID(node.GetID())
    world = [0.0, 0.0, 0.0]
    volume.TransformPointToWorld(list(got[0]), world)
    np.testing.assert_allclose(world, ras[0], atol=1e-2)
