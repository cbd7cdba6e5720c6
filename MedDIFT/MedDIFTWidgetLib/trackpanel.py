"""Tracking over several follow-ups from the panel: baseline (the fixed volume and its landmarks)
through follow-ups chosen one by one, matched from the baseline or from the previous time point.

A mixin of ``MedDIFT.MedDIFTWidget``. The run is a :class:`~MedDIFTSceneLib.multiscan.TrackingJob`
polled by the panel's timer like an Apply (progress bar, Cancel, never blocking); its session is
listed and shown in the table as soon as it exists. The controls are built here, above the
session chooser, so that the ``.ui`` file needs no change.
"""

from __future__ import annotations

import time

import qt
from slicer.i18n import tr as _

import slicer
from MedDIFTSceneLib.session import MODES, TrackingSession

MODE_TEXTS = {"previous": "from the previous time point", "baseline": "from the baseline"}


class TrackPanelMixin:
    def setupTrackPanel(self) -> None:
        self.followUpIds: list[str] = []
        row = qt.QWidget()
        box = qt.QHBoxLayout(row)
        self.followUpsLabel = qt.QLabel(_("Follow-ups: none"))
        self.addFollowUpButton = qt.QPushButton(_("Add moving volume"))
        self.addFollowUpButton.toolTip = _("Add the selected moving volume as the next follow-up to track")
        self.clearFollowUpsButton = qt.QPushButton(_("Clear"))
        self.trackModeComboBox = qt.QComboBox()
        for mode in MODES:
            self.trackModeComboBox.addItem(_(MODE_TEXTS[mode]), mode)
        self.trackModeComboBox.toolTip = _(
            "Match each follow-up from the previous one (follows slow change) "
            "or from the baseline (errors do not add up)"
        )
        self.trackButton = qt.QPushButton(_("Track"))
        self.trackButton.toolTip = _("Track the fixed landmarks through every follow-up, one after the other")
        for widget in (
            self.followUpsLabel,
            self.addFollowUpButton,
            self.clearFollowUpsButton,
            self.trackModeComboBox,
            self.trackButton,
        ):
            box.addWidget(widget)
        layout = self.ui.trackingTable.parentWidget().layout()
        layout.insertWidget(max(0, layout.indexOf(self.sessionComboBox)), row)
        self.addFollowUpButton.connect("clicked(bool)", self.onAddFollowUp)
        self.clearFollowUpsButton.connect("clicked(bool)", self.onClearFollowUps)
        self.trackButton.connect("clicked(bool)", self.onTrackButton)

    def _followUps(self) -> list:
        nodes = [slicer.mrmlScene.GetNodeByID(i) for i in self.followUpIds]
        return [n for n in nodes if n is not None]

    def onAddFollowUp(self) -> None:
        node = self._parameterNode.movingVolume if self._parameterNode else None
        if node is not None and node.GetID() not in self.followUpIds:
            self.followUpIds.append(node.GetID())
        self._showFollowUps()

    def onClearFollowUps(self) -> None:
        self.followUpIds = []
        self._showFollowUps()

    def _showFollowUps(self) -> None:
        names = [n.GetName() for n in self._followUps()]
        self.followUpsLabel.text = _("Follow-ups: {names}").format(names=", ".join(names) if names else _("none"))

    def onTrackButton(self) -> None:
        if self.job is not None:
            self.onApplyButton()  # the same Cancel
            return
        p = self._parameterNode
        if not (p and p.fixedVolume and p.fixedLandmarks) or not self.useComputeSettings():
            return
        if not self.logic.ensureDependencies(askConfirmation=True, server=self.computeSettings.where == "server"):
            return
        self._stopLive()
        mode = self.trackModeComboBox.itemData(self.trackModeComboBox.currentIndex) or "previous"
        engine, matching = self.logic.engineOptions(p, self.ui.weightsPathLineEdit.currentPath)
        session = None
        try:
            session = TrackingSession.create(
                slicer.mrmlScene,
                p.fixedVolume,
                p.fixedLandmarks,
                self._followUps(),
                mode,
                name="MedDIFT tracking " + p.fixedLandmarks.GetName(),
            )
            job = self.logic.core.start_tracking(session, engine, matching, self.ui.heatmapLabelComboBox.currentText)
        except Exception as err:  # noqa: BLE001 - said once, nothing started, no session left behind
            if session is not None:
                slicer.mrmlScene.RemoveNode(session.node)
            self.ui.statusLabel.text = _("Not started: {error}").format(error=err)
            self._log(self.ui.statusLabel.text)
            slicer.util.errorDisplay(_("MedDIFT could not start tracking: {error}").format(error=err))
            return
        self.showSession(session)
        self.job, self._jobKind, self._jobStartedAt, self._configureLogged = job, "track", time.monotonic(), False
        self.ui.applyButton.text = self.trackButton.text = _("Cancel")
        self.ui.progressBar.visible = True
        self.timer.start()
        self.denseTrackStarted(session, engine)

    def _showTracking(self, job) -> None:
        self.denseAfterTracking(job)
        self.showSession(job.session)
        self.ui.statusLabel.text = _("Tracked through {n} follow-ups").format(n=len(job.session.follow_ups))
