"""Live mode: one landmark matched again with the features a finished job left in the worker.

A :class:`LiveMatch` is made of the same non-blocking steps as a job (match, heatmap, read the
heatmap back), polled by the GUI's timer: a click never waits for the worker, which may be busy (a
shared server running someone else's job). Its answer is applied when it arrives, and only if no
newer click came meanwhile (:class:`LiveQueue`: a newer click supersedes an older one, and only one
request is ever in flight, since the worker answers in order). After a dense run the point is
matched through the same dense map as the run's points (prior ``dense``). A match the reader
accepted or corrected is never moved.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from MedDIFTLib.data.geometry import Volume
from MedDIFTLib.data.image_io import read_volume
from MedDIFTLib.errors import InputError
from MedDIFTLib.service.protocol import decode_match

from .jobsteps import LocalStep, Step, WorkerStep
from .scene import pointset_from_markups, set_partner, show_heatmap, update_volume_node
from .tracking import clear_verdicts, verdict


class LiveMatch:
    """Match point ``index`` of ``job``'s fixed list again; ``poll()`` until False, then ``apply()``.

    Args:
        logic: the logic whose worker holds ``job``'s features.
        job: a finished :class:`~.matchjob.MatchJob`.
        index: the point's index in the job's fixed list.
    """

    reply: dict | None  # the worker's answer to the match
    heatmap: Volume | None
    result: dict | None  # what apply() returned
    error: Exception | None

    def __init__(self, logic, job, index: int):
        self.logic, self.job, self.index = logic, job, index
        out_node = job.result.points_node
        ps = pointset_from_markups(logic.scene.GetNodeByID(job.request.fixed_points_id))
        if not 0 <= index < len(ps) or not ps.defined[index]:
            raise InputError(f"point {index + 1} of the fixed list has no position")
        assert ps.labels is not None  # PointSet makes a list
        self.label, self.point = ps.labels[index], ps.points[index]
        said = verdict(out_node, self.label)
        if said != "proposed":
            raise InputError(
                f"the match of {self.label!r} was {said} by you and is kept; press Apply to match every landmark again"
            )
        self.tmp = Path(tempfile.mkdtemp(prefix="meddift-live-"))
        fields = {
            "fixed": job.fixed_key,
            "moving": job.moving_key,
            "points": [self.point.tolist()],
            "labels": [self.label],
        }
        if job.request.prior:
            fields["prior"] = job.request.prior  # the same map as the run's points (a dense run's field)
        hm_path = self.tmp / "heatmap.nrrd"
        self.reply = self.heatmap = self.result = None
        self._steps = [
            WorkerStep("match", "match", fields, lambda r: setattr(self, "reply", r)),
            WorkerStep(
                "heatmap",
                "heatmap",
                {"fixed": job.fixed_key, "moving": job.moving_key, "point": self.point.tolist(), "out": str(hm_path)},
            ),
            LocalStep(
                "read heatmap",
                lambda: read_volume(hm_path, name="MedDIFT similarity"),
                lambda v: setattr(self, "heatmap", v),
            ),
        ]
        self._current: Step | None = None
        self.done, self.error = False, None

    def poll(self) -> bool:
        """Advance without waiting; True while the answer has not arrived. Errors end it (``error``)."""
        try:
            while not self.done:
                if self._current is None:
                    if not self._steps:
                        self.done = True
                        break
                    self._current = self._steps.pop(0)
                    self._current.start(self.logic.client, lambda msg: None)
                if not self._current.finished():
                    return True
                self._current = None
        except Exception as err:  # noqa: BLE001 - the click failed; the scene is unchanged
            self.done, self.error = True, err
        if self.done:
            self.discard()
        return False

    def apply(self) -> dict:
        """Put the answer into the scene: the partner moved (its verdict cleared), the heatmap refilled."""
        result = self.job.result
        assert self.reply is not None and self.heatmap is not None  # every step has finished
        pts, _, scores, _ = decode_match(self.reply)
        point, values = pts[0], {k: float(v[0]) for k, v in scores.items()}
        set_partner(result.points_node, self.label, point, values)
        clear_verdicts(result.points_node, [self.label])
        update_volume_node(result.heatmap_node, self.heatmap)
        sim = values.get("similarity", np.nan)
        show_heatmap(self.logic.scene, result.heatmap_node, threshold=max(0.0, (0.0 if np.isnan(sim) else sim) - 0.2))
        result.heatmap_label = self.label
        return {"label": self.label, "point": point, **{k: None if np.isnan(v) else v for k, v in values.items()}}

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class LiveQueue:
    """At most one live match in flight; a newer click replaces the one waiting behind it."""

    def __init__(self, logic) -> None:
        self.logic = logic
        self.current: LiveMatch | None = None
        self.wanted: tuple | None = None  # (job, index) of the newest click not yet sent

    def click(self, job, index: int) -> None:
        """A point was placed or moved: match it when the worker is free (raises if it cannot be)."""
        if self.current is not None and not self.current.done:
            self.wanted = (job, index)
            return
        self.wanted = None
        self.current = LiveMatch(self.logic, job, index)

    def busy(self) -> bool:
        return self.current is not None and not self.current.done

    def poll(self) -> LiveMatch | None:
        """Advance; returns the finished match to report (applied, or with its ``error``), or None."""
        live = self.current
        if live is None or live.poll():
            return None
        self.current = None
        if self.wanted is not None:  # superseded: its answer is for a position the reader left
            job, index = self.wanted
            self.wanted = None
            try:
                self.current = LiveMatch(self.logic, job, index)
            except InputError as err:
                live.error = err
                return live
            return None
        if live.error is None:
            try:
                live.result = live.apply()
            except Exception as err:  # noqa: BLE001
                live.error = err
        return live

    def clear(self) -> None:
        if self.current is not None:
            self.current.discard()
        self.current, self.wanted = None, None
