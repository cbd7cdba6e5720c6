"""Tracking through several follow-ups: one :class:`~.logic.MatchJob` per follow-up, in order.

Follow-up ``t`` is matched from the session's source for ``t`` (the previous follow-up's matches, or
the baseline's landmarks: :meth:`TrackingSession.source`), so the job for ``t`` can only be planned
once ``t - 1`` has finished. Like a MatchJob it never blocks (``poll()``), and a failure or Cancel
stops the chain; the time points already done stay in the session (each was a complete job).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from MedDIFTLib.errors import MedDIFTError

from .jobsteps import MatchRequest, MatchResult
from .session import TrackingSession

if TYPE_CHECKING:
    from .matchjob import MatchJob


class TrackingJob:
    error: BaseException | None
    result: MatchResult | None
    configure_result: dict | None

    def __init__(self, logic, session: TrackingSession, engine: dict, matching: dict, heatmap_label: str | None = None):
        self.logic, self.session = logic, session
        self.engine, self.matching, self.heatmap_label = engine, matching, heatmap_label
        self.n = len(session.follow_ups)
        self.t = 0
        self.stage, self.fraction = "starting", 0.0
        self.done, self.error, self.cancelled = False, None, False
        self.result, self.configure_result = None, None
        self.log: list[str] = []
        self.job: MatchJob | None = None
        self._next()

    def _next(self):
        self.t += 1
        fixed_volume, fixed_points = self.session.source(self.t)
        moving = self.session.follow_ups[self.t - 1]
        out = self.session.matched(self.t)
        request = MatchRequest(
            fixed_volume.GetID(),
            moving.GetID(),
            fixed_points.GetID(),
            out.GetID() if out is not None else None,
            self.heatmap_label,
            self.engine,
            self.matching,
            record_session=False,
        )
        # the only list it may replace is this session's own result for the same time point
        self.job = self.logic.start_match(request, overwrite=lambda node: node is out)
        self.log.append(f"follow-up {self.t}/{self.n}: {moving.GetName()} from {fixed_volume.GetName()}")

    def poll(self) -> bool:
        if self.done:
            return False
        job = self.job
        assert job is not None  # _next() started it
        running = job.poll()
        self.stage = f"follow-up {self.t}/{self.n}: {job.stage}"
        self.fraction = max(self.fraction, (self.t - 1 + job.fraction) / self.n)
        self.configure_result = self.configure_result or job.configure_result
        if running:
            return True
        self.log += job.log
        if job.error is not None or job.cancelled:
            self.done, self.error, self.cancelled = True, job.error, job.cancelled
            return False
        assert job.result is not None  # it finished, neither failed nor cancelled
        node = job.result.points_node
        if self.session.matched(self.t) is None:
            node.SetName(
                self.logic.scene.GenerateUniqueName(f"MedDIFT {self.session.follow_ups[self.t - 1].GetName()}")
            )
        self.session.set_matched(self.t, node)
        if self.t < self.n:
            try:
                self._next()
            except Exception as err:  # noqa: BLE001 - the chain stops and says why
                self.done, self.error = True, err
                return False
            return True
        job.result.session = self.session
        self.result = job.result
        self.stage, self.fraction, self.done = "done", 1.0, True
        return False

    def run(self, timeout: float = 3600.0, interval: float = 0.05) -> TrackingJob:
        deadline = time.monotonic() + timeout
        while self.poll():
            if time.monotonic() > deadline:
                self.cancel()
                raise MedDIFTError(f"tracking did not finish within {timeout:.0f} s")
            time.sleep(interval)
        return self

    def cancel(self) -> None:
        if not self.done:
            assert self.job is not None  # _next() started it
            self.job.cancel()
            self.done, self.cancelled, self.stage = True, True, "cancelled"
