"""The long-lived background worker: ``python -m MedDIFTLib.service.worker``.

It keeps the model and every feature pyramid in memory, so the Slicer module
(or any client) pays for feature extraction once and then matches points
interactively. It speaks the JSON-lines protocol described in
:mod:`MedDIFTLib.service.protocol`, and encodes every message with its codec.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..errors import CancelledError, InputError, MedDIFTError, render
from ..options import EngineOptions, MatchOptions, RegistrationOptions, UnknownOptionsError
from .protocol import PROTOCOL_VERSION, dumps, encode_match, loads

if TYPE_CHECKING:  # the session (torch) is imported by the first configure: "ready" goes out at once
    from ..session import MatchSession


class Worker:
    """Executes protocol requests; ``emit`` writes one message (thread-safe)."""

    def __init__(self, emit: Callable[[dict], None]):
        self.emit = emit
        self.session: MatchSession | None = None
        self.volumes: dict[str, Any] = {}
        self.cancel_event = threading.Event()

    # --- dispatch ------------------------------------------------------------

    def handle(self, msg: dict) -> bool:
        """Run one request and reply; returns False when the worker should stop."""
        rid = msg.get("id")
        cmd = msg.get("cmd")
        fn = getattr(self, f"cmd_{cmd}", None) if isinstance(cmd, str) else None
        if fn is None:
            self.reply_error(rid, InputError(f"unknown command {cmd!r}; known: {', '.join(self.commands())}"))
            return True
        self.cancel_event.clear()
        try:
            result = fn(msg, self._progress(rid))
        except CancelledError as err:
            self.emit({"id": rid, "ok": False, "error": render(err, "worker"), "kind": "CancelledError"})
        except MedDIFTError as err:
            self.reply_error(rid, err)
        except MemoryError:
            self.reply_error(
                rid, MedDIFTError("out of memory; try a smaller volume, fewer levels or the CPU"), "MemoryError"
            )
        except Exception as err:  # a bug: report it in full, keep serving
            traceback.print_exc(file=sys.stderr)
            self.reply_error(rid, err, type(err).__name__)
        else:
            self.emit({"id": rid, "ok": True, "result": result})
        return cmd != "shutdown"

    @classmethod
    def commands(cls) -> list[str]:
        return sorted(n[4:] for n in dir(cls) if n.startswith("cmd_"))

    def reply_error(self, rid, err: BaseException, kind: str | None = None):
        """An error in the protocol's words (options as request fields), with its neutral ``template`` and
        structured ``hints`` so that a client can say it in its own (the Slicer panel's field names)."""
        reply = {
            "id": rid,
            "ok": False,
            "error": render(err, "worker") or type(err).__name__,
            "kind": kind or type(err).__name__,
        }
        if isinstance(err, MedDIFTError):
            reply.update(template=err.template, hints=err.hints)
        self.emit(reply)

    def _progress(self, rid):
        last = [0.0]

        def progress(stage: str, fraction: float):
            now = time.monotonic()
            if fraction in (0.0, 1.0) or now - last[0] > 0.2:
                last[0] = now
                self.emit({"id": rid, "event": "progress", "stage": stage, "fraction": round(float(fraction), 4)})

        return progress

    def _cancelled(self) -> bool:
        return self.cancel_event.is_set()

    # --- helpers -------------------------------------------------------------

    def _session(self):
        if self.session is None:
            raise InputError("the worker is not configured: send 'configure' first")
        return self.session

    def _volume(self, msg: dict, key: str):
        name = msg.get(key)
        if not isinstance(name, str):
            raise InputError(f"'{key}' must name a loaded volume")
        if name not in self.volumes:
            raise InputError(
                f"volume {name!r} is not loaded; send 'load_volume' first (loaded: {sorted(self.volumes)})"
            )
        return self.volumes[name]

    # --- commands ------------------------------------------------------------

    def cmd_ping(self, msg, progress):
        return {"version": __version__, "protocol": PROTOCOL_VERSION, "pid": os.getpid()}

    def cmd_cancel(self, msg, progress):  # handled by the reader thread; here only when idle
        return {"cancelled": False}

    def cmd_shutdown(self, msg, progress):
        return {"bye": True}

    def cmd_configure(self, msg, progress):
        from ..session import MatchSession

        engine = EngineOptions.from_dict(msg.get("engine"))
        matching = MatchOptions.from_dict(msg.get("matching"))
        self.session = MatchSession(engine, matching, registration=_registration_options(msg.get("registration")))
        return configure_reply(self.session)

    def cmd_load_volume(self, msg, progress):
        from ..data.image_io import read_volume

        name, path = msg.get("name"), msg.get("path")
        if not isinstance(name, str) or not isinstance(path, str):
            raise InputError("load_volume needs 'name' and 'path' strings")
        label = msg.get("label")  # the user's name for it (a Slicer node's), used in messages
        offset = msg.get("hu_offset", 0.0)  # this scan's own intensity correction
        if isinstance(offset, bool) or not isinstance(offset, (int, float)):
            raise InputError(f"load_volume 'hu_offset' must be a number, got {offset!r}")
        vol = read_volume(path, name=label if isinstance(label, str) and label else name, hu_offset=offset)
        self.volumes[name] = vol
        return {"name": name, "shape": list(vol.shape), "spacing": vol.spacing.tolist()}

    def cmd_extract(self, msg, progress):
        session = self._session()
        vol = self._volume(msg, "name")
        t = time.perf_counter()
        pyr = session.features(vol, progress, self._cancelled)
        return {"name": msg["name"], "levels": pyr.names, "seconds": round(time.perf_counter() - t, 3)}

    def cmd_match(self, msg, progress):
        from ..data.points import PointSet

        session = self._session()
        fixed, moving = self._volume(msg, "fixed"), self._volume(msg, "moving")
        pts = np.asarray(msg.get("points"), dtype=np.float64) if msg.get("points") is not None else None
        if pts is None or pts.ndim != 2 or (len(pts) and pts.shape[1] != 3):
            raise InputError("match needs 'points': a list of [x, y, z] RAS millimetres")
        labels = msg.get("labels")
        prior = msg.get("prior")  # a name, a file or a 4x4 RAS matrix: the session resolves it
        ps = PointSet(pts.reshape(-1, 3), labels)
        # a candidate mask on the moving scan (any geometry: resampled onto it, as ``meddift match --mask``)
        mask = self._volume(msg, "mask") if msg.get("mask") is not None else None
        report = session.match(fixed, moving, ps, prior=prior, mask=mask, progress=progress, cancel=self._cancelled)
        out = report.points
        result = encode_match(out.points, out.labels, out.values, [render(w, "worker") for w in report.warnings])
        result["warning_templates"] = list(report.warnings)
        return result

    def cmd_heatmap(self, msg, progress):
        from ..atomic import check_outputs
        from ..data.image_io import check_image_path, write_volume

        session = self._session()
        fixed, moving = self._volume(msg, "fixed"), self._volume(msg, "moving")
        point, out, force = msg.get("point"), msg.get("out"), msg.get("force", False) is True
        if not isinstance(out, str) or not isinstance(point, list) or len(point) != 3:
            raise InputError("heatmap needs 'point' [x, y, z] and an 'out' volume path")
        # checked before any work: a known extension, a writable folder, never a loaded input, free unless forced
        check_image_path(out)
        inputs = {f"loaded volume {k!r}": v.metadata.get("path") for k, v in self.volumes.items()}
        check_outputs({"heatmap 'out'": out}, inputs, force)
        session.matcher(fixed, moving, progress, self._cancelled)
        hm = session.heatmap(fixed, moving, np.asarray(point, dtype=np.float64))
        write_volume(hm, out, force=force)
        return {"path": out, "max": float(np.max(hm.array)), "min": float(np.min(hm.array))}

    def cmd_register(self, msg, progress):
        """Dense registration: writes the fixed -> moving displacement field ``out`` on the fixed grid, and
        on request the warped moving scan (``warped``) and the moving -> fixed field on the moving grid
        (``inverse``); ``initial``: a known 4x4 RAS fixed -> moving matrix instead of the pre-alignment.
        The result carries the report ``meddift register`` writes, so a remote run can write it too."""
        from ..atomic import check_outputs
        from ..registration.outputs import write_set

        session = self._session()
        fixed, moving = self._volume(msg, "fixed"), self._volume(msg, "moving")
        out, warped_out, inverse_out = msg.get("out"), msg.get("warped"), msg.get("inverse")
        if not isinstance(out, str) or any(p is not None and not isinstance(p, str) for p in (warped_out, inverse_out)):
            raise InputError(
                "register needs an 'out' displacement field path (and optionally 'warped' and 'inverse' paths)"
            )
        initial = msg.get("initial")
        if initial is not None:
            initial = np.asarray(initial, dtype=np.float64)
            if initial.shape != (4, 4) or not np.isfinite(initial).all():
                raise InputError("register 'initial' must be a 4x4 RAS matrix of finite numbers")
        opts = _registration_options(msg.get("options")) or session.registration
        # checked before any work, as one set: never a loaded input, free unless forced
        force = msg.get("force") is True
        targets = {"field": out, "inverse_field": inverse_out, "moving_resampled": warped_out}
        labels = {
            "field": "register 'out'",
            "inverse_field": "register 'inverse'",
            "moving_resampled": "register 'warped'",
        }
        inputs = {f"loaded volume {k!r}": v.metadata.get("path") for k, v in self.volumes.items()}
        check_outputs({labels[k]: p for k, p in targets.items()}, inputs, force)
        t = time.perf_counter()
        field = session.register(fixed, moving, opts, initial=initial, progress=progress, cancel=self._cancelled)
        written = write_set(field, fixed, moving, targets, inputs, force, labels)
        report = written["report_data"]
        result = {
            "path": out,
            "jacobian": report["jacobian"],
            "prealign": field.info.get("prealign_used"),
            "seconds": round(time.perf_counter() - t, 3),
            "report": report,
            "warnings": report["warnings"],
        }
        result.update(
            {
                key: str(written[k])
                for key, k in (("inverse", "inverse_field"), ("warped", "moving_resampled"))
                if k in written
            }
        )
        return result


def configure_reply(session: MatchSession) -> dict:
    """The reply to ``configure``, the worker's and the server's alike: what runs (see
    :meth:`MatchSession.describe`) and the option warnings in the protocol's words."""
    described = session.describe()
    return {**described, "warnings": [render(w, "worker") for w in described["warning_templates"]]}


def _registration_options(d: dict | None) -> RegistrationOptions | None:
    """RegistrationOptions from a protocol dict (None when absent)."""
    if d is None:
        return None
    try:
        return RegistrationOptions.from_dict(d)
    except UnknownOptionsError as exc:
        raise InputError(f"bad registration options: {exc}") from exc


def serve(stdin=None, stdout=None) -> int:
    """Read requests until shutdown or end of input; reply on ``stdout``."""
    stdin = stdin or sys.stdin
    out = stdout or sys.stdout
    lock = threading.Lock()

    def emit(obj: dict):
        line = dumps(obj)
        with lock:
            out.write(line + "\n")
            out.flush()

    worker = Worker(emit)
    jobs: queue.Queue[dict | None] = queue.Queue()

    def reader():
        for raw in stdin:
            raw = raw.strip()
            if not raw:
                continue
            try:
                msg = loads(raw)
            except ValueError as exc:
                emit({"id": None, "ok": False, "error": f"malformed request: {exc}", "kind": "ProtocolError"})
                continue
            if msg.get("cmd") == "cancel":
                busy = not jobs.empty() or worker_busy.is_set()
                worker.cancel_event.set()
                emit({"id": msg.get("id"), "ok": True, "result": {"cancelled": busy}})
            elif msg.get("cmd") == "ping":
                emit({"id": msg.get("id"), "ok": True, "result": worker.cmd_ping(msg, None)})
            else:
                jobs.put(msg)
        jobs.put(None)  # end of input

    worker_busy = threading.Event()
    # "ready" goes out before anything is read, so it is always the first line (the fuzz found a cancel
    # reply overtaking it)
    emit({"id": None, "event": "ready", "version": __version__, "protocol": PROTOCOL_VERSION, "pid": os.getpid()})
    threading.Thread(target=reader, name="meddift-worker-reader", daemon=True).start()
    while True:
        msg = jobs.get()
        if msg is None:
            return 0
        worker_busy.set()
        try:
            keep = worker.handle(msg)
        finally:
            worker_busy.clear()
        if not keep:
            return 0


def main() -> int:
    # The protocol owns the real stdout; everything else printed goes to stderr.
    proto = sys.stdout
    sys.stdout = sys.stderr
    import logging

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="meddift-worker: %(message)s")
    return serve(sys.stdin, proto)


if __name__ == "__main__":
    sys.exit(main())
