"""The panel's tracking sessions: which session the table shows, the table itself, and its buttons.

A mixin of ``MedDIFT.MedDIFTWidget`` (it uses its ``ui``, ``logic`` and ``_log``). Every tracking
session in the scene is listed in a combo box above the table, whoever made it (an Apply, the
console's ``logic.track``, a loaded ``.mrb``): the list follows the scene (a session node added or
removed, the scene closed or imported). The table follows the chosen session's point lists
(:class:`~.panel.SessionTable`), and a row's buttons act on the landmark that row shows.
"""

from __future__ import annotations

import qt
import vtk
from slicer.i18n import tr as _

import slicer
from MedDIFTSceneLib.session import SESSION_ATTRIBUTE, TrackingSession
from MedDIFTSceneLib.tracking import accept, export_pairs, pairs_from_nodes, start_correction

from .panel import SessionTable, selectedTimePoint


class SessionsMixin:
    def setupSessions(self) -> None:
        """The session chooser (built here, above the table) and the scene observers that keep it true."""
        self.sessionTable = SessionTable(self.ui.trackingTable)
        self.sessionComboBox = qt.QComboBox()
        self.sessionComboBox.toolTip = _("The tracking session the table shows: every session in the scene")
        layout = self.ui.trackingTable.parentWidget().layout()
        layout.insertWidget(max(0, layout.indexOf(self.ui.trackingTable)), self.sessionComboBox)
        self.sessionComboBox.connect("currentIndexChanged(int)", self.onSessionChosen)
        for event in (slicer.mrmlScene.NodeAddedEvent, slicer.mrmlScene.NodeRemovedEvent):
            self.addObserver(slicer.mrmlScene, event, self._onSceneNodesChanged)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self._onSceneImported)
        self.refreshSessions()

    @property
    def session(self):
        return self.sessionTable.session if getattr(self, "sessionTable", None) else None

    def showSession(self, session) -> None:
        """Select ``session`` in the chooser and the table (None: no session)."""
        self.refreshSessions()
        index = self.sessionComboBox.findData(session.node.GetID()) if session is not None else -1
        if index >= 0 and index != self.sessionComboBox.currentIndex:
            self.sessionComboBox.currentIndex = index
        else:  # the same session: its lists or verdicts may have changed all the same
            self.sessionTable.setSession(session)

    def refreshSessions(self) -> None:
        """The chooser's items equal to the sessions in the scene, keeping the chosen one when it is still there."""
        if slicer.mrmlScene.IsImporting() or slicer.mrmlScene.IsClosing():
            return
        sessions = TrackingSession.all_in(slicer.mrmlScene)
        combo = self.sessionComboBox
        items = [(s.name, s.node.GetID()) for s in sessions]
        if items == [(combo.itemText(i), combo.itemData(i)) for i in range(combo.count)]:
            return
        chosen = self.sessionTable.session.node.GetID() if self.sessionTable.session is not None else None
        combo.blockSignals(True)
        try:
            combo.clear()
            for name, node_id in items:
                combo.addItem(name, node_id)
            # the chosen session when it is still there, else the newest one (none: an empty table)
            combo.currentIndex = combo.findData(chosen) if chosen is not None else len(items) - 1
        finally:
            combo.blockSignals(False)
        if combo.itemData(combo.currentIndex) != chosen:
            self.onSessionChosen(combo.currentIndex)

    def onSessionChosen(self, index: int) -> None:
        node_id = self.sessionComboBox.itemData(index) if index >= 0 else None
        node = slicer.mrmlScene.GetNodeByID(node_id) if node_id else None
        self.sessionTable.setSession(TrackingSession(node) if node is not None else None)

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def _onSceneNodesChanged(self, caller, event, node=None) -> None:
        if node is not None and node.IsA("vtkMRMLScriptedModuleNode") and node.GetAttribute(SESSION_ATTRIBUTE) == "1":
            self.refreshSessions()

    def _onSceneImported(self, caller=None, event=None) -> None:
        """A loaded scene (.mrb, .mrml): its sessions listed, the last one shown."""
        self.refreshSessions()
        sessions = TrackingSession.all_in(slicer.mrmlScene)
        if sessions:
            self.showSession(sessions[-1])

    def cleanupSessions(self) -> None:
        if getattr(self, "sessionTable", None):
            self.sessionTable.remove()

    # --- the buttons -----------------------------------------------------------------

    def _selectedPair(self):
        """(matched node, label) of the selected row and time point, or None."""
        label = self.sessionTable.selectedLabel()
        if label is None:
            return None
        node = self.session.matched(selectedTimePoint(self.ui.trackingTable, self.session))
        return (node, label) if node is not None else None

    def onTrackingAction(self, action: str) -> None:
        selected = self._selectedPair()
        if selected is None:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not mark the match.")):
            (accept if action == "accept" else start_correction)(*selected)
        self.sessionTable.refresh()

    def onExport(self, extension: str) -> None:
        """The pairs of the selected time point (its source and its matches)."""
        if self.session is None:
            return
        t = selectedTimePoint(self.ui.trackingTable, self.session)
        matched = self.session.matched(t)
        if matched is None:
            return
        path = qt.QFileDialog.getSaveFileName(
            None, _("Export landmark pairs"), "landmark_pairs" + extension, f"*{extension}"
        )
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("Export failed.")):
            written = export_pairs(pairs_from_nodes(self.session.source(t)[1], matched), path)
            self._log(_("Exported: {files}").format(files=", ".join(str(w) for w in written)))
