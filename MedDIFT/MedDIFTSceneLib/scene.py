"""Scene code without Qt: MRML nodes <-> engine objects, in world RAS millimetres.

Everything here takes the ``vtkMRMLScene`` (or a node) as an argument and
imports only ``vtk`` and the engine, so it runs in Slicer and, for the tests,
against the real MRML library of PyPI's ``slicer-core``.

World coordinates: a node under a *linear* parent transform is converted
with that transform (volume IJK -> node RAS -> world RAS); markups are read
and written with their world positions. A non-linear parent transform is
refused with a clear message (harden it first), since a voxel grid cannot
follow it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import vtk
from vtk.util import numpy_support

from MedDIFTLib.data.geometry import Volume
from MedDIFTLib.data.points import (
    PointSet,
    describe,
    parse_description,
    point_description,
    values_from_dicts,
)
from MedDIFTLib.errors import InputError

HEATMAP_COLOR_NODE_IDS = (
    "vtkMRMLColorTableNodeFileColdToHotRainbow.txt",
    "vtkMRMLColorTableNodeRainbow",
    "vtkMRMLColorTableNodeWarm1",
)


def vtk_to_numpy_matrix(m: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def numpy_to_vtk_matrix(a: np.ndarray) -> vtk.vtkMatrix4x4:
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(a[r, c]))
    return m


def node_to_world(node) -> np.ndarray:
    """4x4 from the node's own RAS to world RAS (identity without a parent transform)."""
    parent = node.GetParentTransformNode()
    if parent is None:
        return np.eye(4)
    if not parent.IsTransformToWorldLinear():
        raise InputError(
            f"node {node.GetName()!r} is under a non-linear transform ({parent.GetName()!r}); "
            "harden the transform on it first (Data module, right-click, Harden transform)"
        )
    m = vtk.vtkMatrix4x4()
    parent.GetMatrixTransformToWorld(m)
    return vtk_to_numpy_matrix(m)


# --- volumes -------------------------------------------------------------------


def volume_from_node(node) -> Volume:
    """The node's voxels (``[i, j, k]``) with IJK to *world* RAS (parent transforms applied)."""
    if node is None or not node.IsA("vtkMRMLScalarVolumeNode"):
        raise InputError("a scalar volume node is needed")
    image = node.GetImageData()
    if image is None:
        raise InputError(f"volume {node.GetName()!r} has no voxels")
    dims = image.GetDimensions()
    if image.GetNumberOfScalarComponents() != 1:
        raise InputError(
            f"volume {node.GetName()!r} has {image.GetNumberOfScalarComponents()} components; "
            "a scalar CT volume is needed"
        )
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    array = flat.reshape(dims[2], dims[1], dims[0]).transpose(2, 1, 0).copy()
    ijk_to_ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    matrix = node_to_world(node) @ vtk_to_numpy_matrix(ijk_to_ras)
    return Volume(array, matrix, node.GetName())


def update_volume_node(node, volume: Volume) -> None:
    """Put the volume's voxels and geometry into ``node`` (IJK-to-RAS in the node's own frame)."""
    to_node = np.linalg.inv(node_to_world(node))
    arr = np.ascontiguousarray(np.asarray(volume.array).transpose(2, 1, 0))
    image = vtk.vtkImageData()
    image.SetDimensions(volume.shape)
    vtk_arr = numpy_support.numpy_to_vtk(arr.reshape(-1), deep=True)
    image.GetPointData().SetScalars(vtk_arr)
    node.SetIJKToRASMatrix(numpy_to_vtk_matrix(to_node @ volume.ijk_to_ras))
    node.SetAndObserveImageData(image)


def add_volume_node(scene, volume: Volume, name: str, node_class: str = "vtkMRMLScalarVolumeNode"):
    node = scene.AddNewNodeByClass(node_class, scene.GenerateUniqueName(name))
    update_volume_node(node, volume)
    node.CreateDefaultDisplayNodes()
    return node


