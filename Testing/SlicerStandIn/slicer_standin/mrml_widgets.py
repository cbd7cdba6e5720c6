"""Stand-ins for Slicer's MRML widgets, over the real MRML scene of slicer-core.

Signals and properties follow Slicer's headers: ``Libs/MRML/Widgets/qMRMLWidget.h``,
``qMRMLNodeComboBox.h`` and ``Modules/Loadable/Markups/Widgets/qSlicerMarkupsPlaceWidget.h``.
The node combo box lists the scene's real nodes (by class, with
``showChildNodeTypes``, hidden nodes left out), follows node addition and
removal through the scene's own events, and selects a node by itself only
where qMRMLNodeComboBox does: when "None" is not allowed and nothing is
selected yet.
"""

from __future__ import annotations

import weakref

import qt
import vtk
from qt import Prop, QWidget, Signal


def _removeObservers(observed):
    """Remove a widget's scene observers; ``observed`` is ``[scene, tags]`` (emptied here)."""
    scene, tags = observed
    if scene is not None:
        for tag in tags:
            scene.RemoveObserver(tag)
    observed[:] = [None, []]


class qSlicerWidget(QWidget):
    mrmlSceneChanged = Signal("mrmlSceneChanged(vtkMRMLScene*)")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None

    def mrmlScene(self):
        return self._scene

    def setMRMLScene(self, scene):
        if scene is self._scene:
            return
        self._scene = scene
        self.emit("mrmlSceneChanged(vtkMRMLScene*)", scene)


class qMRMLWidget(qSlicerWidget):
    pass


class qMRMLNodeComboBox(qMRMLWidget):
    currentNodeChanged = Signal("currentNodeChanged(vtkMRMLNode*)", "currentNodeChanged(bool)")
    currentNodeIDChanged = Signal("currentNodeIDChanged(QString)")
    nodeActivated = Signal("nodeActivated(vtkMRMLNode*)")
    nodeAdded = Signal("nodeAdded(vtkMRMLNode*)")
    nodeAddedByUser = Signal("nodeAddedByUser(vtkMRMLNode*)")
    nodeAboutToBeRemoved = Signal("nodeAboutToBeRemoved(vtkMRMLNode*)")
    currentNodeRenamed = Signal("currentNodeRenamed(QString)")
    nodeTypes = Prop([], convert=lambda o, v: [str(t) for t in (v or [])])
    showHidden = Prop(False)
    showChildNodeTypes = Prop(True)
    hideChildNodeTypes = Prop([])
    baseName = Prop("")
    noneEnabled = Prop(False)
    addEnabled = Prop(True)
    removeEnabled = Prop(True)
    editEnabled = Prop(False)
    renameEnabled = Prop(False)
    selectNodeUponCreation = Prop(True)
    noneDisplay = Prop("None")
    interactionNodeSingletonTag = Prop("")
    sizeAdjustPolicy = Prop(0)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._current = None
        self._attributes: dict[tuple[str, str], object] = {}
        self._tags: list[int] = []

        me = weakref.ref(self)  # the scene may outlive this widget: never call into a collected one

        @vtk.calldata_type(vtk.VTK_OBJECT)
        def on_added(caller, event, node=None):
            if me() is not None and node is not None:
                me()._onNodeAdded(node)

        @vtk.calldata_type(vtk.VTK_OBJECT)
        def on_removed(caller, event, node=None):
            if me() is not None and node is not None:
                me()._onNodeRemoved(node)

        self._handlers = (on_added, on_removed)  # VTK keeps Python callables weakly
        # qMRMLNodeComboBox's destructor disconnects from the scene. Here a finalizer does it, because
        # it runs before the garbage collector clears the handlers: a scene collected in the same
        # cycle would otherwise call half-cleared handlers ("() missing ... argument: 'node'").
        self._observed = [None, self._tags]  # [scene, tags], shared with the finalizer
        weakref.finalize(self, _removeObservers, self._observed)

    # --- scene ---------------------------------------------------------------------
    def setMRMLScene(self, scene):
        _removeObservers(self._observed)
        if scene is not None:
            self._tags = [
                scene.AddObserver(scene.NodeAddedEvent, self._handlers[0]),
                scene.AddObserver(scene.NodeAboutToBeRemovedEvent, self._handlers[1]),
            ]
            self._observed[:] = [scene, self._tags]
        super().setMRMLScene(scene)
        if self._current is not None and (
            scene is None or scene.GetNodeByID(self._current.GetID()) is not self._current
        ):
            self._setCurrent(None)
        self._selectFirstIfNoneDisabled()

    def _matches(self, node) -> bool:
        if node is None or (node.GetHideFromEditors() and not self.showHidden):
            return False
        types = self.nodeTypes
        ok = any(node.IsA(t) if self.showChildNodeTypes else node.GetClassName() == t for t in types)
        if ok and any(node.IsA(t) and node.GetClassName() != t for t in self.hideChildNodeTypes):
            return False
        for (cls, name), value in self._attributes.items():
            if node.IsA(cls):
                actual = node.GetAttribute(name)
                if actual is None or (value is not None and actual != str(value)):
                    return False
        return ok

    def nodes(self):
        scene = self._scene
        if scene is None:
            return []
        return [n for n in (scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())) if self._matches(n)]

    def nodeCount(self):
        return len(self.nodes())

    def nodeFromIndex(self, index):
        nodes = self.nodes()
        return nodes[index] if 0 <= index < len(nodes) else None

    def _selectFirstIfNoneDisabled(self):
        if self._current is None and not self.noneEnabled:
            nodes = self.nodes()
            if nodes:
                self._setCurrent(nodes[0])

    def _onNodeAdded(self, node):
        if self._matches(node):
            self.emit("nodeAdded(vtkMRMLNode*)", node)
            self._selectFirstIfNoneDisabled()

    def _onNodeRemoved(self, node):
        if not self._matches(node):
            return
        self.emit("nodeAboutToBeRemoved(vtkMRMLNode*)", node)
        if self._current is not None and node.GetID() == self._current.GetID():
            rest = [n for n in self.nodes() if n.GetID() != node.GetID()]
            self._setCurrent(None if self.noneEnabled or not rest else rest[0])

    # --- current node --------------------------------------------------------------------
    def currentNode(self):
        return self._current

    @property
    def currentNodeID(self):
        return self._current.GetID() if self._current is not None else ""

    @currentNodeID.setter
    def currentNodeID(self, node_id):
        self.setCurrentNodeID(node_id)

    def setCurrentNodeID(self, node_id):
        node = self._scene.GetNodeByID(node_id) if (self._scene is not None and node_id) else None
        self.setCurrentNode(node)

    def setCurrentNode(self, node):
        if isinstance(node, str):
            return self.setCurrentNodeID(node)
        if node is not None and not (
            self._matches(node) and self._scene is not None and self._scene.GetNodeByID(node.GetID()) is node
        ):
            node = None  # not in the list: Qt's combo box shows no item
        self._setCurrent(node)

    def setCurrentNodeIndex(self, index):
        self.setCurrentNode(self.nodeFromIndex(index))

    def _setCurrent(self, node):
        if node is self._current or (
            node is not None and self._current is not None and node.GetID() == self._current.GetID()
        ):
            return
        self._current = node
        self.emit("currentNodeChanged(vtkMRMLNode*)", node)
        self.emit("currentNodeChanged(bool)", node is not None)
        self.emit("currentNodeIDChanged(QString)", node.GetID() if node is not None else "")

    def addNode(self, nodeType=None):
        """What the "Create new ..." entry does (addEnabled)."""
        if self._scene is None:
            return None
        cls = nodeType or self.nodeTypes[0]
        node = self._scene.AddNewNodeByClass(cls, self._scene.GenerateUniqueName(self.baseName or cls))
        self.emit("nodeAddedByUser(vtkMRMLNode*)", node)
        if self.selectNodeUponCreation:
            self.setCurrentNode(node)
        return node

    def removeCurrentNode(self):
        if self._current is not None and self._scene is not None:
            self._scene.RemoveNode(self._current)

    def addAttribute(self, nodeType, attributeName, attributeValue=None):
        self._attributes[(nodeType, attributeName)] = attributeValue

    def removeAttribute(self, nodeType, attributeName):
        self._attributes.pop((nodeType, attributeName), None)

    @classmethod
    def declaredProperties(cls):
        return super().declaredProperties() | {"currentNodeID"}


