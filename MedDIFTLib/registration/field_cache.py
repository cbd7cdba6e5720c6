"""Dense fields on disk, beside the pyramids: a pair is registered once, then reopened.

A field is cached under a key made of everything that changes it: both scans' content
(:func:`~MedDIFTLib.data.digest.volume_digest`: voxels and geometry, so one changed voxel is
another key), the identity of the backbone whose features it was computed from (options and
weights' digests), every registration option, the initial transform if one was given, and
:data:`FIELD_FORMAT`. It lives in the feature cache's folder under the same size limit and
``meddift cache info|clear``, and like every entry there it is read back only when the cache
wrote it (:class:`~MedDIFTLib.features.cache.FeatureCache`). A file that cannot be read or does
not carry its own key is removed and the pair registered again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from ..features.cache import FeatureCache
from .descriptors import AxisGrid
from .field import DenseField

FIELD_FORMAT = 1
"""Raised when the registration's algorithm or this file layout changes: older fields then miss."""


def field_key(
    fixed_digest: str, moving_digest: str, backbone_identity: dict, options, initial: np.ndarray | None = None
) -> str:
    """The cache key of a field.

    Args:
        fixed_digest: the fixed scan's content digest.
        moving_digest: the moving scan's content digest.
        backbone_identity: the identity of the backbone the registration's features come from.
        options: the :class:`~MedDIFTLib.registration.RegistrationOptions` used.
        initial: the 4x4 RAS matrix given instead of the automatic pre-alignment, or None.
    """
    init = None if initial is None else np.round(np.asarray(initial, dtype=np.float64), 9).tolist()
    blob = json.dumps(
        {
            "format": FIELD_FORMAT,
            "fixed": fixed_digest,
            "moving": moving_digest,
            "backbone": backbone_identity,
            "options": asdict(options),
            "initial": init,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def save_field(field: DenseField, path, key: str) -> Path:
    """Write ``field`` to one ``.npz`` file atomically (arrays as they are, ``info`` as JSON)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            format=np.int64(FIELD_FORMAT),
            key=np.array(key),
            prealign=field.prealign,
            shape=np.asarray(field.grid.shape, dtype=np.int64),
            origin=field.grid.origin,
            spacing=field.grid.spacing,
            u=field.u,
            info=np.array(json.dumps(field.info, default=_plain)),
        )
    return path


def load_field(path, key: str) -> DenseField:
    """The field stored at ``path`` under ``key``; InputError when unreadable or another key's."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["format"]) != FIELD_FORMAT or str(z["key"]) != key:
                raise InputError(f"{path}: not the cached field of its key")
            grid = AxisGrid(
                tuple(int(n) for n in z["shape"]), z["origin"].astype(np.float64), z["spacing"].astype(np.float64)
            )
            field = DenseField(z["prealign"].astype(np.float64), grid, z["u"], json.loads(str(z["info"])))
    except InputError:
        raise
    except Exception as exc:  # a truncated or foreign file: whatever numpy raises, it is unreadable
        raise InputError(f"{path}: cached field is unreadable ({type(exc).__name__}: {exc})") from exc
    if field.u.shape != tuple(grid.shape) + (3,):
        raise InputError(f"{path}: cached field has displacements of shape {field.u.shape} on a {grid.shape} grid")
    return field


def cached_field(cache: FeatureCache | None, key: str) -> DenseField | None:
    """The field stored under ``key``, or None (no cache, not stored, or stale and now removed)."""
    if cache is None:
        return None
    return cache.load(key, "field", lambda path: load_field(path, key))


def store_field(cache: FeatureCache | None, key: str, field: DenseField) -> Path | None:
    """Keep ``field`` under ``key`` (nothing without a cache; a failed write is said and costs only time)."""
    if cache is None:
        return None
    return cache.store(key, "field", lambda path: save_field(field, path, key))


def _plain(value):
    """JSON for the numpy scalars and arrays a field's ``info`` may hold."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


__all__ = ["FIELD_FORMAT", "field_key", "save_field", "load_field", "cached_field", "store_field"]
