"""Caches of features: the disk cache of pyramids, so that the same volume is never encoded twice,
and :class:`MemoryLRU`, the small in-memory cache a session hands to its backbone.

The key is a hash of the image content (voxels and geometry) and of the
backbone's identity (configuration, options, weights' digests). A cached file
that is unreadable, or whose stored identity does not match its key, is
treated as stale: it is deleted and the pyramid rebuilt. The cache reads,
counts and removes only the entries it wrote itself (each has its marker):
weights or a user's files in the same folder are never touched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from glob import escape as glob_escape
from pathlib import Path
from typing import TypeVar

from ..atomic import reason, write_text_atomic
from ..data.digest import volume_digest
from ..data.geometry import Volume
from ..errors import InputError, OutputWriteError
from ..runtime import Cancel, Progress, user_cache_dir
from .base import Backbone
from .pyramid import FeaturePyramid

log = logging.getLogger(__name__)
_T = TypeVar("_T")


def default_cache_dir() -> Path:
    """``$MEDDIFT_CACHE_DIR``, else the per-user cache folder (see :func:`~MedDIFTLib.runtime.user_cache_dir`)."""
    return user_cache_dir("features", "MEDDIFT_CACHE_DIR")


DEFAULT_LIMIT_GB = 20.0
"""The disk cache's size limit unless ``$MEDDIFT_CACHE_MAX_GB`` says otherwise: a few hundred MAISI
pyramids of 512^3 scans; the least recently used files go first when a new one would pass it."""


def default_limit_bytes() -> int:
    text = os.environ.get("MEDDIFT_CACHE_MAX_GB", "")
    try:
        gb = float(text) if text else DEFAULT_LIMIT_GB
    except ValueError:
        raise InputError(f"MEDDIFT_CACHE_MAX_GB must be a number of gigabytes, got {text!r}") from None
    if not gb > 0:
        raise InputError(f"MEDDIFT_CACHE_MAX_GB must be positive, got {text!r}")
    return int(gb * 1e9)


def cache_key(volume_sha256: str, backbone_identity: dict) -> str:
    blob = json.dumps({"volume": volume_sha256, "backbone": backbone_identity}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


MARKER_SUFFIX = ".meddift-cache"
"""An entry ``NAME`` is the cache's own when ``.NAME.meddift-cache`` beside it holds the cache's
marker (:func:`_marker_text`). The marker is written before the entry and removed after it, so
whatever the cache removes (entries, a crash's temporary files ``.NAME.*.tmp``, orphaned markers)
is recognised by its marker, never by its extension: a model or a user's file in the same folder
is never touched."""

KINDS = {"features": ".pt", "field": ".field.npz"}  # what the cache holds: file name ending per kind


class CacheFolderError(InputError):
    """The cache folder cannot be used (a file, unreadable): said in these words, never as 0 files."""


def _marker(path: Path) -> Path:
    return path.with_name(f".{path.name}{MARKER_SUFFIX}")


def _marker_text(name: str, kind: str) -> str:
    return json.dumps({"meddift_cache": 1, "entry": name, "kind": kind}, sort_keys=True)


def _read_marker(marker: Path) -> dict | None:
    """The marker's content when it is the cache's own (for its entry's name), else None."""
    try:
        if marker.stat().st_size > 4096:
            return None
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = marker.name[1 : -len(MARKER_SUFFIX)]
    if not isinstance(data, dict) or data.get("meddift_cache") != 1 or data.get("entry") != name:
        return None
    return data


def _last_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[-1] if text else type(err).__name__


def _why(err: BaseException, path: Path) -> str:
    """Why a write failed, in the user's terms: the operating system's reason when there is one."""
    cause = err.__cause__ if isinstance(err, OutputWriteError) else err
    if isinstance(cause, OSError) and not isinstance(cause, OutputWriteError):
        return reason(cause, path)
    return _last_line(err)


class FeatureCache:
    """MedDIFT's disk cache under ``folder``: pyramids (``<key>.pt``) and dense fields
    (``<key>.field.npz``, :mod:`MedDIFTLib.registration.field_cache`), at most ``limit_bytes`` in
    all (least recently used removed first; a file's modification time is its last use). Only
    entries it wrote are ever read back, counted or removed (see :data:`MARKER_SUFFIX`).

    A folder that cannot be used is said in words: :meth:`check` raises
    :class:`CacheFolderError` (``meddift cache info|clear``); :meth:`get` and :meth:`put` log the
    reason once and go on without the cache (a match costs time, never its result).
    """

    def __init__(self, folder=None, limit_bytes: int | None = None):
        self.folder = Path(folder) if folder else default_cache_dir()
        self.limit_bytes = int(limit_bytes) if limit_bytes is not None else default_limit_bytes()
        self._off: str | None = None  # why this process goes on without the cache
        self._checked = False
        self._write_failed = False

    # --- the folder ------------------------------------------------------------

    def check(self) -> None:
        """Raise :class:`CacheFolderError` when the folder is a file or cannot be read (one that
        does not exist yet is fine: it is empty, and made on the first write)."""
        where = next((p for p in [self.folder, *self.folder.parents] if os.path.lexists(p)), None)
        if where is not None and not where.is_dir():
            if where.is_file():
                raise CacheFolderError(
                    f"the cache folder {self.folder} cannot be used: {where} is a file, not a folder"
                )
            try:  # a link to nowhere or to itself, a device: what the system says of it
                os.stat(where)
                why = "it is not a folder"
            except OSError as err:
                why = err.strerror or _last_line(err)
            raise CacheFolderError(f"the cache folder {self.folder} cannot be read: {where}: {why}")
        if where == self.folder:
            try:
                with os.scandir(self.folder) as it:
                    next(it, None)
            except OSError as err:
                raise CacheFolderError(
                    f"the cache folder {self.folder} cannot be read: {err.strerror or _last_line(err)}"
                ) from None

    def _usable(self) -> bool:
        """False (and the reason logged once) when this process goes on without the cache."""
        if not self._checked:
            self._checked = True
            try:
                self.check()
            except CacheFolderError as err:
                self._disable(str(err))
        return self._off is None

    def _disable(self, why: str) -> None:
        if self._off is None:
            self._off = why
            log.warning("feature cache: %s; going on without the cache", why)

    # --- entries -----------------------------------------------------------------

    def path_for(self, key: str, kind: str = "features") -> Path:
        return self.folder / f"{key}{KINDS[kind]}"

    def owns(self, path: Path) -> bool:
        """Whether ``path`` is an entry this cache wrote (its marker says so)."""
        return _read_marker(_marker(Path(path))) is not None

    def _markers(self) -> list:
        try:
            return [(m, d) for m in self.folder.glob(f".*{MARKER_SUFFIX}") if (d := _read_marker(m)) is not None]
        except OSError:
            return []

    def entries(self, kind: str | None = None) -> list:
        """(path, bytes, last use) of every entry the cache wrote (of ``kind``), least recently used first."""
        out = []
        for _marker, data in self._markers():
            if kind is not None and data.get("kind") != kind:
                continue
            path = self.folder / data["entry"]
            try:
                st = path.stat()
            except OSError:  # not written yet, or removed meanwhile by another process
                continue
            out.append((path, st.st_size, st.st_mtime))
        return sorted(out, key=lambda e: e[2])

    def info(self) -> dict:
        """What the cache holds; raises :class:`CacheFolderError` for a folder it cannot use."""
        self.check()
        entries = self.entries()
        fields = {p for p, _, _ in self.entries("field")}
        return {
            "folder": str(self.folder),
            "files": len(entries),
            "fields": len(fields),
            "bytes": sum(e[1] for e in entries),
            "limit_bytes": self.limit_bytes,
        }

    def clear(self) -> dict:
        """Remove every entry the cache wrote, the temporary files a crash left of them and their
        markers; nothing else in the folder. Returns what was freed."""
        self.check()
        files, freed = 0, 0
        for marker, data in self._markers():
            path = self.folder / data["entry"]
            for p in [path, *self.folder.glob(f".{glob_escape(path.name)}.*.tmp")]:
                try:
                    size = p.stat().st_size
                    p.unlink()
                except OSError:
                    continue
                files, freed = files + (p == path), freed + size
            marker.unlink(missing_ok=True)
        return {"folder": str(self.folder), "files": files, "bytes": freed}

    def remove(self, path: Path) -> None:
        """Remove one entry the cache wrote (the entry first, then its marker); anything else stays."""
        if self.owns(path):
            Path(path).unlink(missing_ok=True)
            _marker(Path(path)).unlink(missing_ok=True)

    def enforce_limit(self, keep: Path | None = None) -> int:
        """Remove least recently used entries until the cache fits its limit; never ``keep``. Returns
        how many were removed."""
        entries = self.entries()
        total, removed = sum(e[1] for e in entries), 0
        for path, size, _ in entries:
            if total <= self.limit_bytes:
                break
            if keep is not None and path == keep:
                continue
            try:
                self.remove(path)
            except OSError:
                continue
            total, removed = total - size, removed + 1
        if removed:
            log.info(
                "feature cache: removed %d least recently used file(s) to stay under %.1f GB",
                removed,
                self.limit_bytes / 1e9,
            )
        return removed

    def load(self, key: str, kind: str, read: Callable[[Path], _T]) -> _T | None:
        """``read(path)`` of the entry, or None: absent, not the cache's own (left alone, said), or
        unreadable (``read`` raised InputError: removed, to be rebuilt). ``read`` checks that the
        content carries ``key``: an entry an earlier version wrote without a marker is adopted."""
        if not self._usable():
            return None
        path = self.path_for(key, kind)
        try:
            if not path.is_file():
                return None
        except OSError as err:
            self._disable(f"cannot read {path.parent}: {err.strerror or _last_line(err)}")
            return None
        owned = self.owns(path)
        try:
            value = read(path)
        except InputError as err:
            if owned:
                log.warning("feature cache: %s; rebuilding", err)
                self.remove(path)
            else:
                log.warning("feature cache: %s was not written by the cache; left alone, computing without it", path)
            return None
        if not owned:  # written by a version before markers: its content carries its own key, so it is ours
            try:
                self._write_marker(path, kind)
            except OSError:  # a read-only cache: used as it is
                pass
        try:
            os.utime(path)  # its last use, for the least-recently-used limit
        except OSError:
            pass
        return value

    def store(self, key: str, kind: str, write: Callable[[Path], object]) -> Path | None:
        """Write an entry with ``write(path)`` (atomic), marker first; a cache that cannot be written
        (disk full, read-only, a file in the way) costs only time later: said once, and the run goes on."""
        if not self._usable():
            return None
        path = self.path_for(key, kind)
        if os.path.lexists(path) and not self.owns(path):
            log.warning("feature cache: %s exists and was not written by the cache; left alone", path)
            return None
        try:
            self._write_marker(path, kind)
            write(path)
            self.enforce_limit(keep=path)
            return path
        except (OSError, RuntimeError) as err:  # torch reports a failed write as a RuntimeError
            if not os.path.lexists(path):
                _marker(path).unlink(missing_ok=True)
            if not self._write_failed:  # said once; a later write may succeed (space freed meanwhile)
                self._write_failed = True
                log.warning("feature cache: cannot write %s (%s); going on without caching it", path, _why(err, path))
            return None

    def _write_marker(self, path: Path, kind: str) -> None:
        write_text_atomic(_marker(path), _marker_text(path.name, kind))

    # --- pyramids ------------------------------------------------------------------

    def get(self, key: str) -> FeaturePyramid | None:
        return self.load(key, "features", lambda path: _checked_pyramid(path, key))

    def put(self, key: str, pyramid: FeaturePyramid) -> Path | None:
        """Store a pyramid (see :meth:`store`)."""
        pyramid.identity["cache_key"] = key
        return self.store(key, "features", pyramid.save)


def _checked_pyramid(path: Path, key: str) -> FeaturePyramid:
    pyramid = FeaturePyramid.load(path)
    if pyramid.identity.get("cache_key") != key:
        raise InputError(f"{path} does not match its key")
    return pyramid


class MemoryLRU:
    """A bounded in-memory cache, least recently used out first; thread-safe. Owned by a session
    (:class:`~MedDIFTLib.session.SharedCaches`) and passed to whoever fills it."""

    def __init__(self, keep: int = 8):
        self.keep = int(keep)
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.keep:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def extract_cached(
    backbone: Backbone,
    volume: Volume,
    cache: FeatureCache | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> FeaturePyramid:
    """The volume's pyramid from the cache, or extracted (and then cached)."""
    if cache is None:
        return backbone.extract(volume, progress, cancel)
    key = cache_key(volume_digest(volume), backbone.identity())
    pyramid = cache.get(key)
    if pyramid is not None:
        if progress:
            progress("features (cached)", 1.0)
        return pyramid
    pyramid = backbone.extract(volume, progress, cancel)
    cache.put(key, pyramid)
    return pyramid