def show_heatmap(scene, node, threshold: float = 0.0) -> None:
    """Colour table, window and threshold for a similarity volume (values -1..1)."""
    disp = node.GetDisplayNode()
    if disp is None:
        node.CreateDefaultDisplayNodes()
        disp = node.GetDisplayNode()
    for cid in HEATMAP_COLOR_NODE_IDS:
        if scene.GetNodeByID(cid) is not None:
            disp.SetAndObserveColorNodeID(cid)
            break
    arr = numpy_support.vtk_to_numpy(node.GetImageData().GetPointData().GetScalars())
    hi = float(arr.max()) if arr.size else 1.0
    disp.AutoWindowLevelOff()
    disp.SetWindowLevelMinMax(threshold, max(hi, threshold + 1e-3))
    disp.SetApplyThreshold(True)
    disp.SetLowerThreshold(threshold)
    disp.SetUpperThreshold(max(hi, threshold + 1e-3))


# --- markups -------------------------------------------------------------------


def pointset_from_markups(node) -> PointSet:
    """World RAS positions, labels, descriptions and the scores in them (read through the one codec,
    :func:`~MedDIFTLib.data.points.parse_description`, into ``values``); undefined points are NaN."""
    if node is None or not node.IsA("vtkMRMLMarkupsNode"):
        raise InputError("a markups point list is needed")
    n = node.GetNumberOfControlPoints()
    pts = np.full((n, 3), np.nan)
    labels, descriptions, per_point = [], [], []
    for i in range(n):
        labels.append(node.GetNthControlPointLabel(i) or f"F-{i + 1}")
        text, vals = parse_description(node.GetNthControlPointDescription(i) or "")
        descriptions.append(text)
        per_point.append(vals)
        if node.GetNthControlPointPositionStatus(i) == node.PositionDefined:
            p = [0.0, 0.0, 0.0]
            node.GetNthControlPointPositionWorld(i, p)
            pts[i] = p
    return PointSet(pts, labels, values_from_dicts(per_point), descriptions, name=node.GetName())


def write_markups(node, ps: PointSet, locked: bool = True) -> None:
    """Replace the node's points with ``ps`` (world RAS); descriptions and values through the one codec."""
    assert ps.labels is not None  # PointSet makes a list
    was = node.StartModify()
    try:
        node.RemoveAllControlPoints()
        for i in range(len(ps)):
            p = ps.points[i]
            if np.all(np.isfinite(p)):
                idx = node.AddControlPointWorld(vtk.vtkVector3d(*p), ps.labels[i])
            else:
                idx = node.AddControlPoint(vtk.vtkVector3d(0, 0, 0), ps.labels[i])
                node.UnsetNthControlPointPosition(idx)
            node.SetNthControlPointDescription(idx, point_description(ps, i))
            node.SetNthControlPointLocked(idx, locked)
    finally:
        node.EndModify(was)


def set_partner(out_node, label: str, point, values: dict) -> int:
    """Put the match of ``label`` into the output list (added if missing), locked, its scores
    (``{name: number}``) in the description."""
    idx = next(
        (i for i in range(out_node.GetNumberOfControlPoints()) if out_node.GetNthControlPointLabel(i) == label), -1
    )
    if idx < 0:
        idx = out_node.AddControlPointWorld(vtk.vtkVector3d(*point), label)
    else:
        out_node.SetNthControlPointPositionWorld(idx, *point)
    out_node.SetNthControlPointDescription(idx, describe("", values))
    out_node.SetNthControlPointLocked(idx, True)
    return idx


def output_markups_node(scene, name: str, node=None, overwrite: Callable[[object], bool] | None = None):
    """The node to write results into: a new one, or ``node`` if it is empty or ``overwrite(node)`` says yes.

    A user's existing points are never replaced without asking.
    """
    if node is not None:
        if node.GetNumberOfControlPoints() == 0 or (overwrite is not None and overwrite(node)):
            return node
        raise InputError(
            f"the output point list {node.GetName()!r} already has points; "
            "choose another output or confirm the overwrite"
        )
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", scene.GenerateUniqueName(name))
    node.CreateDefaultDisplayNodes()
    return node


