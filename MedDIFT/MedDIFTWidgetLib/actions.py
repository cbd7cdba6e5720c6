"""The widget's actions besides Apply: the running job polled and ended, its results shown, live mode and
the weights download.
A mixin of ``MedDIFT.MedDIFTWidget`` (it uses its ``ui``, ``logic``, ``_parameterNode`` and ``_log``),
split out so that ``MedDIFT.py`` stays readable."""

from __future__ import annotations

import logging

import qt
from slicer.i18n import tr as _

import slicer
from MedDIFTSceneLib.scene import PointEvents


class WidgetActionsMixin:
    # --- the running job, polled by the panel's timer ----------------------------------------

    def onTimer(self) -> None:
        job = self.job
        if job is None:
            self.timer.stop()
            return
        running = job.poll()  # never raises: an error ends the job
        if not self._configureLogged and (job.configure_result or not running):
            # the worker's configure step (or the options it already had) says what runs
            info = job.configure_result or self.logic.core.configure_result or {}
            self._log(_("Backbone: {note}").format(note=info.get("note", "?")))
            self._log(_("Device: {device}").format(device=info.get("device", "?")))
            self._configureLogged = True
        self.ui.progressBar.value = int(100 * job.fraction)  # the whole job's progress, never backwards
        self.ui.statusLabel.text = self.progressText(job)
        if running:
            return
        self._jobEnded()  # first: timer stopped, panel back to Apply; dialogs only after that
        try:
            if job.error is not None:
                self.ui.statusLabel.text = _("Failed: {error}").format(error=job.error)
                self._log(self.ui.statusLabel.text)
                slicer.util.errorDisplay(_("MedDIFT failed: {error}").format(error=job.error))
            elif job.result is not None:
                (self._showTracking if self._jobKind == "track" else self._showResults)(job)
        except Exception as err:  # noqa: BLE001 - showing the results failed; the run itself is done
            logging.exception("MedDIFT: showing the results failed")
            self.ui.statusLabel.text = _("Failed to show the results: {error}").format(error=err)
            slicer.util.errorDisplay(self.ui.statusLabel.text)

    def _jobEnded(self) -> None:
        self.timer.stop()
        job, self.job = self.job, None
        if job is not None:
            for line in job.log:
                self._log(line)
            if job.result is not None and self._jobKind == "match":  # live mode uses this pair's features
                self.lastJob = job
        if self.lastJob is not None and not self.logic.core.has_features(self.lastJob):
            # cancelled, crashed or replaced worker: its features are gone, live mode needs a new run
            self.lastJob = None
            self._log(_("Live matching needs the features of a run: press Apply again."))
        self.ui.applyButton.text = _("Apply")
        self.trackButton.text = _("Track")
        self.ui.progressBar.visible = False
        self._checkCanApply()
        if self.ui.liveModeCheckBox.checked:
            self._startLive()

    # --- a finished run --------------------------------------------------------------

    def _confirmOverwrite(self, node) -> bool:
        """Asked when Apply is pressed, before any work: "No" starts nothing."""
        return slicer.util.confirmYesNoDisplay(
            _("The point list '{name}' already has {n} points. Replace them with the matches?").format(
                name=node.GetName(), n=node.GetNumberOfControlPoints()
            )
        )

    def _showResults(self, job) -> None:
        """Show the run's own nodes (its request), whatever the panel selects now."""
        self.denseAfterMatch(job)
        res, r, scene = job.result, job.request, slicer.mrmlScene
        fixed, moving, landmarks = (
            scene.GetNodeByID(i) for i in (r.fixed_volume_id, r.moving_volume_id, r.fixed_points_id)
        )
        p = self._parameterNode
        if p is not None and (p.fixedVolume, p.movingVolume, p.fixedLandmarks) == (fixed, moving, landmarks):
            p.outputLandmarks = res.points_node
            p.heatmapVolume = res.heatmap_node
            self.showOutputNodes(res)
        else:
            self._log(
                _("The run's matches are in '{name}' (the panel's selection changed while it ran).").format(
                    name=res.points_node.GetName()
                )
            )
        self.logic.showSideBySide(fixed, moving, landmarks, res)
        if res.session is not None:
            self.showSession(res.session)
        m = res.matched
        self.ui.statusLabel.text = _("{n} landmarks matched; heatmap of {label}").format(
            n=int(m.defined.sum()), label=res.heatmap_label
        )
        if res.warnings:  # also in the job's log
            slicer.util.warningDisplay("\n\n".join(res.warnings), windowTitle=_("MedDIFT: check the inputs"))

    # --- live mode -------------------------------------------------------------------

    def onLiveModeToggled(self, on: bool) -> None:
        self._stopLive()
        if on:
            self._startLive()

    def _startLive(self) -> None:
        if self.lastJob is None:
            return
        node = slicer.mrmlScene.GetNodeByID(self.lastJob.request.fixed_points_id)
        if node is not None:
            self.pointEvents = PointEvents(node, self.onFixedPointChanged)

    def _stopLive(self) -> None:
        if self.pointEvents:
            self.pointEvents.remove()
            self.pointEvents = None

    def onFixedPointChanged(self, index: int) -> None:
        """A point of the last run's fixed list was placed or moved: ask for its match and return at once
        (called from a VTK observer on the GUI thread; the answer comes through :meth:`onLiveTimer`)."""
        if self.job is not None or self.denseFieldClick(index):
            return
        if not self.logic.core.has_features(self.lastJob):
            self.lastJob = None
            self._stopLive()
            self.ui.statusLabel.text = _("Live matching needs the features of a run: press Apply again.")
            self._log(self.ui.statusLabel.text)
            return
        try:
            self.logic.core.live_click(self.lastJob, index)
        except Exception as err:  # noqa: BLE001 - said in the panel; the scene is unchanged
            self.ui.statusLabel.text = _("Live match: {error}").format(error=err)
            return
        self.ui.statusLabel.text = _("Matching the moved landmark...")
        self.liveTimer.start()
        self.startDense(self.lastJob.request, fromApply=False)  # the first click starts the pair's registration

    def onLiveTimer(self) -> None:
        live = self.logic.core.poll_live()
        if not self.logic.core.live.busy():
            self.liveTimer.stop()
        if live is None:
            return
        if live.error is not None:
            self.ui.statusLabel.text = _("Live match failed: {error}").format(error=live.error)
            self._log(self.ui.statusLabel.text)
            logging.error(str(live.error))
            return
        res = live.result
        self.logic.jumpMovingViewTo(res["point"])
        self.heatmapLabels.select(res["label"])
        self.sessionTable.refresh()
        self.ui.statusLabel.text = _("{label}: similarity {s:.3f}").format(
            label=res["label"], s=res["similarity"] or 0.0
        )

    # --- weights -------------------------------------------------------------------

    def onDownloadWeights(self) -> None:
        token = qt.QInputDialog.getText(
            None,
            _("MAISI weights"),
            _(
                "The MAISI repository on Hugging Face is gated: accept its licence at "
                "https://huggingface.co/nvidia/NV-Generate-CT, then paste an access token:"
            ),
            qt.QLineEdit.Password,
        )
        if not token:
            return
        if not self.logic.ensureDependencies(askConfirmation=True):
            return
        with slicer.util.tryWithErrorDisplay(_("Download failed."), waitCursor=True):
            folder = self.logic.downloadWeights(token, self.ui.weightsPathLineEdit.currentPath or None, self._log)
            self.ui.weightsPathLineEdit.currentPath = folder
            self._log(_("MAISI weights ready in {folder}").format(folder=folder))
