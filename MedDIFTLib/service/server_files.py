"""The server's files under ``--work-dir``: patient scans and results, kept no longer than needed.

Each session writes into its own folder, ``WORK_DIR/sessions/<id>/``, created fresh by the
server and marked as its own (:data:`MARKER`). What lies there goes away:

- when the session closes (``DELETE /v1/sessions/{sid}``) or expires (``--idle-timeout``);
- when the server stops (Ctrl-C, SIGTERM), for every session still open;
- at start-up, for the folders of an earlier server process (killed, or the machine lost power):
  sessions live in memory, so none of those folders belongs to a session that still exists;
- a job's result file, ``--retention`` seconds after it was written, if the client has not
  downloaded and deleted it before (uploads stay while their session is open: jobs read them).

One server uses a work folder at a time (:func:`lock_work_dir`; a second is refused at start), so
the start-up sweep never touches a live session of another server. Only folders that carry the
marker are removed: a folder the server did not make (a user's
files under ``--work-dir/sessions``) is left alone and named in the log. And a job writes only
through :func:`check_outputs`: inside its session's folder, never over an existing file.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from ..atomic import refuse_input_overlap
from ..errors import InputError, OutputWriteError
from .server_access import ApiError
from .server_ops import FILE_NAME

try:
    import fcntl
except ImportError:  # Windows: no advisory locks (a second server on one --work-dir is not detected there)
    fcntl = None  # type: ignore[assignment]  # the module or None: callers test for None

log = logging.getLogger("meddift.server")

SESSIONS = "sessions"
MARKER = ".meddift-session"
"""A file in every session folder the server made: the proof that removing the folder removes only its own files."""
LOCK = ".meddift-serve.lock"


def lock_work_dir(work_dir: Path) -> IO | None:
    """Hold ``WORK_DIR/.meddift-serve.lock`` for the life of this process, so that a second server on the
    same ``--work-dir`` is refused instead of deleting the first one's live sessions at its start-up sweep.

    Args:
        work_dir: the server's ``--work-dir`` (created if missing).

    Returns:
        The open lock file (keep it open: closing it releases the lock), or None where locks do not exist.
    """
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        log.warning("cannot lock %s on this system: give each server its own --work-dir", work_dir)
        return None
    handle = open(Path(work_dir) / LOCK, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise InputError(
            f"--work-dir {work_dir} is in use by another meddift serve ({holder}): give each server its own work folder"
        ) from err
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle


def new_session_folder(work_dir: Path, sid: str) -> Path:
    """A fresh folder for session ``sid``, marked as the server's own (never an existing folder reused).

    Args:
        work_dir: the server's ``--work-dir``.
        sid: the new session's id (random, so a clash means something is wrong: it raises).
    """
    folder = Path(work_dir) / SESSIONS / sid
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir()
    (folder / MARKER).write_text("a MedDIFT server session: deleted when the session ends\n", encoding="utf-8")
    return folder


def remove_session_folder(folder: Path) -> bool:
    """Delete a session folder the server made (it carries :data:`MARKER`); leave any other folder alone.

    Args:
        folder: ``WORK_DIR/sessions/<id>``.

    Returns:
        True when the folder was the server's and is gone.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return False
    if not (folder / MARKER).is_file():
        log.warning("left %s in place: not a folder this server made (no %s file)", folder, MARKER)
        return False
    shutil.rmtree(folder, ignore_errors=True)
    if folder.exists():
        log.warning("could not delete all of %s; delete it by hand", folder)
        return False
    return True


def sweep_stale_sessions(work_dir: Path) -> int:
    """At start-up: delete the session folders of an earlier server process (see the module docstring).

    Args:
        work_dir: the server's ``--work-dir``.

    Returns:
        The number of folders deleted.
    """
    root = Path(work_dir) / SESSIONS
    if not root.is_dir():
        return 0
    removed = sum(remove_session_folder(p) for p in sorted(root.iterdir()) if p.is_dir())
    if removed:
        log.info("deleted the files of %d session(s) of an earlier server run in %s", removed, root)
    return removed


def expire_results(folder: Path, retention_s: float, now: float | None = None) -> list[str]:
    """Delete the job result sets in a session folder written more than ``retention_s`` seconds ago: a
    job's files (one random part in their names, see :func:`~MedDIFTLib.service.server_ops.job_outputs`)
    go together, once the newest of them is past the retention, so that a client never finds a field
    without the warped scan and inverse written with it.

    Args:
        folder: a session's folder.
        retention_s: ``--retention``; 0 or less keeps results until the session ends.
        now: the current time (``time.time()``), for a caller that sweeps many folders at one instant.

    Returns:
        The names of the files deleted.
    """
    if retention_s <= 0 or not Path(folder).is_dir():
        return []
    now = time.time() if now is None else now
    sets: dict[str, list[tuple[Path, float]]] = {}
    for path in Path(folder).iterdir():
        found = FILE_NAME.match(path.name)
        try:
            if found:
                sets.setdefault(found.group(2), []).append((path, path.stat().st_mtime))
        except FileNotFoundError:  # downloaded and deleted by its client meanwhile
            continue
    gone = []
    for members in sets.values():
        if now - max(mtime for _, mtime in members) <= retention_s:
            continue
        for path, _ in members:
            path.unlink(missing_ok=True)
            gone.append(path.name)
    return gone


def check_outputs(folder: Path, outputs: dict, inputs: Iterable[Path]) -> None:
    """May a job write these files? Each must lie directly in its session's folder, not exist yet, and
    not be (or hold) one of the job's inputs. The server's one rule for what a job may write.

    Args:
        folder: the session's folder.
        outputs: what each output is (a request key such as ``out``) -> the path the job would write.
        inputs: the files the job reads (the session's uploads).

    Raises:
        ApiError: 500, since the server chose these paths itself: a refusal here is a bug, caught before
            any file is touched.
    """
    home = Path(folder).resolve()
    read = {f"input {i}": p for i, p in enumerate(inputs)}
    for key, value in outputs.items():
        path = Path(value).resolve()
        try:  # the product's one rule against writing over an input (atomic.refuse_input_overlap)
            refuse_input_overlap({key: path}, read)
            clash = False
        except OutputWriteError:
            clash = True
        if path.parent != home or path.exists() or clash or path.name == MARKER:
            log.error("refused output %s=%s of a job in %s", key, value, folder)
            raise ApiError(
                500,
                "internal server error: a job's output path was refused (the details are in the server log)",
                "InternalError",
            )


__all__ = [
    "SESSIONS",
    "MARKER",
    "LOCK",
    "lock_work_dir",
    "new_session_folder",
    "remove_session_folder",
    "sweep_stale_sessions",
    "expire_results",
    "check_outputs",
]
