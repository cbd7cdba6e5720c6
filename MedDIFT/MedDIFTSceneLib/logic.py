"""The module's logic without Qt: jobs in the background worker, results into the scene.

A :class:`MatchJob` is a small state machine over steps (start the worker
and configure it when needed, write both volumes, load them, extract
features, match, heatmap, read the heatmap back), each non-blocking: a client
call (:meth:`WorkerClient.launch` and ``poll_ready``, ``submit`` and
:meth:`Pending.poll`) or file I/O in a background thread (:class:`Background`:
writing a 512^3 CT takes seconds, too long for the GUI thread). ``poll()``
advances it without ever waiting, so a GUI timer can drive it; tests and the
Python console can call ``run()``. ``fraction`` is the progress of the whole
job (steps weighted by their usual cost), never going back. Match results are decoded by the protocol's codec.
The scene is touched only when the whole job has succeeded: a failed, crashed
or cancelled job leaves every node as it was and removes its temporary files.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from MedDIFTLib.data.image_io import read_volume, write_volume
from MedDIFTLib.data.points import PointSet
from MedDIFTLib.errors import CancelledError, InputError, MedDIFTError, render
from MedDIFTLib.service.client import WorkerClient
from MedDIFTLib.service.protocol import decode_match

from .jobsteps import Background, MatchRequest, node_or_none, read_field, substage_fraction  # noqa: F401 (API)
from .scene import (
    add_volume_node,
    output_markups_node,
    pointset_from_markups,
    set_partner,
    show_heatmap,
    update_volume_node,
    volume_from_node,
    write_markups,
)
from .transforms import transform_outputs, warped_output

HEATMAP_ATTRIBUTE = "MedDIFT.Heatmap"
# Relative cost of each kind of step, for the overall progress (feature extraction dominates).
STEP_WEIGHTS = {"launch": 2.0, "configure": 3.0, "local": 0.5, "load_volume": 0.5, "extract": 10.0,
                "register": 10.0, "match": 3.0, "heatmap": 1.0}
STALE_FEATURES = ("the worker no longer holds the features of the last run (it was cancelled, stopped or "
                  "restarted): press Apply again")


class MatchJob:
    """One run of the whole job through the worker; see the module docstring."""

    def __init__(self, logic: "MedDIFTLogicCore", request: MatchRequest,
                 overwrite: Optional[Callable[[object], bool]] = None):
        self.logic, self.request, self.overwrite = logic, request, overwrite
        self.stage, self.fraction = "starting", 0.0
        self.done, self.error, self.cancelled = False, None, False
        self.log: list[str] = []
        self.warnings: list[str] = []  # the engine's doubts about the inputs (not CT in HU, no overlap, ...)
        self.result: Optional[dict] = None
        self.configure_result: Optional[dict] = None  # the worker's backbone note and device, once configured
        self.tmp = Path(tempfile.mkdtemp(prefix="meddift-job-"))
        self._pending = None  # the Pending request (or Background) of the current step
        self._current = None
        try:
            self._steps = self.logic.worker_steps(request.engine, request.matching) + self._plan()
        except BaseException:  # refused before starting: leave no temporary folder behind
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        self.client = self.logic.client  # the worker this job's features will live in
        self._total = sum(STEP_WEIGHTS[cmd] for _, cmd, _ in self._steps)
        self._done_weight = 0.0
        self._t0 = time.monotonic()

    # --- planning (all reads of the scene happen here, before any work; nothing is written) ---------

    def _plan(self):
        scene = self.logic.scene
        r = self.request
        fixed = scene.GetNodeByID(r.fixed_volume_id)
        moving = scene.GetNodeByID(r.moving_volume_id)
        points_node = scene.GetNodeByID(r.fixed_points_id)
        if fixed is None or moving is None:
            raise InputError("select a fixed and a moving volume")
        if points_node is None:
            raise InputError("select the fixed landmarks (a point list on the fixed volume)")
        self.points = pointset_from_markups(points_node)
        if len(self.points) == 0 or not self.points.defined.any():
            raise InputError(f"the point list {points_node.GetName()!r} has no placed points")
        label = r.heatmap_label
        defined_labels = [lb for lb, d in zip(self.points.labels, self.points.defined) if d]
        self.heatmap_label = label if label in defined_labels else defined_labels[0]
        self.fixed_key, self.moving_key = f"fixed-{fixed.GetID()}", f"moving-{moving.GetID()}"
        fixed_path, moving_path = self.tmp / "fixed.nrrd", self.tmp / "moving.nrrd"
        # copies of the voxels taken now (the user may edit the scene meanwhile), written in a thread
        fixed_volume, moving_volume = volume_from_node(fixed), volume_from_node(moving)
        self.heatmap_path = self.tmp / "heatmap.nrrd"
        idx = self.points.label_index(self.heatmap_label)
        match_fields = {"fixed": self.fixed_key, "moving": self.moving_key,
                        "points": self.points.points.tolist(),  # NaN (undefined) travels as JSON NaN
                        "labels": self.points.labels}
        if r.prior:
            match_fields["prior"] = r.prior
        return [
            ("write fixed", "local", {"run": lambda: write_volume(fixed_volume, fixed_path)}),
            ("write moving", "local", {"run": lambda: write_volume(moving_volume, moving_path)}),
            ("load fixed", "load_volume", {"name": self.fixed_key, "path": str(fixed_path), "label": fixed.GetName()}),
            ("load moving", "load_volume", {"name": self.moving_key, "path": str(moving_path),
                                            "label": moving.GetName()}),
            ("fixed features", "extract", {"name": self.fixed_key}),
            ("moving features", "extract", {"name": self.moving_key}),
            *self._register_steps(fixed_volume),
            ("match", "match", match_fields),
            ("heatmap", "heatmap", {"fixed": self.fixed_key, "moving": self.moving_key,
                                    "point": self.points.points[idx].tolist(), "out": str(self.heatmap_path)}),
            ("read heatmap", "local", {"run": lambda: read_volume(self.heatmap_path, name="MedDIFT similarity")}),
        ]

    def _register_steps(self, fixed_volume) -> list:
        """The dense registration, before the match (which then reuses it), when asked for."""
        r = self.request
        self.field, self.warped = None, None
        if not (r.transform or r.warp or r.prior == "dense"):
            return []
        field_path, warped_path = self.tmp / "field.nrrd", self.tmp / "warped.nrrd"
        fields = {"fixed": self.fixed_key, "moving": self.moving_key, "out": str(field_path)}
        if r.warp:
            fields["warped"] = str(warped_path)
        steps = [("register", "register", fields)]
        if r.transform:
            steps.append(("read field", "local", {"run": lambda: read_field(field_path)}))
        if r.warp:
            steps.append(("read warped", "local", {"run": lambda: read_volume(warped_path, name="MedDIFT warped")}))
        return steps

    # --- running ---------------------------------------------------------------

    def poll(self) -> bool:
        """Advance without blocking; True while the job runs."""
        if self.done:
            return False
        try:
            while True:
                if self._current is None:
                    if not self._steps:
                        self._finish()
                        return False
                    self._start_next()
                if not self._step_done():
                    return True
                self._done_weight += STEP_WEIGHTS[self._current[1]]
                self._current = None
        except CancelledError:
            self._fail(None, cancelled=True)
            return False
        except MedDIFTError as err:
            self._fail(err)
            return False

    def run(self, timeout: float = 3600.0, interval: float = 0.05) -> "MatchJob":
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

    def _start_next(self):
        self._current = self._steps.pop(0)
        name, cmd, fields = self._current
        self.stage = name
        self._set_fraction(0.0)
        self.log.append(f"{time.monotonic() - self._t0:6.1f}s {name}")
        if cmd == "launch":
            self.logic.client.launch()
        elif cmd == "local":
            self._pending = Background(fields["run"])
        else:
            if cmd == "load_volume":
                self.logic.features_job = self  # from now on the worker's features are this job's
            self._pending = self.logic.client.submit(cmd, on_event=self._progress, **fields)

    def _step_done(self) -> bool:
        """Whether the current step has finished (its result handled); never waits."""
        name, cmd, fields = self._current
        if cmd == "launch":
            return self.logic.client.poll_ready()
        if cmd == "local":
            if not self._pending.done():
                return False
            try:
                self._received(self._pending.result())
            except OSError as err:  # a full disk, a temporary folder removed under us
                raise MedDIFTError(f"{name}: {err}") from err
            return True
        if not self._pending.poll():
            return False
        self._received(self._pending.result or {})
        return True

    def _progress(self, msg: dict):
        if msg.get("event") == "progress":
            self.stage = f"{self._current[0]}: {msg['stage']}"
            self._set_fraction(substage_fraction(self._current[1], msg["stage"], float(msg["fraction"])))

    def _set_fraction(self, step_fraction: float):
        """The whole job's progress: finished steps plus this part of the current one (never backwards,
        although a step's own sub-stages may each report 0..1)."""
        weight = STEP_WEIGHTS[self._current[1]] if self._current else 0.0
        overall = (self._done_weight + weight * min(max(step_fraction, 0.0), 1.0)) / max(self._total, 1e-9)
        self.fraction = max(self.fraction, min(overall, 1.0))

    def _received(self, result: dict):
        name, cmd, fields = self._current
        if cmd == "configure":
            self.configure_result = result
            self.logic.configured(fields, result)
            self.warnings += [render(w, "slicer") for w in result.get("warning_templates") or []]
        elif name == "match":
            self.matched = result
            # options named as this panel names them (the worker also sends its own wording)
            said = result.get("warning_templates") or decode_match(result)[3]
            self.warnings = self.warnings + [render(w, "slicer") for w in said]
            self.log += [f"warning: {w}" for w in self.warnings]
        elif name == "heatmap":
            self.heatmap_info = result
        elif name == "read heatmap":
            self.heatmap = result
        elif name == "read field":
            self.field = result
        elif name == "read warped":
            self.warped = result
        elif name == "register":
            j = result.get("jacobian", {})
            self.log.append(f"{time.monotonic() - self._t0:6.1f}s dense registration: {result.get('seconds', 0):.1f} s, "
                            f"pre-alignment {result.get('prealign')}, folding voxels "
                            f"{100 * j.get('folding_share', 0):.3f}%")
        elif name.endswith("features"):
            self.log.append(f"{time.monotonic() - self._t0:6.1f}s {name}: {result.get('seconds', 0):.1f} s")

    # --- results into the scene (only here) ------------------------------------------

    def _finish(self):
        try:
            scene = self.logic.scene
            r = self.request
            pts, labels, values, _ = decode_match(self.matched)
            matched = PointSet(pts, labels, values)
            heatmap = self.heatmap
            existing = scene.GetNodeByID(r.output_points_id) if r.output_points_id else None
            out_node = output_markups_node(scene, "MedDIFT matched", existing, self.overwrite)
            write_markups(out_node, matched, locked=True)
            hm_node = self.logic.heatmap_node(heatmap)
            show_heatmap(scene, hm_node, threshold=max(0.0, float(np.nanmin(values["similarity"])) - 0.2))
            self.result = {"points_node": out_node, "heatmap_node": hm_node, "matched": matched,
                           "heatmap_label": self.heatmap_label, "warnings": self.warnings}
            moving_node = scene.GetNodeByID(r.moving_volume_id)
            if self.field is not None:
                self.result.update(transform_outputs(scene, node_or_none(scene, r.transform_node_id), *self.field,
                                                     moving_node.GetName(), r.inverse))
            if self.warped is not None:
                self.result["warped_node"] = warped_output(scene, node_or_none(scene, r.warped_node_id), self.warped,
                                                           moving_node.GetName())
            if r.record_session:
                from .session import TrackingSession

                session = TrackingSession.for_pair(scene, scene.GetNodeByID(r.fixed_volume_id),
                                                   scene.GetNodeByID(r.moving_volume_id),
                                                   scene.GetNodeByID(r.fixed_points_id))
                session.set_matched(1, out_node)
                self.result["session"] = session
            self.stage, self.fraction = "done", 1.0
            self.log.append(f"{time.monotonic() - self._t0:6.1f}s done")
        except MedDIFTError as err:
            self._fail(err)
            return
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.done = True

    def _fail(self, err: Optional[BaseException], cancelled: bool = False):
        if isinstance(err, MedDIFTError):  # options named as this panel names them
            err.args = (render(err, "slicer"),) + tuple(err.args[1:])
        self.done, self.cancelled, self.error = True, cancelled, err
        self.stage = "cancelled" if cancelled else "failed"
        self.log.append(self.stage + (f": {err}" if err else ""))
        shutil.rmtree(self.tmp, ignore_errors=True)


