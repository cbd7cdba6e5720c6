"""Atomic file writes: a temporary file beside the target, renamed into place.

A crash, a cancel or a full disk leaves either the old file or the complete
new one, never half of it; the temporary file is removed on failure.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, suffix: str = ".tmp"):
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` (UTF-8, as given) atomically, synced to disk before the rename."""
    from .errors import OutputWriteError

    try:
        with atomic_path(path) as tmp:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
    except OSError as err:
        raise OutputWriteError(f"cannot write {path}: {err.strerror or err} (is the disk full?); "
                               "nothing was changed there") from err
    return Path(path)
