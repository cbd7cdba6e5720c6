"""The pair's dense registration in the background, as the panel shows it: its own progress line under
the status line, polled by its own timer (never a dialog from it), the provisional matches re-placed
when the field arrives, and clicks answered from the field after that.

A mixin of ``MedDIFT.MedDIFTWidget`` (it uses its ``ui``, ``logic``, ``_parameterNode``, ``lastJob``,
``sessionTable``, ``heatmapLabels`` and ``_log``). The work is in
:mod:`MedDIFTSceneLib.densefield` and :class:`MedDIFTSceneLib.logic.MedDIFTLogicCore`; the line is
built here so that the ``.ui`` file needs only its checkbox.
"""

from __future__ import annotations

import logging

import qt
from slicer.i18n import tr as _

from MedDIFTSceneLib.scene import pointset_from_markups


class DensePanelMixin:
    def setupDensePanel(self) -> None:
        self.denseLabel = qt.QLabel("")
        self.denseLabel.toolTip = _(
            "The dense registration of the selected pair, running in its own worker: "
            "until it is ready, matches are point matches marked provisional"
        )
        self.denseLabel.wordWrap = True
        layout = self.ui.statusLabel.parentWidget().layout()
        layout.insertWidget(layout.indexOf(self.ui.statusLabel) + 1, self.denseLabel)
        self.denseTimer = qt.QTimer()
        self.denseTimer.setInterval(200)
        self.denseTimer.connect("timeout()", self.onDenseTimer)
        self.denseTrackPairs: set = set()  # (fixed ID, moving ID) of a tracking run's follow-ups

    def denseWanted(self) -> bool:
        """Refine with the dense field: on by default; off (or *Dense* points, which use it anyway): no."""
        p = self._parameterNode
        return bool(p is not None and p.denseRefine and not p.denseMatching)

    def startDense(self, request, fromApply: bool = True) -> None:
        """Register ``request``'s pair in the background unless that runs or is done already. An Apply
        also ends a tracking run's registrations still waiting (they would run before this one)."""
        if not self.denseWanted():
            return
        if fromApply:
            self.denseTrackPairs = set()
            self.denseCheckPair()
        try:
            d = self.logic.core.start_dense(request)
        except Exception as err:  # noqa: BLE001 - the point matches simply stay the answer
            self._log(_("Dense registration not started: {error}").format(error=err))
            return
        if not d.done:
            self.denseLabel.text = _("Dense registration: starting")
            self.denseTimer.start()

    def denseAfterMatch(self, job) -> None:
        """Apply's matches are in: provisional while the pair's field is coming (re-placed if it came)."""
        m = job.result.matched
        labels = [label for label, defined in zip(m.labels, m.defined) if defined]
        if self.logic.core.provisional(job.request, job.result.points_node, labels):
            self.denseLabel.text = _("Matches placed from the dense field.")

    def denseTrackStarted(self, session, engine: dict) -> None:
        """A tracking run: each follow-up's pair (from its source time point) registered in turn, kept
        while the panel's own pair changes."""
        self.denseTrackPairs = set()
        if not self.denseWanted():
            return
        for t, moving in enumerate(session.follow_ups, start=1):
            fixed = session.follow_ups[t - 2] if session.mode == "previous" and t > 1 else session.baseline_volume
            self.denseTrackPairs.add((fixed.GetID(), moving.GetID()))
            try:
                self.logic.core.registrations.start(fixed.GetID(), moving.GetID(), engine)
            except Exception as err:  # noqa: BLE001 - that follow-up's point matches stay the answer
                self._log(_("Dense registration not started: {error}").format(error=err))
        self.denseTimer.start()

    def denseAfterTracking(self, job) -> None:
        """Each follow-up's matches: provisional while its pair's field is coming (re-placed if it came)."""
        session = job.session
        for t in range(1, len(session.follow_ups) + 1):
            out = session.matched(t)
            fixed_volume, fixed_points = session.source(t)
            if out is None or fixed_points is None:
                continue
            labels = pointset_from_markups(out).labels
            self.logic.core.registrations.provisional(
                fixed_volume.GetID(), session.follow_ups[t - 1].GetID(), job.engine, out, fixed_points, labels
            )

    def denseCheckPair(self) -> None:
        """The panel's pair changed (or the scene closes): a registration no longer needed is cancelled
        (the selected pair's and a tracking run's are kept)."""
        core = self.logic.core if self.logic else None
        if core is None or not core.registrations.items:
            return
        p = self._parameterNode
        pairs = set(self.denseTrackPairs)
        if p is not None and p.fixedVolume and p.movingVolume:
            pairs.add((p.fixedVolume.GetID(), p.movingVolume.GetID()))
        if core.keep_dense_only_for(pairs):
            self.denseLabel.text = _("Dense registration cancelled: the pair changed.")
        if not core.registrations.running():
            self.denseTimer.stop()

    def cancelDense(self) -> None:
        self.denseTimer.stop()
        self.denseTrackPairs = set()
        self.logic.core.cancel_dense()
        self.denseLabel.text = ""

    def onDenseTimer(self) -> None:
        core = self.logic.core
        ended = core.poll_dense()
        if not core.registrations.running():
            self.denseTimer.stop()
        running = [d for d in core.registrations.items if not d.done]
        if running and not ended:
            d = running[0]
            queued = _(" ({n} more waiting)").format(n=len(running) - 1) if len(running) > 1 else ""
            self.denseLabel.text = _("Dense registration: {stage} ({pct}%){queued}").format(
                stage=d.stage, pct=int(100 * d.fraction), queued=queued
            )
        for d in ended:
            if d.ready():
                text = _("Dense field ready: {n} provisional matches re-placed from it; clicks now use it.").format(
                    n=len(d.upgraded)
                )
            else:
                text = _("Dense registration failed: {error}; the point matches stand.").format(error=d.error)
                logging.error(text)
            self.denseLabel.text = text
            self._log(text)
        if ended:
            self.sessionTable.refresh()

    def denseFieldClick(self, index: int) -> bool:
        """A live click on the last run's pair once its field is here: answered by a lookup in this
        process. False: there is no field (the click goes to the worker)."""
        job = self.lastJob
        if job is None or self.logic.core.field_for(job.request) is None:
            return False
        try:
            res = self.logic.core.field_click(job, index)
        except Exception as err:  # noqa: BLE001 - said in the panel; the scene is unchanged
            self.ui.statusLabel.text = _("Live match: {error}").format(error=err)
            return True
        self.logic.jumpMovingViewTo(res["point"])
        self.heatmapLabels.select(res["label"])
        self.sessionTable.refresh()
        self.ui.statusLabel.text = _("{label}: placed from the dense field").format(label=res["label"])
        return True
