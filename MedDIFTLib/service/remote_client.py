"""A client of ``meddift serve`` that stands in for :class:`~MedDIFTLib.service.client.WorkerClient`.

The Slicer logic and the CLI drive a worker through ``launch``/``poll_ready``, ``submit`` (a
pending reply with a non-blocking ``poll``), ``request``, ``kill`` and ``stop``, with the worker
commands ``configure``, ``load_volume``, ``extract``, ``match``, ``heatmap``, ``register``, ``cancel``,
``ping`` and ``shutdown``. :class:`RemoteClient` offers exactly those, so the logic runs either
without knowing which: a local ``path`` given to ``load_volume`` is uploaded (after asking whether
the server already holds those bytes), the local ``out`` of ``heatmap`` and the ``out``,
``warped`` and ``inverse`` of ``register`` are downloaded into (the server writes into its own
session folder and says the file names; each download is atomic), the rest maps one to one onto
server jobs. Each submitted request runs in its own thread, so ``poll``
never waits on the network and a GUI timer can drive it.

Failures keep the worker's vocabulary: a refusal is :class:`WorkerError` (``kind`` as the server
names it), a cancel :class:`CancelledError`, and a server that stops answering
:class:`WorkerCrashed` ("the MedDIFT server at ... stopped"), which the logic already treats as
"leave the scene as it was".
"""

from __future__ import annotations

import json
import os
import queue
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..data.digest import file_sha256
from ..errors import CancelledError, MedDIFTError
from ..options import FINAL_STATES, SERVER_OWNED_ENGINE_KEYS, JobState
from .client import WorkerCrashed, WorkerError, start_and_wait, wait_reply
from .protocol import PROTOCOL_VERSION

FINAL = FINAL_STATES
LOCAL_ONLY = SERVER_OWNED_ENGINE_KEYS  # the server chooses these
UPLOAD_FORMATS = {".nrrd": "nrrd", ".nii.gz": "nii.gz", ".nii": "nii", ".mha": "mha"}
DOWNLOADS = {"heatmap": ("out",), "register": ("out", "warped", "inverse")}
"""Fields of a command that name a local file to write: the server is asked for the file instead
(``register``: a flag for the optional ones) and it is downloaded there."""
FIELD_FILES = ("out", "inverse")  # register's displacement fields (vector images), not scalar volumes


def read_token(token_file: str | None = None) -> str | None:
    """The token from a file (its first non-comment line) or ``MEDDIFT_TOKEN``; None when neither."""
    if token_file:
        try:
            lines = Path(token_file).read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise MedDIFTError(f"cannot read the token file {token_file}: {err.strerror or err}") from err
        tokens = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        if not tokens:
            raise MedDIFTError(f"the token file {token_file} holds no token")
        return tokens[0]
    return os.environ.get("MEDDIFT_TOKEN") or None


