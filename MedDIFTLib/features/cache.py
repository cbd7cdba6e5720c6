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


def cache_key(volume_sha256: str, backbone_identity: dict) -> str:
    blob = json.dumps({"volume": volume_sha256, "backbone": backbone_identity}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class FeatureCache:
    """Pyramids on disk under ``folder``, one ``<key>.pt`` file each."""

    def __init__(self, folder=None):
        self.folder = Path(folder) if folder else default_cache_dir()

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
        return pyramid

    def put(self, key: str, pyramid: FeaturePyramid) -> Optional[Path]:
        """Store a pyramid; a cache that cannot be written (disk full, read-only) costs only time
        later, so it is logged and the run goes on (the atomic write leaves no partial file)."""
        pyramid.identity["cache_key"] = key
        try:
            return pyramid.save(self.path_for(key))
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
