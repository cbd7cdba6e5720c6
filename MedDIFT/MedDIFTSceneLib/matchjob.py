"""One match job through the worker: planned from a request, run in non-blocking steps, written at the end.

A :class:`MatchJob` owns its request: every node it reads is read when it starts (voxels copied, the
points taken), every node it writes is the one named then, and the questions it has (replace the
points of an existing output list?) are asked then, before any work. Changing the panel's selection
while it runs changes nothing of it; removing a node it needs ends it with a message saying which
(nothing can be written where it started), checked at every poll so no work is wasted.

``poll()`` advances it without ever waiting (steps from :mod:`.jobsteps`), so a GUI timer can drive
it; tests and the Python console can call ``run()``. ``fraction`` is the progress of the whole job
(steps weighted by their usual cost), never going back. The scene is touched only when every step
has succeeded, through :class:`~.scene.SceneChanges`: any exception while the results are written
undoes what was written, so a failed, crashed or cancelled job leaves every node as it was, and an
exception of any kind ends the job (it never raises out of ``poll()``).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np

from MedDIFTLib.data.geometry import Volume
from MedDIFTLib.data.image_io import read_volume, write_volume
from MedDIFTLib.data.points import PointSet
from MedDIFTLib.errors import CancelledError, InputError, MedDIFTError, render
from MedDIFTLib.service.protocol import decode_match

from .jobsteps import (
    LocalStep,
    MatchRequest,
    MatchResult,
    OverwriteDeclined,
    Step,
    WorkerStep,
    node_or_none,
    read_field,
    substage_fraction,
)
from .scene import SceneChanges, pointset_from_markups, show_heatmap, volume_from_node, write_markups
from .session import TrackingSession, session_of
from .tracking import clear_verdicts
from .transforms import reusable, transform_outputs, warped_output


class MatchJob:
    """One run of the whole job through the worker; see the module docstring.

    Args:
        logic: the :class:`~.logic.MedDIFTLogicCore` that owns the worker and the scene.
        request: what to match, read once here.
        overwrite: asked (now, before any work) whether an output list with points may be replaced.
    """

    error: BaseException | None
    heatmap: Volume | None
    field: tuple[np.ndarray, np.ndarray] | None  # (RAS displacement, IJK-to-RAS) as read_field gives it
    warped: Volume | None

    def __init__(self, logic, request: MatchRequest, overwrite: Callable[[object], bool] | None = None):
        self.logic, self.request = logic, request
        self.stage, self.fraction = "starting", 0.0
        self.done, self.error, self.cancelled = False, None, False
        self.log: list[str] = []
        self.warnings: list[str] = []  # the engine's doubts about the inputs (not CT in HU, no overlap, ...)
        self.result: MatchResult | None = None
        self.configure_result: dict | None = None  # the worker's backbone note and device, once configured
        self.matched: dict | None = None
        self.heatmap = self.field = self.warped = None
        self.points: PointSet | None = None
        self.heatmap_label = ""
        self.fixed_key = self.moving_key = ""
        self.output_node = None  # the list the matches go into (None: a new one)
        self.output_count = 0  # its number of points when it was chosen (a change since: a new list)
        self.tmp = Path(tempfile.mkdtemp(prefix="meddift-job-"))
        self._current: Step | None = None
        self._done_weight = 0.0
        self._t0 = time.monotonic()
        try:
            self._check_inputs()
            self.output_node = self._output_node(overwrite)
            self.output_count = self.output_node.GetNumberOfControlPoints() if self.output_node else 0
            plan = self._plan()
            self._steps = self.logic.worker_steps(request.engine, request.matching, self) + plan
        except BaseException:  # refused before starting: leave no temporary folder behind
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        self.client = self.logic.client  # the worker this job's features will live in
        self._total = sum(step.weight for step in self._steps)

    # --- planning (all reads of the scene and all questions happen here, before any work) -----------

    def _check_inputs(self) -> None:
        r, scene = self.request, self.logic.scene
        if scene.GetNodeByID(r.fixed_volume_id) is None or scene.GetNodeByID(r.moving_volume_id) is None:
            raise InputError("select a fixed and a moving volume")
        if r.fixed_volume_id == r.moving_volume_id:
            raise InputError("the fixed and the moving volume are the same scan: select two different volumes")
        points_node = scene.GetNodeByID(r.fixed_points_id)
        if points_node is None:
            raise InputError("select the fixed landmarks (a point list on the fixed volume)")
        self.points = pointset_from_markups(points_node)
        if len(self.points) == 0 or not self.points.defined.any():
            raise InputError(f"the point list {points_node.GetName()!r} has no placed points")

    def _output_node(self, overwrite):
        """The list to write into, decided now: the request's if it is empty or the user agrees to
        replace its points; never another pair's session list (that would mix two follow-ups)."""
        r, scene = self.request, self.logic.scene
        node = scene.GetNodeByID(r.output_points_id) if r.output_points_id else None
        if node is None:
            return None
        owner = session_of(scene, node)
        if owner is not None and r.record_session and not self._same_pair(*owner):
            self.log.append(f"{node.GetName()!r} holds another pair's matches: writing a new list")
            return None
        if node.GetNumberOfControlPoints() == 0 or (overwrite is not None and overwrite(node)):
            return node
        raise OverwriteDeclined(
            f"the output point list {node.GetName()!r} already has points and was kept; "
            "choose another output list (or none, for a new one) and press Apply again"
        )

    def _same_pair(self, session: TrackingSession, t: int) -> bool:
        """Whether time point ``t`` of ``session`` matches this request's moving volume from its points."""
        r = self.request
        moving = session.volumes()[t]
        try:
            source = session.source(t)[1]
        except InputError:  # its source has no matches (any more)
            return False
        return (
            moving is not None
            and source is not None
            and moving.GetID() == r.moving_volume_id
            and source.GetID() == r.fixed_points_id
        )

    def _plan(self) -> list:
        scene, r = self.logic.scene, self.request
        assert self.points is not None and self.points.labels is not None  # _check_inputs read them
        fixed, moving = scene.GetNodeByID(r.fixed_volume_id), scene.GetNodeByID(r.moving_volume_id)
        defined_labels = [lb for lb, d in zip(self.points.labels, self.points.defined) if d]
        # one of the labels (all str) when it is in the list
        self.heatmap_label = cast(str, r.heatmap_label) if r.heatmap_label in defined_labels else defined_labels[0]
        self.fixed_key, self.moving_key = f"fixed-{fixed.GetID()}", f"moving-{moving.GetID()}"
        fixed_path, moving_path = self.tmp / "fixed.nrrd", self.tmp / "moving.nrrd"
        # copies of the voxels taken now (the user may edit the scene meanwhile), written in a thread
        fixed_volume, moving_volume = volume_from_node(fixed), volume_from_node(moving)
        heatmap_path = self.tmp / "heatmap.nrrd"
        match_fields = {
            "fixed": self.fixed_key,
            "moving": self.moving_key,
            "points": self.points.points.tolist(),  # NaN (undefined) travels as JSON NaN
            "labels": self.points.labels,
        }
        if r.prior:
            match_fields["prior"] = r.prior
        point = self.points.points[self.points.label_index(self.heatmap_label)].tolist()
        return [
            LocalStep("write fixed", lambda: write_volume(fixed_volume, fixed_path)),
            LocalStep("write moving", lambda: write_volume(moving_volume, moving_path)),
            WorkerStep(
                "load fixed",
                "load_volume",
                {"name": self.fixed_key, "path": str(fixed_path), "label": fixed.GetName()},
                self._loaded,
            ),
            WorkerStep(
                "load moving",
                "load_volume",
                {"name": self.moving_key, "path": str(moving_path), "label": moving.GetName()},
            ),
            WorkerStep("fixed features", "extract", {"name": self.fixed_key}, self._timed("fixed features")),
            WorkerStep("moving features", "extract", {"name": self.moving_key}, self._timed("moving features")),
            *self._register_steps(),
            WorkerStep("match", "match", match_fields, self._matched),
            WorkerStep(
                "heatmap",
                "heatmap",
                {"fixed": self.fixed_key, "moving": self.moving_key, "point": point, "out": str(heatmap_path)},
            ),
            LocalStep(
                "read heatmap",
                lambda: read_volume(heatmap_path, name="MedDIFT similarity"),
                lambda v: setattr(self, "heatmap", v),
            ),
        ]

    def _register_steps(self) -> list:
        """The dense registration, before the match (which then reuses it), when asked for."""
        r = self.request
        if not (r.transform or r.warp or r.prior == "dense"):
            return []
        field_path, warped_path = self.tmp / "field.nrrd", self.tmp / "warped.nrrd"
        fields = {"fixed": self.fixed_key, "moving": self.moving_key, "out": str(field_path)}
        if r.warp:
            fields["warped"] = str(warped_path)
        steps: list[Step] = [WorkerStep("register", "register", fields, self._registered)]
        if r.transform:
            steps.append(LocalStep("read field", lambda: read_field(field_path), lambda f: setattr(self, "field", f)))
        if r.warp:
            steps.append(
                LocalStep(
                    "read warped",
                    lambda: read_volume(warped_path, name="MedDIFT warped"),
                    lambda v: setattr(self, "warped", v),
                )
            )
        return steps

    # --- what the steps hand back ----------------------------------------------------

    def configured(self, options: dict, result: dict) -> None:
        """The worker's configure step finished (called by the logic's configure step)."""
        self.configure_result = result
        self.warnings += [render(w, "slicer") for w in result.get("warning_templates") or []]

    def _loaded(self, result: dict) -> None:
        self.logic.features_job = self  # from now on the worker's features are this job's

    def _timed(self, name: str) -> Callable[[dict], None]:
        return lambda result: self.log.append(f"{self._elapsed()} {name}: {result.get('seconds', 0):.1f} s")

    def _matched(self, result: dict) -> None:
        self.matched = result
        # options named as this panel names them (the worker also sends its own wording)
        said = result.get("warning_templates") or decode_match(result)[3]
        self.warnings = self.warnings + [render(w, "slicer") for w in said]
        self.log += [f"warning: {w}" for w in self.warnings]

    def _registered(self, result: dict) -> None:
        j = result.get("jacobian", {})
        self.log.append(
            f"{self._elapsed()} dense registration: {result.get('seconds', 0):.1f} s, pre-alignment "
            f"{result.get('prealign')}, folding voxels {100 * j.get('folding_share', 0):.3f}%"
        )

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self._t0:6.1f}s"

    # --- running ---------------------------------------------------------------

    def poll(self) -> bool:
        """Advance without blocking; True while the job runs. Never raises: any error ends the job."""
        if self.done:
            return False
        try:
            self._check_still_there()
            while True:
                if self._current is None:
                    if not self._steps:
                        self._finish()
                        return False
                    self._start_next()
                assert self._current is not None  # _start_next set it
                if not self._current.finished():
                    return True
                self._done_weight += self._current.weight
                self._current = None
        except CancelledError:
            self._fail(None, cancelled=True)
        except Exception as err:  # noqa: BLE001 - whatever it is, the job ends and says why
            self._fail(err)
        return False

    def run(self, timeout: float = 3600.0, interval: float = 0.05) -> MatchJob:
        """Block until done (console and tests)."""
        deadline = time.monotonic() + timeout
        while self.poll():
            if time.monotonic() > deadline:
                self.cancel()
                raise MedDIFTError(f"the job did not finish within {timeout:.0f} s")
            time.sleep(interval)
        return self

    def cancel(self) -> None:
        """Stop at once: kill the worker (its features are lost), leave the scene as it was."""
        if self.done:
            return
        self.logic.kill_worker()
        self._fail(None, cancelled=True)

    def _check_still_there(self) -> None:
        scene = self.logic.scene
        for what, node_id in self.request.input_ids().items():
            if scene.GetNodeByID(node_id) is None:
                raise InputError(f"the {what} of this run was removed from the scene while it ran; nothing was written")

    def _start_next(self) -> None:
        self._current = self._steps.pop(0)
        self.stage = self._current.name
        self._set_fraction(0.0)
        self.log.append(f"{self._elapsed()} {self._current.name}")
        self._current.start(self.logic.client, self._progress)

    def _progress(self, msg: dict) -> None:
        if msg.get("event") == "progress" and self._current is not None:
            self.stage = f"{self._current.name}: {msg['stage']}"
            self._set_fraction(substage_fraction(self._current.kind, msg["stage"], float(msg["fraction"])))

    def _set_fraction(self, step_fraction: float) -> None:
        """The whole job's progress: finished steps plus this part of the current one (never backwards,
        although a step's own sub-stages may each report 0..1)."""
        weight = self._current.weight if self._current else 0.0
        overall = (self._done_weight + weight * min(max(step_fraction, 0.0), 1.0)) / max(self._total, 1e-9)
        self.fraction = max(self.fraction, min(overall, 1.0))

    # --- results into the scene (only here, all or nothing) ----------------------------------

    def _finish(self) -> None:
        changes = SceneChanges(self.logic.scene)
        try:
            self.result = self._write(changes)
        except BaseException:
            changes.rollback()
            self.result = None
            raise
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.stage, self.fraction, self.done = "done", 1.0, True
        self.log.append(f"{self._elapsed()} done")

    def _write(self, changes: SceneChanges) -> MatchResult:
        scene, r = self.logic.scene, self.request
        assert self.matched is not None  # the match step's answer (every step has finished)
        pts, labels, values, _ = decode_match(self.matched)
        matched = PointSet(pts, labels, values)
        moving_node = scene.GetNodeByID(r.moving_volume_id)
        out_node = self.output_node
        if out_node is not None and out_node.GetNumberOfControlPoints() != self.output_count:
            # points placed in it while the job ran: nobody agreed to replace those
            self.log.append(
                f"{out_node.GetName()!r} changed while the run went on and was kept: the matches are in a new list"
            )
            out_node = None
        if out_node is not None and out_node.GetNumberOfControlPoints() > 0:
            changes.keep_markups(out_node)
        if out_node is None:
            out_node = changes.added(
                scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", scene.GenerateUniqueName("MedDIFT matched"))
            )
            out_node.CreateDefaultDisplayNodes()
        write_markups(out_node, matched, locked=True)
        clear_verdicts(out_node)  # new positions: the reader has not seen them yet
        hm_node = self.logic.heatmap_node(self.heatmap, changes)
        show_heatmap(scene, hm_node, threshold=max(0.0, float(np.nanmin(values["similarity"])) - 0.2))
        result = MatchResult(out_node, hm_node, matched, self.heatmap_label, self.warnings)
        if self.field is not None:
            existing = node_or_none(scene, r.transform_node_id)
            if reusable(existing):
                changes.keep_transform(existing)
            made = transform_outputs(scene, existing, *self.field, moving_node.GetName(), r.inverse)
            result.transform_node = made["transform_node"]
            result.inverse_transform_node = made.get("inverse_transform_node")
            for node in made.values():
                if node is not existing:
                    changes.added(node)
        if self.warped is not None:
            existing = node_or_none(scene, r.warped_node_id)
            if reusable(existing):
                changes.keep_volume(existing)
            result.warped_node = warped_output(scene, existing, self.warped, moving_node.GetName())
            if result.warped_node is not existing:
                changes.added(result.warped_node)
        if r.record_session:
            result.session = self._record_session(changes, out_node)
        return result

    def _record_session(self, changes: SceneChanges, out_node) -> TrackingSession:
        scene, r = self.logic.scene, self.request
        fixed, moving = scene.GetNodeByID(r.fixed_volume_id), scene.GetNodeByID(r.moving_volume_id)
        points = scene.GetNodeByID(r.fixed_points_id)
        session = TrackingSession.find_pair(scene, fixed, moving, points)
        if session is None:
            session = TrackingSession.create(scene, fixed, points, [moving], "baseline")
            changes.added(session.node)
        session.set_matched(1, out_node)
        return session

    def _fail(self, err: BaseException | None, cancelled: bool = False) -> None:
        if isinstance(err, MedDIFTError):  # options named as this panel names them
            err.args = (render(err, "slicer"),) + tuple(err.args[1:])
        self.done, self.cancelled, self.error = True, cancelled, err
        self.stage = "cancelled" if cancelled else "failed"
        self.log.append(self.stage + (f": {err}" if err else ""))
        shutil.rmtree(self.tmp, ignore_errors=True)
