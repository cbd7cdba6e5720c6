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

from typing import Any

import numpy as np
import vtk
from vtk.util import numpy_support

from .scene import add_volume_node, update_volume_node


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
    """A new grid transform node in ``scene`` holding the fixed -> moving displacement (``name``, made
    unique in the scene: a second run never gives two nodes the same name)."""
    node = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", scene.GenerateUniqueName(name))
    set_displacement_transform(node, displacement_ras, ijk_to_ras)
    return node


OUTPUT_ATTRIBUTE = "MedDIFT.Output"
"""Set on every node a run creates: such a node may be written again by a later run."""


def reusable(node) -> bool:
    """Whether a run may write into ``node``, chosen as an output: one MedDIFT made, or an empty one
    (no transform, no voxels). Anything else is the user's, never overwritten: a new node is made.

    Args:
        node: the output node the panel names, or None.
    """
    if node is None:
        return False
    if node.GetAttribute(OUTPUT_ATTRIBUTE) == "1":
        return True
    if node.IsA("vtkMRMLTransformNode"):
        if not node.IsLinear():  # a new grid transform node holds a 1x1x1 placeholder grid
            t = node.GetTransformFromParent()
            grid: Any = t.GetDisplacementGrid() if t is not None and t.IsA("vtkOrientedGridTransform") else False
            return grid is None or (grid is not False and grid.GetNumberOfPoints() <= 1)
        m = vtk.vtkMatrix4x4()
        node.GetMatrixTransformToParent(m)
        return all(m.GetElement(r, c) == float(r == c) for r in range(4) for c in range(4))  # identity: new
    return node.IsA("vtkMRMLVolumeNode") and node.GetImageData() is None


def transform_outputs(
    scene, existing, displacement_ras: np.ndarray, ijk_to_ras: np.ndarray, moving_name: str, inverse: bool = False
) -> dict:
    """The dense map as transform nodes: ``transform_node`` (fixed -> moving as "from parent": a moving
    volume under it lies over the fixed one) in ``existing`` when :func:`reusable`, else a new node; and,
    with ``inverse``, ``inverse_transform_node``: the same map as "to parent", exact (no numerical inverse),
    which carries annotations drawn on the fixed scan onto the moving scan.

    Args:
        scene: the MRML scene.
        existing: the output transform the panel names, or None.
        displacement_ras: (I, J, K, 3) fixed -> moving displacement, RAS mm.
        ijk_to_ras: the displacement grid's IJK-to-RAS matrix.
        moving_name: the moving volume's name, for the new nodes' names.
        inverse: also make the inverse node.
    """
    if reusable(existing):
        node = existing
        set_displacement_transform(node, displacement_ras, ijk_to_ras)
    else:
        node = add_displacement_transform(scene, displacement_ras, ijk_to_ras, f"MedDIFT {moving_name} to fixed")
    node.SetAttribute(OUTPUT_ATTRIBUTE, "1")
    out = {"transform_node": node}
    if inverse:
        inv = scene.AddNewNodeByClass(
            "vtkMRMLGridTransformNode", scene.GenerateUniqueName(f"MedDIFT fixed to {moving_name}")
        )
        inv.SetAndObserveTransformToParent(oriented_grid_transform(displacement_ras, ijk_to_ras))
        inv.SetAttribute(OUTPUT_ATTRIBUTE, "1")
        out["inverse_transform_node"] = inv
    return out


def warped_output(scene, existing, volume, moving_name: str):
    """The warped moving volume in ``existing`` when :func:`reusable`, else in a new, uniquely named node.

    Args:
        scene: the MRML scene.
        existing: the output volume the panel names, or None.
        volume: the warped volume (a :class:`MedDIFTLib.data.geometry.Volume`).
        moving_name: the moving volume's name, for a new node's name.
    """
    if reusable(existing):
        update_volume_node(existing, volume)
        existing.CreateDefaultDisplayNodes()
        node = existing
    else:
        node = add_volume_node(scene, volume, f"{moving_name} registered")
    node.SetAttribute(OUTPUT_ATTRIBUTE, "1")
    return node
