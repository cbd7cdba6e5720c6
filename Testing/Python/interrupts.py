"""Stopping a real ``meddift`` subprocess at a chosen write, the one way the tests do it.

Every command writes its outputs through :class:`MedDIFTLib.outputs.OutputSet`, whose private folder
(``.meddift-staging-*``, beside the targets) fills one finished file at a time before the set is
put in place. Polling that folder and sending SIGINT once it holds ``k`` files stops the run at its
k-th write, in the real process, with no hook in the product.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from cli_runner import start_meddift
from MedDIFTLib.outputs import STAGE_PREFIX


def meddift_process(args: list, folder: Path) -> subprocess.Popen:
    """``meddift ARGS`` started in ``folder`` (:func:`cli_runner.start_meddift`: one thread, no MAISI weights)."""
    return start_meddift(*args, folder=folder)


def staged(stage: Path) -> list:
    """The finished files in a private folder (not its owner mark, journal or old members)."""
    try:
        return [p for p in stage.iterdir() if not p.name.startswith(".") and p.name not in ("owner", "journal.json")]
    except OSError:  # put in place and removed meanwhile
        return []


def interrupt_when(proc, ready, timeout: float = 600.0) -> bool:
    """SIGINT as soon as ``ready()`` is true (polled every 2 ms); False if the run ended first."""
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        if ready():
            proc.send_signal(signal.SIGINT)
            return True
        time.sleep(0.002)
    return False


def interrupt_after(proc, out: Path, files: int, timeout: float = 600.0, pattern: str = STAGE_PREFIX + "*") -> bool:
    """SIGINT once a private folder under ``out`` (``pattern``, relative to it) holds ``files`` finished
    files; False if the run ended first."""

    def ready() -> bool:
        return any(len(staged(stage)) >= files for stage in (out.glob(pattern) if out.is_dir() else []))

    return interrupt_when(proc, ready, timeout)


def names(out: Path) -> list:
    """The names in ``out``, sorted (none when it does not exist)."""
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


def contents(out: Path) -> dict:
    """Every file under ``out`` by relative path, with its bytes."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


INTERRUPTED = (130, -signal.SIGINT)
"""How an interrupted ``meddift`` ends: 130 from its own handler, or killed by the signal when it
arrives while the interpreter shuts down; a shell shows both as exit status 130."""
