"""Panel parts with their own state: the "heatmap for" landmark list and the tracking table."""

from __future__ import annotations

import qt
from slicer.i18n import tr as _

from MedDIFTLib.errors import InputError
from MedDIFTSceneLib.logic import HEATMAP_ATTRIBUTE


class HeatmapLabels:
    """Keeps the "heatmap for" combo box equal to the fixed landmarks' labels.

    The list must follow the point list itself, not only the selection: points are added one by one
    after the list is chosen (placing five points left it empty and the job silently used the first
    one). So it observes the node's point added, removed and modified events (a label change is a
    point modification) and rebuilds only when the labels differ, keeping the user's choice.
    """

    EVENTS = ("PointAddedEvent", "PointRemovedEvent", "PointModifiedEvent")

    def __init__(self, comboBox):
        self.comboBox = comboBox
        self.node, self._tags = None, []

    def setNode(self, node) -> None:
        if node is not self.node:
            self._unobserve()
            self.node = node
            if node is not None:
                self._tags = [node.AddObserver(getattr(node, e), self._onPointsChanged) for e in self.EVENTS]
        self.refresh()

    def _onPointsChanged(self, caller=None, event=None) -> None:
        self.refresh()

    def labels(self) -> list[str]:
        node = self.node
        return [node.GetNthControlPointLabel(i) for i in range(node.GetNumberOfControlPoints())] if node else []

    def refresh(self) -> None:
        combo = self.comboBox
        labels = self.labels()
        if labels == [combo.itemText(i) for i in range(combo.count)]:
            return
        current = combo.currentText
        combo.clear()
        for label in labels:
            combo.addItem(label)
        idx = combo.findText(current)
        if idx >= 0:
            combo.setCurrentIndex(idx)

    def select(self, label: str) -> None:
        """Show ``label`` as the landmark the heatmap is for (a live click made its heatmap)."""
        index = self.comboBox.findText(label)
        if index >= 0:
            self.comboBox.setCurrentIndex(index)

    def _unobserve(self) -> None:
        if self.node is not None:
            for tag in self._tags:
                self.node.RemoveObserver(tag)
        self._tags = []

    def remove(self) -> None:
        self._unobserve()
        self.node = None


def fillTrackingTable(table, session) -> None:
    """One row per baseline landmark; per follow-up: its match (RAS), confidence and status."""
    if session is None:
        table.setRowCount(0)
        return
    header = session.header()
    table.setColumnCount(len(header))
    table.setHorizontalHeaderLabels([_(h) if i == 0 else h for i, h in enumerate(header)])
    rows = session.table_text()
    table.setRowCount(len(rows))
    for r, texts in enumerate(rows):
        flagged = any(t.startswith("check:") for t in texts)  # a match that does not lead back
        for c, text in enumerate(texts):
            item = qt.QTableWidgetItem(text)
            if flagged:
                item.setData(qt.Qt.BackgroundRole, qt.QColor(255, 214, 170))
                item.setToolTip(
                    _("Matched back from the moving scan, this point lands far from where it started: check it")
                )
            table.setItem(r, c, item)


def selectedTimePoint(table, session) -> int:
    """The follow-up of the selected cell (its three columns), else the last one."""
    col = table.currentColumn()
    n = len(session.follow_ups)
    return min(n, (col - 1) // 3 + 1) if col >= 1 else n


class SessionTable:
    """The tracking table of one session, kept equal to the scene.

    It observes the session's point lists (baseline landmarks and every follow-up's matches): a point
    added, moved, relabelled or removed there, by the reader or by code, refreshes the table at once,
    so a row always shows the landmark its buttons act on (:meth:`selectedLabel` reads the row's own
    label, never an index into a list that may have changed).
    """

    EVENTS = (
        "PointAddedEvent",
        "PointRemovedEvent",
        "PointModifiedEvent",
        "PointPositionDefinedEvent",
        "PointPositionUndefinedEvent",
    )

    def __init__(self, table):
        self.table = table
        self.session = None
        self._observed: list[tuple] = []

    def setSession(self, session) -> None:
        self._unobserve()
        self.session = session
        if session is not None:
            nodes = [session.baseline_points] + [session.matched(t) for t in range(1, len(session.follow_ups) + 1)]
            for node in {id(n): n for n in nodes if n is not None}.values():
                for event in self.EVENTS:
                    self._observed.append((node, node.AddObserver(getattr(node, event), self._onPointsChanged)))
            for event in ("ReferenceAddedEvent", "ReferenceModifiedEvent", "ReferenceRemovedEvent"):
                # a follow-up's list set (a tracking run going on): observe the new list too
                node = session.node
                self._observed.append((node, node.AddObserver(getattr(node, event), self._onSessionChanged)))
        self.refresh()

    def _onSessionChanged(self, caller=None, event=None) -> None:
        self.setSession(self.session)

    def _onPointsChanged(self, caller=None, event=None) -> None:
        self.refresh()

    def refresh(self) -> None:
        session = self.session
        if session is not None and session.node.GetScene() is None:  # the session node was deleted
            self.setSession(None)
            return
        try:
            fillTrackingTable(self.table, session)
        except InputError:  # a session whose baseline list was deleted: nothing to show
            fillTrackingTable(self.table, None)

    def selectedLabel(self):
        """The landmark label shown in the selected row, or None."""
        row = self.table.currentRow()
        if self.session is None or not 0 <= row < self.table.rowCount or self.table.item(row, 0) is None:
            return None
        return self.table.item(row, 0).text()

    def _unobserve(self) -> None:
        for node, tag in self._observed:
            node.RemoveObserver(tag)
        self._observed = []

    def remove(self) -> None:
        self._unobserve()
        self.session = None


def distinctDefaultVolumes(p, scene) -> None:
    """The default selection: the first two scans as fixed and moving, never the same one twice (Slicer's
    node selectors both take the first volume loaded). The module's own heatmap is not a scan."""
    volumes = [
        scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))
    ]
    volumes = [v for v in volumes if v.GetAttribute(HEATMAP_ATTRIBUTE) != "1"]
    if not p.fixedVolume and volumes:
        p.fixedVolume = volumes[0]
    others = [v for v in volumes if v is not p.fixedVolume]
    if (not p.movingVolume or p.movingVolume is p.fixedVolume) and others:
        p.movingVolume = others[0]
