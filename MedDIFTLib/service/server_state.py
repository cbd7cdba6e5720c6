"""What the HTTP server (:mod:`MedDIFTLib.service.server`) keeps between requests, without HTTP.

Sessions, uploaded volumes, the job queue and the limits live here so that the rules they
enforce (who may touch what, how much, how long) sit in one place apart from the routing:

- **Tokens** are kept as SHA-256 digests and compared in constant time (:class:`Tokens`); a
  caller is identified by the *index* of its token, never by the token itself, so nothing that
  is logged or returned can contain one.
- **Sessions** belong to the token that opened them. Asking for another caller's session gives
  the same answer as asking for one that does not exist (no listing across callers).
- **Volumes** are held once per upload digest (SHA-256 of the bytes received, computed here,
  never taken from the client), so a second upload of the same file, by anyone, is skipped;
  features are cached on disk by the volume's content digest (the engine's own cache). A scan's
  HU offset (``hu_offset``) is applied after that dedup, to the bytes as read: the scan with an
  offset is held under its own key (:func:`store_key`), never confused with the scan without.
- **Jobs** run one at a time on the server's device, in one thread, in submission order: a GPU
  runs one model well and two badly. Each job runs through the background worker's own command
  code (:class:`~MedDIFTLib.service.worker.Worker`), so local and remote results are the same code.
"""

from __future__ import annotations

import collections
import copy
import hmac
import itertools
import json
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from ..data.geometry import Volume
from ..data.image_io import read_volume, with_hu_offset
from ..errors import CancelledError, ImageReadError, InputError
from ..matching.search import MatchOptions
from ..session import EngineOptions, MatchSession
from .server_access import ApiError, Limits, Tokens
from .server_files import expire_results, lock_work_dir, new_session_folder, remove_session_folder, sweep_stale_sessions
from .server_ops import public_result, registration_options
from .server_types import FINAL, ClientSession, Job, JobState
from .worker import Worker, configure_reply

log = logging.getLogger("meddift.server")