class PointEvents:
    """Calls ``callback(index)`` when a control point of ``node`` is placed or moved.

    Slicer reports a placed point with PointPositionDefinedEvent, the end of a
    drag with PointEndInteractionEvent, and any change (also from code or the
    point table) with PointModifiedEvent, which also fires on every mouse move
    of a drag: those are skipped until the drag ends. A callback runs only
    when the point's world position actually changed since its last call.
    ``pause()`` lets the caller write into the node without triggering itself.
    """

    def __init__(self, node, callback: Callable[[int], None]):
        self.node, self.callback = node, callback
        self._paused = 0
        self._dragging = False
        self._last: dict[int, tuple] = {}

        def handler(kind):
            @vtk.calldata_type(vtk.VTK_INT)
            def on_event(caller, _event, index):
                self._on_event(kind, int(index))

            return on_event

        self._handlers = {  # keep references: VTK holds the Python callables weakly
            "defined": handler("defined"),
            "start": handler("start"),
            "end": handler("end"),
            "modified": handler("modified"),
            "removed": handler("removed"),
        }
        self._tags = [
            node.AddObserver(node.PointPositionDefinedEvent, self._handlers["defined"]),
            node.AddObserver(node.PointStartInteractionEvent, self._handlers["start"]),
            node.AddObserver(node.PointEndInteractionEvent, self._handlers["end"]),
            node.AddObserver(node.PointModifiedEvent, self._handlers["modified"]),
            node.AddObserver(node.PointRemovedEvent, self._handlers["removed"]),
        ]

    def _on_event(self, kind: str, index: int):
        if kind == "removed":
            self._last.clear()  # indices shift: forget what was matched
            return
        if self._paused:
            return
        if kind == "start":
            self._dragging = True
            return
        if kind == "end":
            self._dragging = False
        elif kind == "modified" and self._dragging:
            return
        node = self.node
        if not 0 <= index < node.GetNumberOfControlPoints():
            return
        if node.GetNthControlPointPositionStatus(index) != node.PositionDefined:
            return
        p = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(index, p)
        key = tuple(round(c, 4) for c in p)
        if self._last.get(index) == key:
            return
        self._last[index] = key
        self.callback(index)

    def pause(self):
        events = self

        class _Pause:
            def __enter__(self_inner):
                events._paused += 1

            def __exit__(self_inner, *exc):
                events._paused -= 1
                return False

        return _Pause()

    def remove(self):
        for tag in self._tags:
            self.node.RemoveObserver(tag)
        self._tags = []


class SceneChanges:
    """What a job's results did to the scene, so that a failure part-way undoes all of it.

    A job writes several nodes (matched list, heatmap, transform, warped volume, session); if any of
    them fails, the scene must be as it was before the job. Nodes the job added are removed; a user's
    point list it replaced, and the module's heatmap it refilled, get their old content back.
    """

    def __init__(self, scene) -> None:
        self.scene = scene
        self._undo: list[Callable[[], None]] = []

    def added(self, node):
        """Record a node the job added (removed on rollback, with its display and storage nodes); returns it."""
        self._undo.append(lambda: self._remove(node))
        return node

    def _remove(self, node) -> None:
        helpers = []
        if node.IsA("vtkMRMLDisplayableNode"):
            helpers += [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
        if node.IsA("vtkMRMLStorableNode"):
            helpers.append(node.GetStorageNode())
        for n in [node] + [h for h in helpers if h is not None]:
            if self.scene.IsNodePresent(n):
                self.scene.RemoveNode(n)

    def keep_markups(self, node) -> None:
        """Record an existing point list's points, locks and attributes before they are replaced."""
        ps = pointset_from_markups(node)
        locks = [node.GetNthControlPointLocked(i) for i in range(node.GetNumberOfControlPoints())]
        attrs = {name: node.GetAttribute(name) for name in (node.GetAttributeNames() or ())}

        def restore():
            write_markups(node, ps, locked=False)
            for i, lock in enumerate(locks):
                node.SetNthControlPointLocked(i, lock)
            for name in node.GetAttributeNames() or ():
                if name not in attrs:
                    node.RemoveAttribute(name)
            for name, value in attrs.items():
                node.SetAttribute(name, value)

        self._undo.append(restore)

    def keep_transform(self, node) -> None:
        """Record a transform node's current map before a run replaces it. Setting a map makes the node
        observe a new VTK transform, so holding the old object is enough to put it back."""
        old = node.GetTransformFromParent()
        self._undo.append(lambda: node.SetAndObserveTransformFromParent(old))

    def keep_volume(self, node) -> None:
        """Record a volume's voxels and geometry before they are replaced."""
        volume = volume_from_node(node) if node.GetImageData() is not None else None
        self._undo.append(lambda: update_volume_node(node, volume) if volume is not None else None)

    def rollback(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
