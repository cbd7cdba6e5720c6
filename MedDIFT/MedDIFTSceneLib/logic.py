"""The module's logic without Qt: one worker per scene, jobs in it, results into the scene.

:class:`MedDIFTLogicCore` owns the worker process (a local one, or a server session through
``client_factory``), starts one job at a time (:class:`~.matchjob.MatchJob`, or a
:class:`~.multiscan.TrackingJob` of several), and the live matches of a finished job
(:class:`~.live.LiveQueue`). It also owns the pair's background registration
(:class:`~.densefield.BackgroundRegistration`, a worker of its own): while it runs, point matches are
provisional; when its field arrives they are re-placed from it, and a click becomes a field lookup
here (no worker). Nothing here blocks except the console helpers named so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from MedDIFTLib.errors import InputError
from MedDIFTLib.service.client import WorkerClient

from .densefield import BackgroundRegistration
from .denseset import DenseRegistrations, place_from_field
from .jobsteps import LaunchStep, MatchRequest, MatchResult, Step, WorkerStep, read_field  # noqa: F401 (the logic's API)
from .live import LiveMatch, LiveQueue
from .matchjob import MatchJob
from .multiscan import TrackingJob
from .scene import SceneChanges, add_volume_node, pointset_from_markups, update_volume_node

if TYPE_CHECKING:
    from MedDIFTLib.service.remote_client import RemoteClient

HEATMAP_ATTRIBUTE = "MedDIFT.Heatmap"
STALE_FEATURES = (
    "the worker no longer holds the features of the last run (it was cancelled, stopped or "
    "restarted): press Apply again"
)


class MedDIFTLogicCore:
    """Owns the worker process for a scene; starts jobs and live single-point matches.

    ``env`` is the worker's environment, or a function returning it: called at each worker start so that
    a changed setting (Slicer's "force CPU") takes effect on the next run without a module reload; a
    running worker whose environment no longer matches is replaced by the next job.
    """

    def __init__(self, scene, python: str | None = None, env=None):
        self.scene = scene
        self.python, self.env = python, env
        self.client: WorkerClient | RemoteClient | None = None
        self._client_env: dict | None = None  # the environment the running worker was started with
        self._configured: dict | None = None
        self.configure_result: dict | None = None
        self.job: MatchJob | None = None  # the last job started; one at a time (they share the worker)
        self.features_job: MatchJob | None = None  # the job whose features the running worker holds
        # a new client: local worker by default; remote.use_settings puts a server session here
        self.client_factory: Callable[[], WorkerClient | RemoteClient] | None = None
        self.live = LiveQueue(self)  # live matches of the last finished job
        # the pairs' background registrations, each in a worker of its own (the same kind as the main one)
        self.registrations = DenseRegistrations(
            scene,
            lambda: (
                self.client_factory()
                if self.client_factory
                else WorkerClient(python=self.python, env=self.worker_env())
            ),
        )

    # --- worker ----------------------------------------------------------------

    def worker_steps(self, engine: dict, matching: dict, job: MatchJob | None = None) -> list:
        """The job steps that give it a running worker configured with these options: start one
        (when none runs) and configure it (when its options differ). Steps of the job's poll loop,
        so that neither blocks the GUI.

        Args:
            engine: the engine options (backbone, device, ...), as the worker's configure takes them.
            matching: the matching options (search radius).
            job: the job these steps belong to; told the worker's configure answer (backbone, warnings).
        """
        steps: list[Step] = []
        env = self.worker_env()
        if self.client is not None and self.client.alive and env != self._client_env:
            self.kill_worker()  # started with other settings (force CPU changed): its features are stale anyway
        if self.client is None or not self.client.alive:
            self.client = self.client_factory() if self.client_factory else WorkerClient(python=self.python, env=env)
            self._client_env, self._configured, self.features_job = env, None, None
            steps.append(LaunchStep())
        wanted = {"engine": engine, "matching": matching}
        if self._configured != wanted:
            steps.append(
                WorkerStep("configure", "configure", wanted, lambda result: self._configured_for(job, wanted, result))
            )
        return steps

    def _configured_for(self, job: MatchJob | None, options: dict, result: dict) -> None:
        self.configured(options, result)
        if job is not None:
            job.configured(options, result)

    def worker_env(self) -> dict | None:
        """The environment for a worker started now (None: this process's)."""
        return dict(self.env()) if callable(self.env) else self.env

    def has_features(self, job: MatchJob | None) -> bool:
        """Whether live matches can use ``job``'s features: it succeeded, no later job loaded other
        volumes, and its worker still runs (not cancelled, crashed, stopped or replaced)."""
        return (
            job is not None
            and job.result is not None
            and job is self.features_job
            and self.client is not None
            and job.client is self.client
            and self.client.alive
        )

    def configured(self, options: dict, result: dict) -> None:
        """The worker now runs with ``options`` (a job's configure step finished)."""
        self._configured, self.configure_result = dict(options), result

    def kill_worker(self) -> None:
        self.live.clear()
        if self.client is not None:
            self.client.kill()
        self.client, self._configured, self.features_job = None, None, None

    def shutdown(self) -> None:
        self.cancel_dense()
        self.live.clear()
        if self.client is not None:
            self.client.stop()
        self.client, self._configured, self.features_job = None, None, None

    # --- jobs ------------------------------------------------------------------

    def busy(self) -> bool:
        return self.job is not None and not self.job.done

    def refuse_if_busy(self, what: str) -> None:
        if self.busy():
            assert self.job is not None  # busy() says so
            raise InputError(
                f"cannot {what}: a MedDIFT run is in progress ({self.job.stage}); wait for it to "
                "finish or cancel it first"
            )

    def start_match(self, request: MatchRequest, overwrite: Callable[[object], bool] | None = None) -> MatchJob:
        """Start a job; refused while another runs (both would talk to the one worker and
        write the same output nodes)."""
        self.refuse_if_busy("start another run")
        self.live.clear()  # a click's answer would be for the features this job replaces
        self.job = MatchJob(self, request, overwrite)
        return self.job

    def start_tracking(self, session, engine: dict, matching: dict, heatmap_label: str | None = None):
        """Track the session's landmarks through all its follow-ups (one job each, in order)."""
        return TrackingJob(self, session, engine, matching, heatmap_label)

    def live_click(self, job: MatchJob, index: int) -> None:
        """Live mode: match point ``index`` of ``job``'s fixed list again, without waiting; the answer
        is applied by :meth:`poll_live` when it arrives (a newer click supersedes this one)."""
        self._check_live(job)
        self.live.click(job, index)

    def poll_live(self) -> LiveMatch | None:
        """Advance the live match in flight; returns it once finished (``result`` or ``error``). Its
        point match is provisional while the pair's field is coming (re-placed at once if it came)."""
        live = self.live.poll()
        if live is not None and live.error is None and live.result is not None:
            if self.provisional(live.job.request, live.job.result.points_node, [live.result["label"]]):
                placed = pointset_from_markups(live.job.result.points_node)
                live.result["point"] = placed.points[placed.label_index(live.result["label"])]
        return live

    # --- the pairs' dense fields, registered in the background ------------------------------------

    @property
    def dense(self) -> BackgroundRegistration | None:
        """The registration asked for last (the selected pair's, after an Apply or a click)."""
        return self.registrations.newest

    def start_dense(self, request: MatchRequest) -> BackgroundRegistration:
        """Register ``request``'s pair in a worker of its own, unless that runs or is done already."""
        return self.registrations.start(request.fixed_volume_id, request.moving_volume_id, request.engine)

    def cancel_dense(self) -> None:
        self.registrations.cancel_all()

    def keep_dense_only_for(self, pairs) -> list:
        """Only these (fixed ID, moving ID) pairs are still wanted: the others are cancelled (returned)."""
        return self.registrations.keep_only(pairs)

    def dense_for(self, request: MatchRequest | None) -> BackgroundRegistration | None:
        """The background registration of exactly this pair (nodes, voxels, engine options), if any."""
        if request is None:
            return None
        return self.registrations.find(request.fixed_volume_id, request.moving_volume_id, request.engine)

    def field_for(self, request: MatchRequest | None) -> tuple | None:
        d = self.dense_for(request)
        return d.field if d is not None and d.ready() else None

    def provisional(self, request: MatchRequest, out_node, labels: list, fixed_points=None) -> list:
        """Point matches of ``labels`` just put in ``out_node`` for ``request``'s pair: provisional while
        its field is coming, re-placed at once when it is there. Returns the labels re-placed.

        Args:
            request: the pair (and engine options) the matches were made for.
            out_node: the matched point list.
            labels: the labels just placed.
            fixed_points: the fixed point list (default: the request's).
        """
        fixed_node = fixed_points or self.scene.GetNodeByID(request.fixed_points_id)
        return self.registrations.provisional(
            request.fixed_volume_id, request.moving_volume_id, request.engine, out_node, fixed_node, labels
        )

    def poll_dense(self) -> list:
        """Advance the background registrations; those that ended now, provisional matches re-placed."""
        return self.registrations.poll()

    def field_click(self, job: MatchJob, index: int) -> dict:
        """A live click once the pair's field is here: the fixed point moved through it, in this
        process (no worker round trip). Returns the label and the new point."""
        field = self.field_for(job.request)
        if field is None:
            raise InputError("the dense field of this pair is not ready")
        if job.result is None:
            raise InputError("run a match first: live mode uses its features")
        return place_from_field(
            job.result.points_node, self.scene.GetNodeByID(job.request.fixed_points_id), index, field
        )

    def _check_live(self, job: MatchJob | None) -> None:
        if job is None or job.result is None:
            raise InputError("run a match first: live mode uses its features")
        self.refuse_if_busy("match a point live")
        if not self.has_features(job):
            raise InputError(STALE_FEATURES)

    def match_point(self, job: MatchJob, index: int, timeout: float = 60.0) -> dict:
        """Console and tests: match point ``index`` again and wait for the answer (the panel uses
        :meth:`live_click`). Returns the label, the new point and its scores."""
        self._check_live(job)
        self.live.clear()
        live = LiveMatch(self, job, index)
        deadline = time.monotonic() + timeout
        while live.poll():
            if time.monotonic() > deadline:
                live.discard()
                raise InputError(f"the live match took more than {timeout:.0f} s")
            time.sleep(0.01)
        if live.error is not None:
            raise live.error
        return live.apply()

    def heatmap_node(self, heatmap, changes: SceneChanges | None = None):
        """The module's own heatmap node (reused), never a user's volume."""
        for i in range(self.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
            node = self.scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
            if node.GetAttribute(HEATMAP_ATTRIBUTE) == "1":
                if changes is not None:
                    changes.keep_volume(node)
                update_volume_node(node, heatmap)
                return node
        node = add_volume_node(self.scene, heatmap, "MedDIFT similarity")
        if changes is not None:
            changes.added(node)
        node.SetAttribute(HEATMAP_ATTRIBUTE, "1")
        return node
