"""The widget's actions besides Apply: a run's results shown, live mode, the tracking table (accept,
correct, export) and the weights download. A mixin of ``MedDIFT.MedDIFTWidget`` (it uses its ``ui``, ``logic``,
``_parameterNode``, ``session`` and ``_log``), split out so that ``MedDIFT.py`` stays readable."""

from __future__ import annotations

import qt
import slicer
from slicer.i18n import tr as _

from .panel import fillTrackingTable, selectedTimePoint


class WidgetActionsMixin:
    # --- a finished run --------------------------------------------------------------

    def _confirmOverwrite(self, node) -> bool:
        return slicer.util.confirmYesNoDisplay(
            _("The point list '{name}' already has {n} points. Replace them with the matches?").format(
                name=node.GetName(), n=node.GetNumberOfControlPoints()))

    def _showResults(self, job) -> None:
        res = job.result
        self._parameterNode.outputLandmarks = res["points_node"]
        self._parameterNode.heatmapVolume = res["heatmap_node"]
        self.showOutputNodes(res)
        self.logic.showSideBySide(self._parameterNode, res)
        self.session = res.get("session")
        self._refreshTrackingTable()
        if res.get("warnings"):  # also in the job's log
            slicer.util.warningDisplay("\n\n".join(res["warnings"]), windowTitle=_("MedDIFT: check the inputs"))
        m = res["matched"]
        self.ui.statusLabel.text = _("{n} landmarks matched; heatmap of {label}").format(
            n=int(m.defined.sum()), label=res["heatmap_label"])

    # --- live mode -------------------------------------------------------------------

    def onLiveModeToggled(self, on: bool) -> None:
        self._stopLive()
        if on:
            self._startLive()

    def _startLive(self) -> None:
        from MedDIFTSceneLib.scene import PointEvents

        if self.lastJob is None or not self._parameterNode.fixedLandmarks:
            return
        self.pointEvents = PointEvents(self._parameterNode.fixedLandmarks, self.onFixedPointChanged)

    def _stopLive(self) -> None:
        if self.pointEvents:
            self.pointEvents.remove()
            self.pointEvents = None

    def onFixedPointChanged(self, index: int) -> None:
        if self.job and not self.job.done:
            return
        if not self.logic.has_features(self.lastJob):
            self.lastJob = None
            self._stopLive()
            self.ui.statusLabel.text = _("Live matching needs the features of a run: press Apply again.")
            self._log(self.ui.statusLabel.text)
            return
        try:
            with slicer.util.tryWithErrorDisplay(_("Live match failed."), waitCursor=True):
                res = self.logic.match_point(self.lastJob, index)
                self.logic.jumpMovingViewTo(res["point"])
                self._refreshTrackingTable()
                self.ui.statusLabel.text = _("{label}: similarity {s:.3f}").format(label=res["label"],
                                                                                 s=res["similarity"] or 0.0)
        except Exception:
            pass

    # --- tracking table ----------------------------------------------------------------

    def _refreshTrackingTable(self) -> None:
        fillTrackingTable(self.ui.trackingTable, self.session)

    def _selectedPair(self):
        """(matched node, label) of the selected row and time point, or None."""
        if self.session is None:
            return None
        row = self.ui.trackingTable.currentRow()
        rows = self.session.rows()
        if row < 0 or row >= len(rows):
            return None
        node = self.session.matched(selectedTimePoint(self.ui.trackingTable, self.session))
        return (node, rows[row]["label"]) if node is not None else None

    def onTrackingAction(self, action: str) -> None:
        from MedDIFTSceneLib.tracking import accept, start_correction

        selected = self._selectedPair()
        if selected is None:
            return
        (accept if action == "accept" else start_correction)(*selected)
        self._refreshTrackingTable()

    def onExport(self, extension: str) -> None:
        """The pairs of the selected time point (its source and its matches)."""
        from MedDIFTSceneLib.tracking import export_pairs, pairs_from_nodes

        if self.session is None:
            return
        t = selectedTimePoint(self.ui.trackingTable, self.session)
        matched = self.session.matched(t)
        if matched is None:
            return
        path = qt.QFileDialog.getSaveFileName(None, _("Export landmark pairs"), "landmark_pairs" + extension,
                                              f"*{extension}")
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("Export failed.")):
            written = export_pairs(pairs_from_nodes(self.session.source(t)[1], matched), path)
            self._log(_("Exported: {files}").format(files=", ".join(str(w) for w in written)))

    # --- weights -------------------------------------------------------------------

    def onDownloadWeights(self) -> None:
        token = qt.QInputDialog.getText(
            None, _("MAISI weights"),
            _("The MAISI repository on Hugging Face is gated: accept its licence at "
              "https://huggingface.co/nvidia/NV-Generate-CT, then paste an access token:"), qt.QLineEdit.Password)
        if not token:
            return
        if not self.logic.ensureDependencies(askConfirmation=True):
            return
        with slicer.util.tryWithErrorDisplay(_("Download failed."), waitCursor=True):
            folder = self.logic.downloadWeights(token, self.ui.weightsPathLineEdit.currentPath or None, self._log)
            self.ui.weightsPathLineEdit.currentPath = folder
            self._log(_("MAISI weights ready in {folder}").format(folder=folder))