class RemoteClient:
    """A session on a MedDIFT server, used like a worker process (see the module docstring)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        ca_file: str | None = None,
        timeout: float = 60.0,
        poll_wait: float = 0.5,
        protocol: int = PROTOCOL_VERSION,
    ):
        import httpx

        self.url = url.rstrip("/")
        headers = {"X-MedDIFT-Protocol": str(protocol)}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self._http = httpx.Client(
            base_url=self.url, headers=headers, verify=verify, timeout=httpx.Timeout(timeout, connect=10.0)
        )
        self.poll_wait = poll_wait
        self.session: str | None = None
        self.ready: dict | None = None
        self.pid = None  # no local process
        self._alive = True
        self._ids = iter(range(1, 1 << 62))
        self._launch: RemotePending | None = None
        self.last_status: dict | None = None

    # --- lifecycle, as WorkerClient ----------------------------------------------

    def launch(self) -> None:
        """Ask the server who it is, without waiting (:meth:`poll_ready` tells when it answered)."""
        self.ready, self._alive = None, True
        self._launch = self.submit("ping")

    def poll_ready(self, timeout: float = 0.0) -> bool:
        if self.ready is None:
            if self._launch is None:
                self.launch()
            assert self._launch is not None  # set by launch()
            if not self._launch.poll(timeout):
                return False
            self.ready = self._launch.result
        return True

    def start(self, timeout: float = 60.0) -> dict:
        return start_and_wait(self, timeout, f"the MedDIFT server at {self.url}")

    @property
    def alive(self) -> bool:
        return self._alive

    def kill(self) -> None:
        """Immediate Cancel: stop the session's jobs and close it, in the background (never blocks a GUI)."""
        if not self._alive:
            return
        self._alive = False
        sid, self.session = self.session, None
        threading.Thread(target=self._close_quietly, args=(sid,), daemon=True, name="meddift-remote-kill").start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._alive:
            self._alive = False
            sid, self.session = self.session, None
            self._close_quietly(sid, timeout)

    def _close_quietly(self, sid: str | None, timeout: float = 3.0) -> None:
        try:
            if sid:
                self._http.post(f"/v1/sessions/{sid}/cancel", timeout=timeout)
                self._http.delete(f"/v1/sessions/{sid}", timeout=timeout)
        except Exception:  # the server may be gone: nothing to close then
            pass

    # --- requests, as WorkerClient -------------------------------------------------

    def submit(self, cmd: str, on_event: Callable[[dict], None] | None = None, **fields) -> RemotePending:
        if not self._alive:
            raise WorkerCrashed(f"the MedDIFT server session at {self.url} was closed; start a new one")
        pending = RemotePending(next(self._ids), on_event)
        threading.Thread(
            target=pending.run, args=(self._perform, cmd, fields), daemon=True, name=f"meddift-remote-{cmd}"
        ).start()
        return pending

    def request(self, cmd: str, on_event: Callable[[dict], None] | None = None, timeout: float | None = None, **fields):
        return wait_reply(self.submit(cmd, on_event, **fields), timeout, "the MedDIFT server")

    # --- the commands ----------------------------------------------------------------

    def _perform(self, cmd: str, fields: dict, emit: Callable[[dict], None]):
        if cmd == "ping":
            info = self._call("GET", "/v1/info")
            if info.get("protocol") != PROTOCOL_VERSION:
                raise WorkerError(
                    f"the server at {self.url} speaks protocol {info.get('protocol')!r} (MedDIFT "
                    f"{info.get('version', '?')}) but this client speaks {PROTOCOL_VERSION}",
                    "ProtocolMismatch",
                )
            return info
        if cmd == "configure":
            if self.session:
                self._close_quietly(self.session)
            engine = {k: v for k, v in (fields.get("engine") or {}).items() if k not in LOCAL_ONLY}
            body = {"engine": engine, "matching": fields.get("matching") or {}}
            if fields.get("registration") is not None:
                body["registration"] = fields["registration"]
            opened = self._call("POST", "/v1/sessions", body)
            self.session = opened["session"]
            return self._wait_job(opened["job"], emit)
        if cmd == "shutdown":
            self.stop()
            return {"bye": True}
        sid = self._sid()
        if cmd == "cancel":
            return {"cancelled": bool(self._call("POST", f"/v1/sessions/{sid}/cancel")["cancelled"])}
        if cmd == "load_volume":
            return self._load(sid, fields["name"], fields["path"], fields.get("label"), emit, fields.get("hu_offset"))
        local = {k: fields.pop(k, None) for k in DOWNLOADS.get(cmd, ())}
        for key, path in local.items():
            if key != "out" and path:
                fields[key] = True  # the server writes it under a name of its own
        status = self._call("POST", f"/v1/sessions/{sid}/jobs", {"op": cmd, **fields}, params={"wait": self.poll_wait})
        result = self._wait_job(status["job"], emit, status)
        for key, path in local.items():
            if path:
                self._download(
                    sid,
                    result.pop("file" if key == "out" else f"{key}_file"),
                    path,
                    field=cmd == "register" and key in FIELD_FILES,
                )
                result["path" if key == "out" else key] = str(path)
        return result

    def _sid(self) -> str:
        if not self.session:
            raise WorkerError("not configured: send 'configure' first (it opens the server session)", "InputError")
        return self.session

    def _wait_job(self, jid: str, emit, status: dict | None = None) -> dict:
        last = None
        while True:
            if status is not None:
                if status["state"] in FINAL:
                    break
                shown = (status["stage"], status["fraction"], status.get("position"))
                if shown != last:
                    last = shown
                    stage = (
                        status["stage"]
                        if status.get("position") is None
                        else f"queued on the server ({status['position']} job(s) ahead)"
                    )
                    emit({"event": "progress", "stage": stage, "fraction": status["fraction"]})
            status = self._call("GET", f"/v1/sessions/{self._sid()}/jobs/{jid}", params={"wait": self.poll_wait})
        self.last_status = status  # the server's word on the last job (its device time in "seconds")
        if status["state"] == JobState.CANCELLED:
            raise CancelledError(status.get("error") or "cancelled")
        if status["state"] == JobState.FAILED:
            # the neutral template when the server sent one: each client says options in its own words
            raise WorkerError(
                status.get("template") or status.get("error") or "the job failed", status.get("kind") or "MedDIFTError"
            )
        return status["result"]

    def _load(self, sid: str, name: str, path, label, emit, hu_offset=None) -> dict:
        """Upload a local file, unless the server already holds these exact bytes (asked first);
        ``hu_offset``: this scan's intensity correction, applied by the server as the worker does."""
        path, tmp = Path(path), None
        fmt = next((f for suffix, f in UPLOAD_FORMATS.items() if path.name.lower().endswith(suffix)), None)
        try:
            if fmt is None or not path.is_file():  # a DICOM folder or another format: send it as NRRD
                from ..data.image_io import read_volume, write_volume

                tmp = Path(tempfile.mkdtemp(prefix="meddift-upload-"))
                path, fmt = write_volume(read_volume(path), tmp / "volume.nrrd"), "nrrd"
            digest = file_sha256(path)
            offset = {"hu_offset": hu_offset} if hu_offset not in (None, 0, 0.0) else {}
            body = {"sha256": digest, **({"label": label} if label else {}), **offset}
            try:
                return self._call("POST", f"/v1/sessions/{sid}/volumes/{name}/attach", body)
            except WorkerError as err:
                if err.kind != "NotFound":
                    raise
            emit({"event": "progress", "stage": "upload", "fraction": 0.0})
            size = path.stat().st_size
            params = {
                "format": fmt,
                **({"label": label} if label else {}),
                **({"hu_offset": repr(hu_offset)} if offset else {}),
            }
            out = self._call(
                "PUT",
                f"/v1/sessions/{sid}/volumes/{name}",
                content=_chunks(path),
                params=params,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            )
            emit({"event": "progress", "stage": "upload", "fraction": 1.0})
            return out
        finally:
            if tmp is not None:
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)

    def _download(self, sid: str, fname: str, out, field: bool = False) -> None:
        """The job's file ``fname`` into ``out``, atomically; converted when ``out`` is not NRRD (the
        worker writes what the extension says: so do we). ``field``: a displacement field."""
        from ..atomic import atomic_path

        if not str(out).lower().endswith(".nrrd"):
            with tempfile.TemporaryDirectory(prefix="meddift-download-") as tmp:
                self._download(sid, fname, Path(tmp) / "download.nrrd")
                _convert(Path(tmp) / "download.nrrd", out, field)
            return
        with atomic_path(out, suffix=".nrrd") as tmp:
            with open(tmp, "wb") as f:
                self._call("GET", f"/v1/sessions/{sid}/files/{fname}", sink=f)
        # downloaded: the server need not keep it until the session closes (in the background: a live
        # click does not wait for it)
        threading.Thread(target=self._forget_file, args=(sid, fname), daemon=True, name="meddift-remote-rm").start()

    def _forget_file(self, sid: str, fname: str) -> None:
        try:
            self._call("DELETE", f"/v1/sessions/{sid}/files/{fname}")
        except Exception:  # best effort: the session's folder goes when it closes anyway
            pass

    def _call(
        self, method: str, route: str, body: dict | None = None, params=None, content=None, headers=None, sink=None
    ):
        """One HTTP exchange; errors in the worker's vocabulary (see the module docstring)."""
        import httpx

        if body is not None:
            content, headers = json.dumps(body), {"Content-Type": "application/json"}
        try:
            with self._http.stream(method, route, params=params, content=content, headers=headers) as resp:
                if sink is not None and resp.status_code == 200:
                    for chunk in resp.iter_bytes(1 << 20):
                        sink.write(chunk)
                    return None
                data = resp.read()
        except httpx.ConnectError as err:
            if "CERTIFICATE_VERIFY_FAILED" in str(err) or "certificate verify failed" in str(err):
                raise WorkerError(
                    f"cannot verify the certificate of the MedDIFT server at {self.url} ({err}); "
                    "for a self-signed server give its CA file (--ca-file)",
                    "TLSError",
                ) from err
            self._alive = False
            if self.ready is not None:  # it answered before: it has stopped since
                raise WorkerCrashed(
                    f"the MedDIFT server at {self.url} stopped: it cannot be reached any more ({err}); "
                    "the job did not finish, nothing was changed"
                ) from err
            raise WorkerCrashed(f"the MedDIFT server at {self.url} cannot be reached ({err}); is it running?") from err
        except (httpx.TransportError, OSError) as err:
            self._alive = False
            raise WorkerCrashed(
                f"the MedDIFT server at {self.url} stopped while answering ({type(err).__name__}: "
                f"{err}); the job did not finish, nothing was changed"
            ) from err
        try:
            msg = json.loads(data) if data else {}
        except ValueError:
            msg = {"error": data[:200].decode(errors="replace")}
        if resp.status_code >= 400:
            raise WorkerError(
                msg.get("error") or f"HTTP {resp.status_code}", msg.get("kind") or f"HTTP{resp.status_code}"
            )
        return msg


