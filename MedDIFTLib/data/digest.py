"""Identities: the SHA-256 of a file's bytes, and of a volume's voxels and geometry (once per volume).

This module is the one owner of both digests and of the volume digest's memo. The memo lives on the volume (one
private slot, written only here) while the volume holds the same array and matrix objects:
hashing a whole CT is not free, and every interactive match asks for both scans'
digests (feature cache key, session memory, input checks). The engine never writes into a
volume's array; a caller that changes voxels in place must make a new Volume (``with_array``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .geometry import Volume

_MEMO = "_meddift_digest"  # (array, matrix, digest): references, not copies
_BLOCK = 1 << 20  # bytes read at a time: a weight file of hundreds of MB is never held whole


def hash_file_into(h, path) -> None:
    """Feed a file's bytes to the hash object ``h`` (``hashlib``), a block at a time.

    Args:
        h: a ``hashlib`` hash object, updated in place.
        path: the file.
    """
    with open(Path(path), "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)


def file_sha256(path) -> str:
    """SHA-256 of a file's bytes, as 64 hex digits.

    Args:
        path: the file.
    """
    h = hashlib.sha256()
    hash_file_into(h, path)
    return h.hexdigest()


def volume_digest(volume: Volume) -> str:
    """SHA-256 of the voxels (with dtype and shape) and the geometry: the image's identity."""
    memo = volume.__dict__.get(_MEMO)
    if memo is not None and memo[0] is volume.array and memo[1] is volume.ijk_to_ras:
        return memo[2]
    digest = _digest(volume)
    volume.__dict__[_MEMO] = (volume.array, volume.ijk_to_ras, digest)
    return digest


def _digest(volume: Volume) -> str:
    h = hashlib.sha256()
    arr = np.ascontiguousarray(volume.array)
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.tobytes())
    h.update(np.round(np.asarray(volume.ijk_to_ras, dtype=np.float64), 6).tobytes())
    return h.hexdigest()
