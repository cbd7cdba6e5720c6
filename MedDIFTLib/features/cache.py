"""Caches of features: the disk cache of pyramids, so that the same volume is never encoded twice,
and :class:`MemoryLRU`, the small in-memory cache a session hands to its backbone.

The key is a hash of the image content (voxels and geometry) and of the
backbone's identity (configuration, options, weights' digests). A cached file
that is unreadable, or whose stored identity does not match its key, is
treated as stale: it is deleted and the pyramid rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Optional

from ..data.digest import volume_digest
from ..data.geometry import Volume
from ..errors import InputError
from ..runtime import Cancel, Progress, user_cache_dir
from .base import Backbone
from .pyramid import FeaturePyramid

log = logging.getLogger(__name__)


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


class FeatureCache:
    """Pyramids on disk under ``folder``, one ``<key>.pt`` file each, at most ``limit_bytes`` in all
    (least recently used removed first; a file's modification time is its last use)."""

    def __init__(self, folder=None, limit_bytes: Optional[int] = None):
        self.folder = Path(folder) if folder else default_cache_dir()
        self.limit_bytes = int(limit_bytes) if limit_bytes is not None else default_limit_bytes()

    def entries(self) -> list:
        """(path, bytes, last use) of every cached pyramid, least recently used first."""
        out = []
        for p in self.folder.glob("*.pt"):
            try:
                st = p.stat()
            except OSError:  # removed meanwhile by another process
                continue
            out.append((p, st.st_size, st.st_mtime))
        return sorted(out, key=lambda e: e[2])

    def info(self) -> dict:
        entries = self.entries()
        return {"folder": str(self.folder), "files": len(entries), "bytes": sum(e[1] for e in entries),
                "limit_bytes": self.limit_bytes}

    def clear(self) -> dict:
        """Remove every cached pyramid (and temporary files a crash left); returns what was freed."""
        files, freed = 0, 0
        for p in list(self.folder.glob("*.pt")) + list(self.folder.glob(".*.pt.*")):
            try:
                size = p.stat().st_size
                p.unlink()
            except OSError:
                continue
            files, freed = files + 1, freed + size
        return {"folder": str(self.folder), "files": files, "bytes": freed}

    def enforce_limit(self, keep: Optional[Path] = None) -> int:
        """Remove least recently used files until the cache fits its limit; never ``keep``. Returns
        how many were removed."""
        entries = self.entries()
        total, removed = sum(e[1] for e in entries), 0
        for path, size, _ in entries:
            if total <= self.limit_bytes:
                break
            if keep is not None and path == keep:
                continue
            try:
                path.unlink()
            except OSError:
                continue
            total, removed = total - size, removed + 1
        if removed:
            log.info("feature cache: removed %d least recently used file(s) to stay under %.1f GB",
                     removed, self.limit_bytes / 1e9)
        return removed

    def path_for(self, key: str) -> Path:
        return self.folder / f"{key}.pt"

    def get(self, key: str) -> Optional[FeaturePyramid]:
        path = self.path_for(key)
        if not path.exists():
            return None
        try:
            pyramid = FeaturePyramid.load(path)
        except InputError as err:
            log.warning("feature cache: %s; rebuilding", err)
            path.unlink(missing_ok=True)
            return None
        if pyramid.identity.get("cache_key") != key:
            log.warning("feature cache: %s does not match its key; rebuilding", path)
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)  # its last use, for the least-recently-used limit
        except OSError:
            pass
        return pyramid

    def put(self, key: str, pyramid: FeaturePyramid) -> Optional[Path]:
        """Store a pyramid; a cache that cannot be written (disk full, read-only) costs only time
        later, so it is logged and the run goes on (the atomic write leaves no partial file)."""
        pyramid.identity["cache_key"] = key
        try:
            path = pyramid.save(self.path_for(key))
            self.enforce_limit(keep=path)
            return path
        except (OSError, RuntimeError) as err:  # torch reports a failed write as a RuntimeError
            log.warning("feature cache: cannot write %s (%s); going on without caching it",
                        self.path_for(key), str(err).strip().splitlines()[-1] if str(err).strip() else err)
            return None


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


def extract_cached(backbone: Backbone, volume: Volume, cache: Optional[FeatureCache] = None,
                   progress: Optional[Progress] = None, cancel: Optional[Cancel] = None) -> FeaturePyramid:
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
