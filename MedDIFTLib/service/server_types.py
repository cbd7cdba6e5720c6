"""The server's records of a session and a job, and the states a job goes through.

Apart from :mod:`.server_state` (which changes them under its lock) so that the routes, the
state and the tests name a job's state by one type: :class:`JobState`, written to the wire as
its value (``"queued"``, ``"running"``, ...), the words the protocol has always used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..options import JobState  # the one spelling of the states, shared with the remote client
from .worker import Worker

FINAL = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})
ACTIVE = frozenset({JobState.QUEUED, JobState.RUNNING})


@dataclass
class Job:
    id: str
    session: ClientSession
    op: str
    msg: dict
    state: JobState = JobState.QUEUED
    stage: str = "queued"
    fraction: float = 0.0
    result: dict | None = None
    error: str | None = None
    kind: str | None = None
    template: str | None = None  # the error with its options marked neutrally (errors.render)
    cancel_requested: bool = False
    started: float | None = None
    finished: float | None = None

    def status(self, position: int | None) -> dict:
        """The job as a client sees it (the reply of ``GET .../jobs/{jid}``).

        Args:
            position: jobs ahead of it in the queue (0: next), or None once it left the queue.
        """
        out: dict[str, Any] = {
            "job": self.id,
            "op": self.op,
            "state": self.state.value,
            "stage": self.stage,
            "fraction": self.fraction,
        }
        if position is not None:
            out["position"] = position
        if self.started is not None:  # time on the device, so a client can tell its network time apart
            out["seconds"] = round((self.finished or time.monotonic()) - self.started, 4)
        if self.state is JobState.DONE:
            out["result"] = self.result
        elif self.state in (JobState.FAILED, JobState.CANCELLED):
            out.update(error=self.error, kind=self.kind, **({"template": self.template} if self.template else {}))
        return out


@dataclass
class ClientSession:
    id: str
    owner: str
    folder: Path
    worker: Worker
    engine: dict
    matching: dict
    registration: dict | None = None  # RegistrationOptions fields for prior "dense" (None: the defaults)
    volumes: dict = field(default_factory=dict)  # name -> store key (upload digest, and its HU offset)
    jobs: dict = field(default_factory=dict)  # job id -> Job
    last_used: float = field(default_factory=time.monotonic)

    @property
    def busy(self) -> bool:
        """A job of this session is queued or running (an idle session with one is not expired)."""
        return any(j.state in ACTIVE for j in self.jobs.values())


__all__ = ["JobState", "FINAL", "ACTIVE", "Job", "ClientSession"]