class ServerState:
    """Sessions, volumes and the job queue of one server process (see the module docstring)."""

    def __init__(self, limits: Limits, work_dir: Path, engine_defaults: dict, tokens: Tokens | None = None):
        self.limits, self.tokens = limits, tokens
        self.work_dir = Path(work_dir)
        self.engine_defaults = dict(engine_defaults)  # weights_dir, cache_dir, device chosen by the admin
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # notified on every job or session change
        self.sessions: dict[str, ClientSession] = {}
        self.expired: collections.OrderedDict = collections.OrderedDict()  # id -> owner, to say "expired"
        self.store: dict[str, Volume] = {}  # upload digest -> Volume
        self.queue: collections.deque = collections.deque()
        self.engines: dict[str, MatchSession] = {}  # engine options (JSON) -> MatchSession, shared by sessions
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._work_lock = lock_work_dir(self.work_dir)  # one server per work folder: its sweep is then safe
        sweep_stale_sessions(self.work_dir)  # before any session of this process exists
        threading.Thread(target=self._run_jobs, name="meddift-server-jobs", daemon=True).start()
        threading.Thread(target=self._reap, name="meddift-server-reaper", daemon=True).start()

    # --- sessions --------------------------------------------------------------

    def open_session(
        self, owner: str, engine: dict, matching: dict, registration: dict | None = None
    ) -> tuple[ClientSession, Job]:
        """A new session for ``owner``; its first job configures the engine (loading a model can take
        a while, so it waits in the queue like any job and the request returns at once)."""
        with self.lock:
            if len(self.sessions) >= self.limits.max_sessions:
                raise ApiError(
                    429,
                    f"the server already has {len(self.sessions)} open sessions, its limit "
                    f"(--max-sessions {self.limits.max_sessions}); close one or try later",
                    "LimitExceeded",
                )
            sid = secrets.token_urlsafe(18)
            folder = new_session_folder(self.work_dir, sid)
            sess = ClientSession(
                sid,
                owner,
                folder,
                Worker(lambda m: None),
                dict(engine),
                dict(matching),
                dict(registration) if registration else None,
            )
            self.sessions[sid] = sess
        return sess, self.submit(sess, "configure", {})

    def session(self, sid: str, owner: str) -> ClientSession:
        """The caller's own session; anyone else's looks exactly like one that does not exist."""
        with self.lock:
            sess = self.sessions.get(sid)
            if sess is None or not hmac.compare_digest(sess.owner, owner):
                if self.expired.get(sid) == owner:
                    raise ApiError(
                        410,
                        f"session {sid} was closed after {self.limits.idle_timeout_s:g} s without "
                        "requests (--idle-timeout); open a new one",
                        "SessionExpired",
                    )
                raise ApiError(404, f"no session {sid} for this token; open one with POST /v1/sessions", "NotFound")
            sess.last_used = time.monotonic()
            return sess

    def close_session(self, sess: ClientSession, expired: bool = False) -> None:
        """Cancel its jobs, forget its volumes, delete its folder."""
        with self.changed:
            if self.sessions.pop(sess.id, None) is None:
                return
            if expired:
                self.expired[sess.id] = sess.owner
                while len(self.expired) > 1000:
                    self.expired.popitem(last=False)
            for job in sess.jobs.values():
                self._cancel(job)
            used = {k for s in self.sessions.values() for vk in s.volumes.values() for k in (vk, _raw(vk))}
            for key in {k for vk in sess.volumes.values() for k in (vk, _raw(vk))} - used:
                self.store.pop(key, None)
            if not self.sessions:  # nobody left: features stay in the disk cache, not in memory
                for engine in self.engines.values():
                    engine.forget()
            self.changed.notify_all()
        remove_session_folder(sess.folder)

    def _reap(self) -> None:
        """Close idle sessions (``--idle-timeout``) and delete result files past ``--retention``."""
        shortest = min(self.limits.idle_timeout_s, self.limits.retention_s if self.limits.retention_s > 0 else 1e9)
        while not self._stop.wait(min(5.0, max(0.2, shortest / 4))):
            now = time.monotonic()
            with self.lock:
                idle = [
                    s for s in self.sessions.values() if now - s.last_used > self.limits.idle_timeout_s and not s.busy
                ]
                folders = [s.folder for s in self.sessions.values()]
            for sess in idle:
                log.info("session %s closed after %.0f s idle", sess.id, now - sess.last_used)
                self.close_session(sess, expired=True)
            wall = time.time()
            for folder in folders:
                for name in expire_results(folder, self.limits.retention_s, wall):
                    log.info(
                        "deleted %s of session %s: kept %g s (--retention)", name, folder.name, self.limits.retention_s
                    )

    def close_all(self) -> None:
        """Close every session (the server is stopping): their jobs cancelled, their files deleted."""
        with self.lock:
            sessions = list(self.sessions.values())
        for sess in sessions:
            self.close_session(sess)

    # --- volumes -----------------------------------------------------------------

    def attach(
        self, sess: ClientSession, name: str, digest: str, label: str | None, hu_offset: float = 0.0
    ) -> dict | None:
        """Give the session the volume uploaded with this digest, if the server holds it (no upload),
        with this scan's ``hu_offset`` added (a volume of its own: see :func:`store_key`)."""
        with self.lock:
            raw = self.store.get(digest)
            if raw is None:
                return None
            return self._bind(sess, name, digest, raw, label, hu_offset)

    def add_upload(
        self, sess: ClientSession, name: str, path: Path, digest: str, label: str | None, hu_offset: float = 0.0
    ) -> dict:
        """Read an uploaded file (its size checked before its voxels are read) and give it to the session."""
        shown = label or name
        voxels = _voxel_count(path, shown)
        if voxels > self.limits.max_voxels:
            raise ApiError(
                413,
                f"volume {shown!r} has {voxels:,} voxels, more than the server's limit "
                f"(--max-voxels {self.limits.max_voxels:,}); crop or resample it",
                "LimitExceeded",
            )
        try:
            vol = read_volume(path, name=shown)
        except ImageReadError as err:
            raise ApiError(400, f"volume {shown!r}: {str(err).split(': ', 1)[-1]}", "ImageReadError") from err
        vol.metadata["path"] = f"upload {name}"  # the server's file name is nobody's business
        with self.lock:
            raw = self.store.setdefault(digest, vol)  # the bytes as read: the dedup is by their digest
            return self._bind(sess, name, digest, raw, label, hu_offset)

    def _bind(self, sess, name, digest, raw, label, hu_offset: float = 0.0) -> dict:
        """Under the lock: the volume ``raw`` (the upload as read), shifted by ``hu_offset`` as the local
        worker's ``load_volume`` does, held once per (digest, offset) and named ``name`` in the session."""
        key = store_key(digest, hu_offset)
        vol = self.store.get(key)
        if vol is None:
            vol = self.store[key] = with_hu_offset(raw, hu_offset)
        if label:
            vol = _relabelled(vol, label)
        sess.volumes[name] = key
        sess.worker.volumes[name] = vol
        out = {"name": name, "shape": list(vol.shape), "spacing": vol.spacing.tolist(), "sha256": digest}
        if hu_offset:
            out["hu_offset"] = float(hu_offset)
        return out

    # --- jobs --------------------------------------------------------------------

    def submit(self, sess: ClientSession, op: str, msg: dict) -> Job:
        with self.changed:
            if op != "configure" and len(self.queue) >= self.limits.max_queued_jobs:
                raise ApiError(
                    429,
                    f"{len(self.queue)} jobs are already waiting, the server's limit "
                    f"(--max-queued-jobs {self.limits.max_queued_jobs}); try again shortly",
                    "LimitExceeded",
                )
            job = Job(f"j{next(self._ids)}", sess, op, msg)
            sess.jobs[job.id] = job
            self.queue.append(job)
            self.changed.notify_all()
            return job

    def position(self, job: Job) -> int | None:
        with self.lock:
            return self.queue.index(job) if job.state is JobState.QUEUED and job in self.queue else None

    def wait(self, job: Job, seconds: float) -> dict:
        """The job's status once it has finished or ``seconds`` have passed (a long poll)."""
        deadline = time.monotonic() + max(0.0, min(float(seconds), 60.0))
        with self.changed:
            while job.state not in FINAL and time.monotonic() < deadline:
                self.changed.wait(deadline - time.monotonic())
        job.session.last_used = time.monotonic()
        return job.status(self.position(job))

    def cancel(self, job: Job) -> bool:
        with self.changed:
            return self._cancel(job)

    def _cancel(self, job: Job) -> bool:
        if job.state is JobState.QUEUED:
            self.queue.remove(job)
            job.state, job.stage, job.error, job.kind = JobState.CANCELLED, "cancelled", "cancelled", "CancelledError"
            self.changed.notify_all()
            return True
        if job.state is JobState.RUNNING:
            job.cancel_requested = True
            job.session.worker.cancel_event.set()
            return True
        return False

    def _run_jobs(self) -> None:
        while not self._stop.is_set():
            with self.changed:
                while not self.queue and not self._stop.is_set():
                    self.changed.wait(1.0)
                if self._stop.is_set():
                    return
                job = self.queue.popleft()
                job.state, job.stage, job.started = JobState.RUNNING, "starting", time.monotonic()
                self.changed.notify_all()
            try:
                self._execute(job)
            except Exception:  # a bug in this module: keep the queue running
                log.exception("job %s (%s) failed", job.id, job.op)
                self._finish(
                    job,
                    {
                        "ok": False,
                        "error": "internal server error; the details are in the server log",
                        "kind": "InternalError",
                    },
                )

    def _execute(self, job: Job) -> None:
        if job.op == "configure":
            try:
                reply: dict[str, Any] = {"ok": True, "result": self._configure(job.session)}
            except (InputError, TypeError, ApiError) as err:
                reply = {
                    "ok": False,
                    "error": str(err),
                    "kind": "InputError",
                    "template": err.template if isinstance(err, InputError) else None,
                }
            return self._finish(job, reply)
        worker = job.session.worker
        replies: list[dict] = []

        def emit(msg: dict):
            if msg.get("event") == "progress":
                if job.cancel_requested:  # a cancel that came before the worker cleared its flag
                    worker.cancel_event.set()
                with self.changed:
                    job.stage, job.fraction = msg["stage"], msg["fraction"]
                    self.changed.notify_all()
            else:
                replies.append(msg)

        worker.emit = emit
        worker.handle({"id": job.id, "cmd": job.op, **job.msg})
        reply = replies[-1] if replies else {"ok": False, "error": "no reply", "kind": "InternalError"}
        if reply.get("ok") and isinstance(reply.get("result"), dict):
            # the files the job wrote: named for download, their place on the server's disk kept to itself
            reply["result"] = public_result(job.op, reply["result"])
        self._finish(job, reply)

    def _configure(self, sess: ClientSession) -> dict:
        """The session's engine view: one MatchSession per engine configuration, shared by every session
        that asks for it (one model in GPU memory; features kept by volume digest)."""
        options = {**sess.engine, **self.engine_defaults}
        key = json.dumps(options, sort_keys=True, default=str)
        if key not in self.engines:
            self.engines[key] = MatchSession(EngineOptions.from_dict(options))
        engine = self.engines[key]
        sess.worker.session = engine.with_matching(MatchOptions(**sess.matching))
        if sess.registration is not None:  # with_matching made a copy: this session's own options
            sess.worker.session.registration = registration_options(sess.registration)
        return {"session": sess.id, **configure_reply(sess.worker.session)}  # the worker's reply, the same

    def _finish(self, job: Job, reply: dict) -> None:
        with self.changed:
            job.finished = time.monotonic()
            if reply.get("ok"):
                job.state, job.stage, job.fraction, job.result = JobState.DONE, "done", 1.0, reply.get("result")
            else:
                cancelled = reply.get("kind") == "CancelledError"
                job.state = JobState.CANCELLED if cancelled else JobState.FAILED
                job.stage, job.error, job.kind = job.state.value, reply.get("error"), reply.get("kind")
                job.template = reply.get("template")
            self.changed.notify_all()

    def stop(self) -> None:
        """Stop the job thread and the reaper, then close every session (its files deleted)."""
        self._stop.set()
        with self.changed:
            self.changed.notify_all()
        self.close_all()


def store_key(digest: str, hu_offset: float = 0.0) -> str:
    """Where the store holds an upload with this HU offset: the upload digest itself without one, the
    digest and the offset (``repr``: exact) with one, so that the two are never taken for each other."""
    offset = float(hu_offset or 0.0)
    return digest if offset == 0.0 else f"{digest}@{offset!r}"


def _raw(key: str) -> str:
    """The upload digest of a store key (the raw upload that a shifted volume is made from)."""
    return key.split("@", 1)[0]


def _voxel_count(path: Path, shown: str) -> int:
    """Voxels from the header alone, so a huge (or decompression-bomb) upload is refused unread."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise ApiError(
            400,
            f"volume {shown!r} is not a readable image (send the bytes of a NRRD, NIfTI or MHA file)",
            "ImageReadError",
        ) from err
    n = 1
    for s in reader.GetSize():
        n *= int(s)
    return n


def _relabelled(vol, label: str):
    """The same voxels under the caller's name (used in messages); the digest memo is kept."""
    out = copy.copy(vol)
    out.name = label
    return out


__all__ = [
    "ApiError",
    "Limits",
    "Tokens",
    "ServerState",
    "store_key",
    "Job",
    "JobState",
    "ClientSession",
    "CancelledError",
]