class MedDIFTLogicCore:
    """Owns the worker process for a scene; starts jobs and live single-point matches.

    ``env`` is the worker's environment, or a function returning it: called at each worker start so that
    a changed setting (Slicer's "force CPU") takes effect on the next run without a module reload; a
    running worker whose environment no longer matches is replaced by the next job.
    """

    def __init__(self, scene, python: Optional[str] = None, env=None):
        self.scene = scene
        self.python, self.env = python, env
        self.client: Optional[WorkerClient] = None
        self._client_env: Optional[dict] = None  # the environment the running worker was started with
        self._configured: Optional[dict] = None
        self.configure_result: Optional[dict] = None
        self.job: Optional[MatchJob] = None  # the last job started; one at a time (they share the worker)
        self.features_job: Optional[MatchJob] = None  # the job whose features the running worker holds
        # a new client: local worker by default; remote.use_settings puts a server session here
        self.client_factory: Optional[Callable[[], object]] = None

    # --- worker ----------------------------------------------------------------

    def worker_steps(self, engine: dict, matching: dict) -> list:
        """The job steps that give it a running worker configured with these options: start one
        (when none runs) and configure it (when its options differ). Steps of the job's poll loop,
        so that neither blocks the GUI."""
        steps = []
        env = self.worker_env()
        if self.client is not None and self.client.alive and env != self._client_env:
            self.kill_worker()  # started with other settings (force CPU changed): its features are stale anyway
        if self.client is None or not self.client.alive:
            self.client = self.client_factory() if self.client_factory else WorkerClient(python=self.python, env=env)
            self._client_env, self._configured, self.features_job = env, None, None
            steps.append(("start worker", "launch", {}))
        wanted = {"engine": engine, "matching": matching}
        if self._configured != wanted:
            steps.append(("configure", "configure", wanted))
        return steps

    def worker_env(self) -> Optional[dict]:
        """The environment for a worker started now (None: this process's)."""
        return dict(self.env()) if callable(self.env) else self.env

    def has_features(self, job: Optional[MatchJob]) -> bool:
        """Whether live matches can use ``job``'s features: it succeeded, no later job loaded other
        volumes, and its worker still runs (not cancelled, crashed, stopped or replaced)."""
        return (job is not None and job.result is not None and job is self.features_job
                and self.client is not None and job.client is self.client and self.client.alive)

    def configured(self, options: dict, result: dict) -> None:
        """The worker now runs with ``options`` (a job's configure step finished)."""
        self._configured, self.configure_result = dict(options), result

    def kill_worker(self) -> None:
        if self.client is not None:
            self.client.kill()
        self.client, self._configured, self.features_job = None, None, None

    def shutdown(self) -> None:
        if self.client is not None:
            self.client.stop()
        self.client, self._configured, self.features_job = None, None, None

    # --- jobs ------------------------------------------------------------------

    def busy(self) -> bool:
        return self.job is not None and not self.job.done

    def _refuse_if_busy(self, what: str) -> None:
        if self.busy():
            raise InputError(f"cannot {what}: a MedDIFT run is in progress ({self.job.stage}); wait for it to "
                             "finish or cancel it first")

    def start_match(self, request: MatchRequest, overwrite: Optional[Callable[[object], bool]] = None) -> MatchJob:
        """Start a job; refused while another runs (both would talk to the one worker and
        write the same output nodes)."""
        self._refuse_if_busy("start another run")
        self.job = MatchJob(self, request, overwrite)
        return self.job

    def start_tracking(self, session, engine: dict, matching: dict, heatmap_label: Optional[str] = None):
        """Track the session's landmarks through all its follow-ups (one job each, in order)."""
        from .multiscan import TrackingJob

        return TrackingJob(self, session, engine, matching, heatmap_label)

    def match_point(self, job: MatchJob, index: int, timeout: float = 60.0) -> dict:
        """Live mode: match point ``index`` of the fixed list with the cached features,
        update its partner in the output list and the heatmap. Synchronous: the
        features are in the worker's memory, so this takes a fraction of a second."""
        if job.result is None:
            raise InputError("run a match first: live mode uses its features")
        self._refuse_if_busy("match a point live")
        if not self.has_features(job):
            raise InputError(STALE_FEATURES)
        fixed_node = self.scene.GetNodeByID(job.request.fixed_points_id)
        out_node = job.result["points_node"]
        ps = pointset_from_markups(fixed_node)
        if not ps.defined[index]:
            raise InputError(f"point {ps.labels[index]!r} has no position")
        res = self.client.request("match", timeout=timeout, fixed=job.fixed_key, moving=job.moving_key,
                                  points=[ps.points[index].tolist()], labels=[ps.labels[index]])
        hm_path = Path(tempfile.mkdtemp(prefix="meddift-live-")) / "heatmap.nrrd"
        try:
            self.client.request("heatmap", timeout=timeout, fixed=job.fixed_key, moving=job.moving_key,
                                point=ps.points[index].tolist(), out=str(hm_path))
            heatmap = read_volume(hm_path, name="MedDIFT similarity")
        finally:
            shutil.rmtree(hm_path.parent, ignore_errors=True)
        pts, _, scores, _ = decode_match(res)
        point, values = pts[0], {k: float(v[0]) for k, v in scores.items()}
        set_partner(out_node, ps.labels[index], point, values)
        update_volume_node(job.result["heatmap_node"], heatmap)
        sim = values.get("similarity", np.nan)
        show_heatmap(self.scene, job.result["heatmap_node"], threshold=max(0.0, (0.0 if np.isnan(sim) else sim) - 0.2))
        return {"label": ps.labels[index], "point": point,
                **{k: None if np.isnan(v) else v for k, v in values.items()}}

    def heatmap_node(self, heatmap):
        """The module's own heatmap node (reused), never a user's volume."""
        for i in range(self.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
            node = self.scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
            if node.GetAttribute(HEATMAP_ATTRIBUTE) == "1":
                update_volume_node(node, heatmap)
                return node
        node = add_volume_node(self.scene, heatmap, "MedDIFT similarity")
        node.SetAttribute(HEATMAP_ATTRIBUTE, "1")
        return node
