"""Progress, cancel and per-user folders: the plumbing every layer uses (ground floor, imports
nothing of the engine but its errors).

A stage reports ``progress(stage, fraction)`` and calls :func:`check_cancel` between steps, so the CLI
(a printer), the worker (protocol events) and Slicer (a progress bar, a Cancel button) drive the same
code. Matching, features and the session import these from here, never from a layer above.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .errors import CancelledError

Progress = Callable[[str, float], None]
"""``progress(stage, fraction)``: stage name and 0..1 within that stage."""

Cancel = Callable[[], bool]
"""``cancel()`` returns True when the user asked to stop."""


def check_cancel(cancel: Cancel | None) -> None:
    """Raise CancelledError between stages when the user asked to stop."""
    if cancel is not None and cancel():
        raise CancelledError("cancelled by the user")


def report(progress: Progress | None, stage: str, fraction: float) -> None:
    """Call ``progress`` when there is one (stages need not test for None)."""
    if progress is not None:
        progress(stage, float(fraction))


def staged(progress: Progress | None, prefix: str) -> Progress | None:
    """``progress`` with every stage name prefixed (``"fixed: vae encode"``)."""
    if progress is None:
        return None
    return lambda stage, frac: progress(f"{prefix}: {stage}", frac)


def user_cache_dir(kind: str, env_var: str) -> Path:
    """The folder for ``kind`` (``weights``, ``features``): ``$<env_var>`` when set, else the per-user
    cache, ``%LOCALAPPDATA%/meddift/<kind>`` on Windows and ``$XDG_CACHE_HOME`` (or ``~/.cache``)
    ``/meddift/<kind>`` elsewhere. The one place that decides where MedDIFT keeps files per user."""
    env = os.environ.get(env_var)
    if env:
        return Path(env).expanduser()
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "meddift" / kind
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "meddift" / kind
