"""Client side of the worker protocol: start, talk to, cancel and kill the worker process.

Used by the Slicer module (polling from a Qt timer, so the GUI never blocks)
and by the tests and scripts (blocking :meth:`WorkerClient.request`).
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
from typing import Callable, Optional

from .errors import CancelledError, InputError, MedDIFTError


class WorkerError(MedDIFTError):
    """The worker refused or failed a request; ``kind`` is its error class name."""

    def __init__(self, message: str, kind: str = "MedDIFTError"):
        super().__init__(message)
        self.kind = kind


class WorkerCrashed(MedDIFTError):
    """The worker process ended while a request was pending (killed, crashed, out of memory)."""


class WorkerClient:
    """A worker process and the two threads that read its output."""

    def __init__(self, python: Optional[str] = None, env: Optional[dict] = None, cwd: Optional[str] = None,
                 module: str = "MedDIFTLib.worker"):
        self.python = python or sys.executable
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.cwd = cwd
        self.module = module
        self.proc: Optional[subprocess.Popen] = None
        self.messages: "queue.Queue[dict]" = queue.Queue()
        self.stderr_tail: collections.deque = collections.deque(maxlen=50)
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self.pid: Optional[int] = None

    # --- lifecycle -------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> dict:
        """Start the process and wait for its ``ready`` message."""
        kwargs = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True  # its own process group: kill() takes children too
        self.proc = subprocess.Popen(
            [self.python, "-u", "-m", self.module], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, encoding="utf-8", bufsize=1, env=self.env, cwd=self.cwd, **kwargs)
        self.pid = self.proc.pid
        threading.Thread(target=self._read_stdout, daemon=True, name="meddift-client-stdout").start()
        threading.Thread(target=self._read_stderr, daemon=True, name="meddift-client-stderr").start()
        msg = self._next(timeout, want=lambda m: m.get("event") == "ready")
        return msg

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
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    # --- messages --------------------------------------------------------------

    def send(self, cmd: str, **fields) -> int:
        """Send a request without waiting; returns its id."""
        if not self.alive:
            raise WorkerCrashed(self._crash_text("the worker is not running"))
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

    def request(self, cmd: str, on_event: Optional[Callable[[dict], None]] = None,
                timeout: Optional[float] = None, **fields):
        """Send a request and wait for its reply; events go to ``on_event``."""
        rid = self.send(cmd, **fields)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            msg = self._next(remaining, want=lambda m: m.get("id") == rid)
            if "event" in msg:
                if on_event:
                    on_event(msg)
                continue
            if msg.get("ok"):
                return msg.get("result")
            kind = msg.get("kind", "MedDIFTError")
            if kind == "CancelledError":
                raise CancelledError(msg.get("error", "cancelled"))
            raise WorkerError(msg.get("error", "unknown worker error"), kind)

    def _next(self, timeout: Optional[float], want: Callable[[dict], bool]) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WorkerError(f"no answer from the worker within {timeout:.0f} s", "Timeout")
            try:
                msg = self.messages.get(timeout=0.1 if remaining is None else min(0.1, remaining))
            except queue.Empty:
                if not self.alive and self.messages.empty():
                    raise WorkerCrashed(self._crash_text("the worker process ended"))
                continue
            if msg.get("event") == "eof":
                raise WorkerCrashed(self._crash_text("the worker process ended"))
            if want(msg):
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


__all__ = ["WorkerClient", "WorkerError", "WorkerCrashed", "InputError"]