class qSlicerMarkupsPlaceWidget(qSlicerWidget):
    # qSlicerMarkupsPlaceWidget::PlaceMultipleMarkupsType
    (
        ShowPlaceMultipleMarkupsOption,
        HidePlaceMultipleMarkupsOption,
        ForcePlaceSingleMarkup,
        ForcePlaceMultipleMarkups,
    ) = 0, 1, 2, 3
    activeMarkupsPlaceModeChanged = Signal("activeMarkupsPlaceModeChanged(bool)")
    activeMarkupsFiducialPlaceModeChanged = Signal("activeMarkupsFiducialPlaceModeChanged(bool)")
    buttonsVisible = Prop(True)
    deleteAllControlPointsOptionVisible = Prop(True)
    unsetLastControlPointOptionVisible = Prop(False)
    unsetAllControlPointsOptionVisible = Prop(False)
    placeMultipleMarkups = Prop(0)
    nodeColor = Prop(None)
    defaultNodeColor = Prop(None)
    currentNodeActive = Prop(False)
    placeModeEnabled = Prop(False, notify="activeMarkupsPlaceModeChanged(bool)")
    placeModePersistency = Prop(False)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._current = None

    def setCurrentNode(self, node):
        self._current = node

    def currentNode(self):
        return self._current

    def deleteLastPoint(self):
        n = self._current
        if n is not None and n.GetNumberOfControlPoints():
            n.RemoveNthControlPoint(n.GetNumberOfControlPoints() - 1)

    def deleteAllPoints(self):
        if self._current is not None:
            self._current.RemoveAllControlPoints()


class qMRMLSliderWidget(qt.QDoubleSpinBox):
    """Named by parameterNodeWrapper's type checks; not built by this module."""


class qMRMLSpinBox(qt.QDoubleSpinBox):
    """Named by parameterNodeWrapper's type checks; not built by this module."""


class qMRMLRangeWidget(QWidget):
    """Named by parameterNodeWrapper's type checks; not built by this module."""


class qMRMLScreenShotDialog:
    FullLayout, ThreeD, Red, Yellow, Green = 0, 1, 2, 3, 4


class qMRMLUtils:
    pass
