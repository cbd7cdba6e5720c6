"""The module's logic without Qt: jobs in the background worker, results into the scene.

A :class:`MatchJob` is a small state machine over worker steps (start the
worker and configure it when needed, load both volumes, extract features,
match, heatmap), each a non-blocking client call (:meth:`WorkerClient.launch`
and ``poll_ready``, ``submit`` and :meth:`Pending.poll`). ``poll()`` advances
it without ever waiting, so a GUI timer can drive it; tests and the Python
console can call ``run()``. Match results are decoded by the protocol's codec.
The scene is touched only when the whole job has succeeded: a failed, crashed
or cancelled job leaves every node as it was and removes its temporary files.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from MedDIFTLib.data.image_io import read_volume, write_volume
from MedDIFTLib.data.points import PointSet
from MedDIFTLib.errors import CancelledError, InputError, MedDIFTError
from MedDIFTLib.service.client import WorkerClient
from MedDIFTLib.service.protocol import decode_match

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

HEATMAP_ATTRIBUTE = "MedDIFT.Heatmap"


@dataclass
class MatchRequest:
    """What to match: node IDs and options (everything the GUI's parameter node holds)."""

    fixed_volume_id: str
    moving_volume_id: str
    fixed_points_id: str
    output_points_id: Optional[str] = None
    heatmap_label: Optional[str] = None  # None: the first defined point
    engine: dict = field(default_factory=dict)
    matching: dict = field(default_factory=dict)


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
        self._pending = None  # the Pending request of the current step
        self._current = None
        try:
            self._steps = self.logic.worker_steps(request.engine, request.matching) + self._plan()
        except BaseException:  # refused before starting: leave no temporary folder behind
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        self._t0 = time.monotonic()

    # --- planning (all reads of the scene happen here, before any work) ---------

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
        write_volume(volume_from_node(fixed), fixed_path)
        write_volume(volume_from_node(moving), moving_path)
        self.heatmap_path = self.tmp / "heatmap.nrrd"
        idx = self.points.label_index(self.heatmap_label)
        return [
            ("load fixed", "load_volume", {"name": self.fixed_key, "path": str(fixed_path), "label": fixed.GetName()}),
            ("load moving", "load_volume", {"name": self.moving_key, "path": str(moving_path),
                                            "label": moving.GetName()}),
            ("fixed features", "extract", {"name": self.fixed_key}),
            ("moving features", "extract", {"name": self.moving_key}),
            ("match", "match", {"fixed": self.fixed_key, "moving": self.moving_key,
                                "points": self.points.points.tolist(),  # NaN (undefined) travels as JSON NaN
                                "labels": self.points.labels}),
            ("heatmap", "heatmap", {"fixed": self.fixed_key, "moving": self.moving_key,
                                    "point": self.points.points[idx].tolist(), "out": str(self.heatmap_path)}),
        ]

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
        self.stage, self.fraction = name, 0.0
        self.log.append(f"{time.monotonic() - self._t0:6.1f}s {name}")
        if cmd == "launch":
            self.logic.client.launch()
        else:
            self._pending = self.logic.client.submit(cmd, on_event=self._progress, **fields)

    def _step_done(self) -> bool:
        """Whether the current step has finished (its result handled); never waits."""
        name, cmd, fields = self._current
        if cmd == "launch":
            return self.logic.client.poll_ready()
        if not self._pending.poll():
            return False
        self._received(self._pending.result or {})
        return True

    def _progress(self, msg: dict):
        if msg.get("event") == "progress":
            self.stage, self.fraction = f"{self._current[0]}: {msg['stage']}", msg["fraction"]

    def _received(self, result: dict):
        name, cmd, fields = self._current
        if cmd == "configure":
            self.configure_result = result
            self.logic.configured(fields, result)
        elif name == "match":
            self.matched = result
            self.warnings = decode_match(result)[3]
            self.log += [f"warning: {w}" for w in self.warnings]
        elif name == "heatmap":
            self.heatmap_info = result
        elif name.endswith("features"):
            self.log.append(f"{time.monotonic() - self._t0:6.1f}s {name}: {result.get('seconds', 0):.1f} s")

    # --- results into the scene (only here) ------------------------------------------

    def _finish(self):
        try:
            scene = self.logic.scene
            r = self.request
            pts, labels, values, _ = decode_match(self.matched)
            matched = PointSet(pts, labels, values)
            heatmap = read_volume(self.heatmap_path, name="MedDIFT similarity")
            existing = scene.GetNodeByID(r.output_points_id) if r.output_points_id else None
            out_node = output_markups_node(scene, "MedDIFT matched", existing, self.overwrite)
            write_markups(out_node, matched, locked=True)
            hm_node = self.logic.heatmap_node(heatmap)
            show_heatmap(scene, hm_node, threshold=max(0.0, float(np.nanmin(values["similarity"])) - 0.2))
            self.result = {"points_node": out_node, "heatmap_node": hm_node, "matched": matched,
                           "heatmap_label": self.heatmap_label, "warnings": self.warnings}
            self.stage, self.fraction = "done", 1.0
            self.log.append(f"{time.monotonic() - self._t0:6.1f}s done")
        except MedDIFTError as err:
            self._fail(err)
            return
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.done = True

    def _fail(self, err: Optional[BaseException], cancelled: bool = False):
        self.done, self.cancelled, self.error = True, cancelled, err
        self.stage = "cancelled" if cancelled else "failed"
        self.log.append(self.stage + (f": {err}" if err else ""))
        shutil.rmtree(self.tmp, ignore_errors=True)


class MedDIFTLogicCore:
    """Owns the worker process for a scene; starts jobs and live single-point matches."""

    def __init__(self, scene, python: Optional[str] = None, env: Optional[dict] = None):
        self.scene = scene
        self.python, self.env = python, env
        self.client: Optional[WorkerClient] = None
        self._configured: Optional[dict] = None
        self.configure_result: Optional[dict] = None
        self.job: Optional[MatchJob] = None  # the last job started; one at a time (they share the worker)
        # a new client: local worker by default; remote.use_settings puts a server session here
        self.client_factory: Optional[Callable[[], object]] = None

    # --- worker ----------------------------------------------------------------

    def worker_steps(self, engine: dict, matching: dict) -> list:
        """The job steps that give it a running worker configured with these options: start one
        (when none runs) and configure it (when its options differ). Steps of the job's poll loop,
        so that neither blocks the GUI."""
        steps = []
        if self.client is None or not self.client.alive:
            self.client = self.client_factory() if self.client_factory else WorkerClient(python=self.python, env=self.env)
            self._configured = None
            steps.append(("start worker", "launch", {}))
        wanted = {"engine": engine, "matching": matching}
        if self._configured != wanted:
            steps.append(("configure", "configure", wanted))
        return steps

    def configured(self, options: dict, result: dict) -> None:
        """The worker now runs with ``options`` (a job's configure step finished)."""
        self._configured, self.configure_result = dict(options), result

    def kill_worker(self) -> None:
        if self.client is not None:
            self.client.kill()
        self.client, self._configured = None, None

    def shutdown(self) -> None:
        if self.client is not None:
            self.client.stop()
        self.client, self._configured = None, None

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

    def match_point(self, job: MatchJob, index: int, timeout: float = 60.0) -> dict:
        """Live mode: match point ``index`` of the fixed list with the cached features,
        update its partner in the output list and the heatmap. Synchronous: the
        features are in the worker's memory, so this takes a fraction of a second."""
        if job.result is None:
            raise InputError("run a match first: live mode uses its features")
        self._refuse_if_busy("match a point live")
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
