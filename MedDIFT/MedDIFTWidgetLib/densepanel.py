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


class DensePanelMixin:
    def setupDensePanel(self) -> None:
        self.denseLabel = qt.QLabel("")
        self.denseLabel.toolTip = _("The dense registration of the selected pair, running in its own worker: "
                                    "until it is ready, matches are point matches marked provisional")
        self.denseLabel.wordWrap = True
        layout = self.ui.statusLabel.parentWidget().layout()
        layout.insertWidget(layout.indexOf(self.ui.statusLabel) + 1, self.denseLabel)
        self.denseTimer = qt.QTimer()
        self.denseTimer.setInterval(200)
        self.denseTimer.connect("timeout()", self.onDenseTimer)

    def denseWanted(self) -> bool:
        """Refine with the dense field: on by default; off (or *Dense* points, which use it anyway): no."""
        p = self._parameterNode
        return bool(p is not None and p.denseRefine and not p.denseMatching)

    def startDense(self, request) -> None:
        """Register ``request``'s pair in the background unless that runs or is done already."""
        if not self.denseWanted():
            return
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

    def denseCheckPair(self) -> None:
        """The panel's pair changed (or the scene closes): a registration of another pair is cancelled."""
        core = self.logic.core if self.logic else None
        if core is None or core.dense is None:
            return
        p = self._parameterNode
        running = not core.dense.done
        core.keep_dense_only_for(p.fixedVolume.GetID() if p is not None and p.fixedVolume else None,
                                 p.movingVolume.GetID() if p is not None and p.movingVolume else None)
        if core.dense is None:
            self.denseTimer.stop()
            self.denseLabel.text = _("Dense registration cancelled: the pair changed.") if running else ""

    def cancelDense(self) -> None:
        self.denseTimer.stop()
        self.logic.core.cancel_dense()
        self.denseLabel.text = ""

    def onDenseTimer(self) -> None:
        core = self.logic.core
        ended = core.poll_dense()
        if core.dense is None or core.dense.done:
            self.denseTimer.stop()
        if ended is None:
            d = core.dense
            if d is not None and not d.done:
                self.denseLabel.text = _("Dense registration: {stage} ({pct}%)").format(
                    stage=d.stage, pct=int(100 * d.fraction))
            return
        if ended.ready():
            text = _("Dense field ready: {n} provisional matches re-placed from it; clicks now use it.").format(
                n=len(ended.upgraded))
        else:
            text = _("Dense registration failed: {error}; the point matches stand.").format(error=ended.error)
            logging.error(text)
        self.denseLabel.text = text
        self._log(text)
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

