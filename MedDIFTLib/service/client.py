"""Client side of the worker protocol: start, talk to, cancel and kill the worker process.

Everything is built on non-blocking steps, so the Slicer module can drive it from a Qt timer and
the GUI never blocks: :meth:`WorkerClient.launch` starts the process and :meth:`WorkerClient.poll_ready`
looks for its ``ready`` line (checking that it speaks our protocol version); :meth:`WorkerClient.submit`
sends a request and returns a :class:`Pending` whose :meth:`Pending.poll` handles what has arrived.
The blocking :meth:`WorkerClient.start` and :meth:`WorkerClient.request` (tests, scripts, console)
are loops over those same steps, so a reply is decoded in one place.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from ..errors import CancelledError, InputError, MedDIFTError
from .protocol import protocol_mismatch


class WorkerError(MedDIFTError):
    """The worker refused or failed a request; ``kind`` is its error class name."""

    def __init__(self, message: str, kind: str = "MedDIFTError"):
        super().__init__(message)
        self.kind = kind


class WorkerCrashed(MedDIFTError):
    """The worker process ended while a request was pending (killed, crashed, out of memory)."""


CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW = 0x00000200, 0x08000000  # Windows process creation flags


def popen_options(platform: str = os.name) -> dict:
    """Process options of the worker: its own process group (``kill()`` takes its children too) and,
    on Windows, no console window (started from Slicer, a GUI process, Windows would otherwise open
    one and leave it there; Slicer's own process launcher hides it too)."""
    if platform == "nt":
        return {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}
    return {"start_new_session": True}


class WorkerClient:
    """A worker process and the two threads that read its output."""

    def __init__(
        self,
        python: str | None = None,
        env: dict | None = None,
        cwd: str | None = None,
        module: str = "MedDIFTLib.service.worker",
    ):
        self.python = python or sys.executable
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.cwd = cwd
        self.module = module
        self.proc: subprocess.Popen | None = None
        self.messages: queue.Queue[dict] = queue.Queue()
        self.stderr_tail: collections.deque = collections.deque(maxlen=50)
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self.pid: int | None = None
        self.ready: dict | None = None  # the worker's ready message, once it came

    # --- lifecycle -------------------------------------------------------------

    def launch(self) -> None:
        """Start the process without waiting; :meth:`poll_ready` tells when it is ready."""
        kwargs = popen_options()
        self.ready = None
        self.proc = subprocess.Popen(
            [self.python, "-u", "-m", self.module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
            env=self.env,
            cwd=self.cwd,
            **kwargs,
        )
        self.pid = self.proc.pid
        threading.Thread(target=self._read_stdout, daemon=True, name="meddift-client-stdout").start()
        threading.Thread(target=self._read_stderr, daemon=True, name="meddift-client-stderr").start()

    def poll_ready(self, timeout: float = 0.0) -> bool:
        """True once the worker's ``ready`` message has come (kept in ``self.ready``); waits at most
        ``timeout`` s. A worker that speaks another protocol version is killed and refused."""
        deadline = time.monotonic() + timeout
        while self.ready is None:
            msg = self._receive(max(0.0, deadline - time.monotonic()))
            if msg is None:
                return False
            if msg.get("event") == "ready":
                mismatch = protocol_mismatch(msg)
                if mismatch:
                    self.kill()
                    raise WorkerError(mismatch, "ProtocolMismatch")
                self.ready = msg
        return True

    def start(self, timeout: float = 120.0) -> dict:
        """Start the process and wait for its ``ready`` message."""
        return start_and_wait(self, timeout, "the worker")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """Kill the worker and everything it started, at once (immediate Cancel)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            if os.name == "nt":
                subprocess.run(["taskkill", "/F", "/T", "/PID", str(self.proc.pid)], capture_output=True)
            else:
                os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the worker to shut down; kill it if it does not within ``timeout``."""
        if not self.alive:
            return
        try:
            self.request("shutdown", timeout=timeout)
        except MedDIFTError:
            pass
        assert self.proc is not None  # alive: started, and never unset
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    # --- messages --------------------------------------------------------------

    def send(self, cmd: str, **fields) -> int:
        """Send a request without waiting; returns its id."""
        if not self.alive:
            raise WorkerCrashed(self._crash_text("the worker is not running"))
        assert self.proc is not None and self.proc.stdin is not None  # alive: started with stdin=PIPE
        rid = next(self._ids)
        line = json.dumps({"id": rid, "cmd": cmd, **fields})
        with self._send_lock:
            try:
                self.proc.stdin.write(line + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                raise WorkerCrashed(self._crash_text("the worker stopped accepting requests")) from exc
        return rid

    def poll(self) -> list[dict]:
        """Every message received so far (non-blocking; for GUI timers)."""
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def submit(self, cmd: str, on_event: Callable[[dict], None] | None = None, **fields) -> Pending:
        """Send a request without waiting; the returned :class:`Pending` collects its reply."""
        return Pending(self, self.send(cmd, **fields), on_event)

    def request(self, cmd: str, on_event: Callable[[dict], None] | None = None, timeout: float | None = None, **fields):
        """Send a request and wait for its reply; events go to ``on_event``."""
        return wait_reply(self.submit(cmd, on_event, **fields), timeout, "the worker")

    def _receive(self, timeout: float) -> dict | None:
        """The next message, waiting at most ``timeout`` s (None when none came); WorkerCrashed when
        the process has ended and everything it said has been read."""
        try:
            msg = self.messages.get(timeout=timeout) if timeout > 0 else self.messages.get_nowait()
        except queue.Empty:
            if not self.alive and self.messages.empty():
                raise WorkerCrashed(self._crash_text("the worker process ended")) from None
            return None
        if msg.get("event") == "eof":
            raise WorkerCrashed(self._crash_text("the worker process ended"))
        return msg

    def _crash_text(self, what: str) -> str:
        code = None if self.proc is None else self.proc.poll()
        tail = "\n".join(list(self.stderr_tail)[-8:])
        how = f" (exit code {code})" if code is not None else ""
        return f"{what}{how}" + (f"; its last output:\n{tail}" if tail else "")

    def _read_stdout(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                self.messages.put(json.loads(line))
            except ValueError:
                self.stderr_tail.append(f"(stdout) {line}")
        self.messages.put({"event": "eof"})

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr_tail.append(line.rstrip())


class Pending:
    """A request sent and not yet answered. :meth:`poll` handles the messages that have arrived
    (events go to ``on_event``; other requests' messages are dropped) and says whether the reply is in."""

    def __init__(self, client: WorkerClient, rid: int, on_event: Callable[[dict], None] | None = None):
        self.client, self.id, self.on_event = client, rid, on_event
        self.done, self.result = False, None

    def poll(self, timeout: float = 0.0) -> bool:
        """True once the reply has come (its result in ``self.result``); waits at most ``timeout`` s.
        A refusal raises WorkerError (``kind`` is the worker's error class), a cancel CancelledError,
        an ended process WorkerCrashed."""
        deadline = time.monotonic() + timeout
        while not self.done:
            msg = self.client._receive(max(0.0, deadline - time.monotonic()))
            if msg is None:
                return False
            if msg.get("id") != self.id:
                continue
            if "event" in msg:
                if self.on_event:
                    self.on_event(msg)
                continue
            self.done = True
            if not msg.get("ok"):
                kind = msg.get("kind", "MedDIFTError")
                if kind == "CancelledError":
                    raise CancelledError(msg.get("error", "cancelled"))
                # the neutral template when the worker sent one: each client says options in its own words
                raise WorkerError(msg.get("template") or msg.get("error", "unknown worker error"), kind)
            self.result = msg.get("result")
        return True


def wait_reply(pending, timeout: float | None, who: str):
    """Poll a submitted request until its reply (the blocking ``request`` of the local worker client
    and of the remote client alike); a Timeout error names ``who``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not pending.poll(0.1 if deadline is None else min(0.1, max(0.0, deadline - time.monotonic()))):
        if deadline is not None and time.monotonic() >= deadline:
            raise WorkerError(f"no answer from {who} within {timeout:.0f} s", "Timeout")
    return pending.result


def start_and_wait(client, timeout: float, who: str) -> dict:
    """``client.launch()``, then its non-blocking ``poll_ready`` until ready (the blocking ``start`` of
    the local worker client and of the remote client alike); a Timeout error names ``who``."""
    client.launch()
    deadline = time.monotonic() + timeout
    while not client.poll_ready(min(0.1, max(0.0, deadline - time.monotonic()))):
        if time.monotonic() >= deadline:
            raise WorkerError(f"no answer from {who} within {timeout:.0f} s", "Timeout")
    return client.ready


__all__ = ["WorkerClient", "Pending", "WorkerError", "WorkerCrashed", "InputError", "start_and_wait", "wait_reply"]
