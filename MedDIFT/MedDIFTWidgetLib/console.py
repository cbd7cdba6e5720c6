"""What MedDIFT's logic offers at Slicer's Python console: a whole match, and tracking through
follow-ups. A mixin of ``MedDIFT.MedDIFTLogic`` (it uses its ``core``, ``trackingJob`` and
``trackingTimer``). Neither touches the panel's settings (the parameter node): a console run
while the panel's job runs is refused, never written over the panel's choices.
"""

from __future__ import annotations

import logging

import slicer
from MedDIFTSceneLib.jobsteps import MatchRequest
from MedDIFTSceneLib.session import TrackingSession


class ConsoleMixin:
    def match(
        self,
        fixedVolume,
        movingVolume,
        fixedPoints,
        backbone: str = "auto",
        device: str = "auto",
        searchRadius: float = 0.0,
        timeout: float = 3600.0,
    ):
        """Console use: run the whole job and return it (``job.result`` holds the new nodes). The panel's
        settings are not touched; refused while a run of this logic is in progress."""
        request = MatchRequest(
            fixedVolume.GetID(),
            movingVolume.GetID(),
            fixedPoints.GetID(),
            engine={"backbone": backbone, "device": device},
            matching={"radius_mm": searchRadius or None},
        )
        job = self.core.start_match(request).run(timeout=timeout)
        if job.error is not None:
            raise RuntimeError(str(job.error))
        return job

    def track(
        self,
        baselineVolume,
        baselineLandmarks,
        followUpVolumes,
        mode: str = "previous",
        backbone: str = "auto",
        device: str = "auto",
        searchRadius: float = 0.0,
    ):
        """Console use: track the landmarks through every follow-up without blocking Slicer; returns the
        running :class:`~MedDIFTSceneLib.multiscan.TrackingJob` (``done``, ``fraction``, ``session``,
        ``cancel()``). The session is in the scene at once, listed in the panel."""
        self.core.refuse_if_busy("start tracking")
        session = TrackingSession.create(slicer.mrmlScene, baselineVolume, baselineLandmarks, followUpVolumes, mode)
        engine = {"backbone": backbone, "device": device}
        try:
            self.trackingJob = self.core.start_tracking(session, engine, {"radius_mm": searchRadius or None})
        except Exception:
            slicer.mrmlScene.RemoveNode(session.node)  # refused before any work: no empty session left
            raise
        self.trackingTimer.start()
        return self.trackingJob

    def pollTracking(self) -> None:
        """Advance the console's tracking run (the timer calls this; never waits)."""
        job = self.trackingJob
        if job is None or not job.poll():
            self.trackingTimer.stop()
            if job is not None:
                logging.info(
                    "MedDIFT tracking: "
                    + ("done" if job.error is None and not job.cancelled else f"{job.stage}: {job.error}")
                )
