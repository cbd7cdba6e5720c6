"""Registration results as MRML transform nodes, without Qt.

Slicer keeps a transform's "from parent" direction as the resampling
transform, the same convention as an ITK transform file: it maps points of
the parent (world, here the fixed scan's space) to the child (the moving
scan's space). The engine's displacement maps fixed points to moving points,
so it goes in as "from parent"; a moving volume placed under the node is then
shown laid over the fixed one, and Slicer inverts the grid itself wherever a
point must go the other way.
"""

from __future__ import annotations

import numpy as np
import vtk
from vtk.util import numpy_support


def oriented_grid_transform(displacement_ras: np.ndarray, ijk_to_ras: np.ndarray):
    """A ``vtkOrientedGridTransform``: ``p -> p + d(p)`` with ``d`` (I, J, K, 3) RAS mm sampled on the
    grid of ``ijk_to_ras`` (any orientation; spacing and direction are split out of the matrix)."""
    import slicer

    m = np.asarray(ijk_to_ras, dtype=np.float64)
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    direction = m[:3, :3] / spacing
    disp = np.asarray(displacement_ras, dtype=np.float64)
    image = vtk.vtkImageData()
    image.SetDimensions(*[int(n) for n in disp.shape[:3]])
    image.SetOrigin(*m[:3, 3])
    image.SetSpacing(*spacing)
    flat = np.ascontiguousarray(disp.transpose(2, 1, 0, 3)).reshape(-1, 3)  # VTK: i fastest
    arr = numpy_support.numpy_to_vtk(flat, deep=True, array_type=vtk.VTK_DOUBLE)
    arr.SetNumberOfComponents(3)
    image.GetPointData().SetScalars(arr)
    grid = slicer.vtkOrientedGridTransform()
    dm = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            dm.SetElement(r, c, float(direction[r, c]))
    grid.SetGridDirectionMatrix(dm)
    grid.SetDisplacementGridData(image)
    grid.SetInterpolationModeToLinear()
    return grid


def set_displacement_transform(node, displacement_ras: np.ndarray, ijk_to_ras: np.ndarray) -> None:
    """Make ``node`` (a vtkMRMLGridTransformNode) map fixed (parent) points to moving points."""
    node.SetAndObserveTransformFromParent(oriented_grid_transform(displacement_ras, ijk_to_ras))


def add_displacement_transform(scene, displacement_ras: np.ndarray, ijk_to_ras: np.ndarray, name: str):
    """A new grid transform node in ``scene`` holding the fixed -> moving displacement."""
    node = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", name)
    set_displacement_transform(node, displacement_ras, ijk_to_ras)
    return node
