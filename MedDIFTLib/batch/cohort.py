"""The cohort CSV: one row per pair, read and checked as a whole before any work starts.

A cohort of a thousand pairs that stops at row 700 because of a typo wastes hours, so every
structural problem (missing column, duplicate or unsafe id, a file that does not exist, a
landmark file that does not parse) is collected and reported together, and nothing runs.
What can only be found by reading a scan (a truncated image) is left to the task that reads it:
that pair fails, is recorded, and the cohort goes on.

Scans are identified by the sha256 of their bytes, not by their path: a baseline listed under
two spellings, or copied into two folders, is still encoded once. Hashing a large cohort costs
a read of every file, so digests are remembered in a small JSON file (``OUT/.digests.json``)
keyed by path, device, inode, size, modification time *and* change time. Size and modification
time alone can be made to look the same (``cp -p``, ``touch -r``, a restored backup); the change
time cannot be set by any user tool, and every write or rename of the file moves it, so a
replaced scan always gets a new digest and its pairs are redone.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_text_atomic
from ..data.digest import hash_file_into
from ..data.landmark_io import read_points
from ..errors import InputError

REQUIRED = ("id", "fixed", "moving", "points")
OPTIONAL = ("truth", "prior")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Pair:
    """One row of the cohort: absolute paths, and the content digest of every input file."""

    id: str
    fixed: str
    moving: str
    points: str
    truth: str | None = None
    prior: str | None = None
    digests: tuple = ()  # ((role, sha256), ...) for every file given

    def digest(self, role: str) -> str | None:
        return dict(self.digests).get(role)


class DigestMemo:
    """sha256 of files, remembered by (path, device, inode, size, mtime_ns, ctime_ns) so that a
    restart does not re-read every unchanged scan; written atomically, and ignored when unreadable."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else None
        self._known: dict = {}
        if self.path and self.path.exists():
            try:
                self._known = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self._known = {}
        self._dirty = False

    def __call__(self, path: str) -> str:
        key = f"{path}|{_stamp(Path(path))}"
        if key not in self._known:
            self._known[key] = content_digest(path)
            self._dirty = True
        return self._known[key]

    def save(self) -> None:
        if self.path and self._dirty:
            write_text_atomic(self.path, json.dumps(self._known, indent=0, sort_keys=True))
            self._dirty = False


def _stamp(path: Path) -> str:
    """What changes whenever a file is written or replaced: (device, inode, size, mtime, ctime); for a
    folder (a DICOM series) the same of each of its files, hashed."""

    def one(p: Path) -> str:
        st = os.stat(p)
        return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"

    if not path.is_dir():
        return one(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}|{one(f)}\n".encode())
    return h.hexdigest()


def content_digest(path) -> str:
    """sha256 of a file's bytes; of a folder (a DICOM series): of its files' names and bytes, sorted."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        hash_file_into(h, f)
    return h.hexdigest()


def read_cohort(csv_path, memo: DigestMemo | None = None) -> list[Pair]:
    """The pairs of a cohort CSV (paths relative to its folder), or one InputError listing every
    problem found. Landmark files are parsed here (cheap) so that a bad one stops the run early."""
    csv_path = Path(csv_path)
    rows = _cohort_rows(csv_path)
    base = csv_path.resolve().parent
    memo = memo or DigestMemo()
    problems: list[str] = []
    pairs: list[Pair] = []
    seen: set = set()
    for n, raw in enumerate(rows, start=2):  # line 1 is the header
        pair = _pair_of_row(n, raw, base, memo, seen, problems)
        if pair is not None:
            pairs.append(pair)
    memo.save()
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise InputError(f"{csv_path}: {len(problems)} problem(s), nothing was run:\n  " + "\n  ".join(shown))
    return pairs


def _cohort_rows(csv_path: Path) -> list[dict]:
    """The rows of a cohort CSV whose header holds the required columns."""
    if not csv_path.is_file():
        raise InputError(f"{csv_path}: no such cohort file")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [(h or "").strip() for h in (reader.fieldnames or [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{csv_path}: cannot read the cohort ({err})") from err
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(
            f"{csv_path}: missing column(s) {', '.join(missing)}; the header must hold "
            f"{','.join(REQUIRED)} (optional: {','.join(OPTIONAL)}), found {','.join(header)}"
        )
    if not rows:
        raise InputError(f"{csv_path}: no pairs (a header `{','.join(REQUIRED)}` and one row per pair)")
    return rows


def _pair_of_row(n: int, raw: dict, base: Path, memo: DigestMemo, seen: set, problems: list) -> Pair | None:
    """Line ``n``'s pair, or None with what is wrong with it appended to ``problems``."""
    row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
    pid = row["id"]
    where = f"line {n} ({pid or 'no id'})"
    if not _SAFE_ID.match(pid):
        problems.append(f"{where}: id must be letters, digits, '.', '_' or '-' (it names the output folder)")
        return None
    if pid in seen:
        problems.append(f"{where}: duplicate id")
        return None
    seen.add(pid)
    paths, digests = {}, []
    for role in REQUIRED[1:] + OPTIONAL:
        value = row.get(role) or ""
        if not value:
            if role in REQUIRED:
                problems.append(f"{where}: no {role} given")
            continue
        p = Path(value) if Path(value).is_absolute() else base / value
        if not p.exists():
            problems.append(f"{where}: {role} {p}: no such file")
            continue
        paths[role] = str(p)
        digests.append((role, memo(str(p))))
    if len(paths) < len(REQUIRED) - 1 + sum(1 for r in OPTIONAL if row.get(r)):
        return None
    for role in ("points", "truth"):
        if role in paths:
            try:
                read_points(paths[role])
            except InputError as err:
                problems.append(f"{where}: {role}: {err}")
    return Pair(
        pid, paths["fixed"], paths["moving"], paths["points"], paths.get("truth"), paths.get("prior"), tuple(digests)
    )


__all__ = ["Pair", "DigestMemo", "content_digest", "read_cohort", "REQUIRED", "OPTIONAL"]