class RemotePending:
    """A request in flight (a thread talks to the server); :meth:`poll` as :class:`~.client.Pending`."""

    def __init__(self, rid: int, on_event: Callable[[dict], None] | None = None):
        self.id, self.on_event = rid, on_event
        self.done, self.result = False, None
        self._messages: queue.Queue = queue.Queue()

    def run(self, perform, cmd: str, fields: dict) -> None:
        try:
            result = perform(cmd, dict(fields), lambda ev: self._messages.put(("event", {"id": self.id, **ev})))
            self._messages.put(("result", result))
        except BaseException as err:  # handed to the thread that polls
            self._messages.put(("error", err))

    def poll(self, timeout: float = 0.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.done:
            try:
                left = deadline - time.monotonic()
                kind, value = self._messages.get(timeout=left) if left > 0 else self._messages.get_nowait()
            except queue.Empty:
                return False
            if kind == "event":
                if self.on_event:
                    self.on_event(value)
                continue
            self.done = True
            if kind == "error":
                raise value
            self.result = value
        return True


def _convert(src: Path, out, field: bool) -> None:
    """A downloaded NRRD written as ``out``'s format: a scalar volume as the worker writes one, a
    displacement field by the engine's own field writer (as ``meddift register`` writes it)."""
    if not field:
        from ..data.image_io import read_volume, write_volume

        write_volume(read_volume(src), out)
        return
    import SimpleITK as sitk

    from ..registration.field import write_field_image

    write_field_image(sitk.ReadImage(str(src), sitk.sitkVectorFloat64), out)


def _chunks(path: Path):
    with open(path, "rb") as f:
        yield from iter(lambda: f.read(1 << 20), b"")


__all__ = ["RemoteClient", "RemotePending", "read_token", "WorkerError", "WorkerCrashed"]
