"""Text helpers shared by the landmark file formats: reading, number rows, atomic writes."""

from __future__ import annotations

import contextlib
import contextvars
import math
import re
from pathlib import Path

import numpy as np

from ...atomic import write_text_atomic
from ...errors import InputError, LandmarkFormatError
from ..points import PointSet


def read_text(path: Path) -> str:
    if not path.exists():
        raise LandmarkFormatError(f"{path}: no such file")
    if path.is_dir():
        raise LandmarkFormatError(f"{path}: is a folder, not a landmark file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LandmarkFormatError(f"{path}: not a text file ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise LandmarkFormatError(f"{path}: file is empty")
    return text


def numbers(tokens, path: Path, lineno: int, count: int = 3, line: str | None = None) -> list:
    tokens = [t.strip() for t in tokens]
    shown = line.strip() if line is not None else ",".join(tokens)
    if len(tokens) != count:
        raise LandmarkFormatError(f"{path} line {lineno}: expected {count} numbers, got {len(tokens)}: {shown!r}")
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        raise LandmarkFormatError(f"{path} line {lineno}: expected {count} numbers, got {shown!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise LandmarkFormatError(f"{path} line {lineno}: a point needs finite coordinates, got {shown!r}")
    return values


def numeric_rows(text: str, path: Path, split) -> tuple[np.ndarray, list]:
    """Rows of three numbers; blank lines and '#' comments skipped. Returns (rows, line numbers)."""
    rows, linenos = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        rows.append(numbers(split(line), path, lineno, line=line))
        linenos.append(lineno)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3), linenos


def split_ws(line: str) -> list:
    return line.split()


def split_csv_or_ws(line: str) -> list:
    return [t for t in re.split(r"[,;\s]+", line.strip()) if t != ""]


_FORCE = contextvars.ContextVar("meddift_landmark_force", default=True)


@contextlib.contextmanager
def replacing(force: bool):
    """Within it, landmark writers replace an existing file only if ``force`` (else: exclusive creation)."""
    token = _FORCE.set(bool(force))
    try:
        yield
    finally:
        _FORCE.reset(token)


def atomic_write(path: Path, text: str) -> Path:
    return write_text_atomic(path, text, force=_FORCE.get())


def require_defined(ps: PointSet, path: Path, fmt: str) -> None:
    if not np.all(ps.defined):
        bad = np.flatnonzero(~ps.defined)
        assert ps.labels is not None  # set by PointSet.__post_init__
        raise InputError(
            f"{path}: format {fmt} cannot store points without a position; "
            f"{len(bad)} are undefined: {', '.join(ps.labels[i] for i in bad[:10])}"
        )
