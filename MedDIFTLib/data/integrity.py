"""Is an image file whole? Checked before ITK reads it, because ITK reads some damaged files silently.

A truncated ``.nii.gz`` or ``.nii`` is read by ITK with its missing part as
zeros, without a word; a half-copied scan would then be matched as if it were
whole. So every gzip stream is decompressed to its end (its length and CRC
checked), and a NIfTI header's data size is compared with the data there is.
Formats that ITK itself refuses when damaged (NRRD, MetaImage) get their ITK
error translated by :func:`itk_reason` into a reason without ITK's source paths.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import ImageReadError

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 22


def check_complete(path: Path) -> None:
    """Refuse a file whose compressed data ends early or is corrupt, or whose NIfTI data is shorter
    than its header says."""
    path = Path(path)
    with open(path, "rb") as f:
        magic = f.read(2)
    head, size = b"", None
    if magic == GZIP_MAGIC:
        head, size = _gunzip_to_end(path)
    else:
        with open(path, "rb") as f:
            head = f.read(544)
        size = path.stat().st_size
    _check_nifti(path, head, size)


def _gunzip_to_end(path: Path) -> tuple[bytes, int]:
    head, size = b"", 0
    try:
        with gzip.open(path, "rb") as f:
            while True:
                chunk = f.read(_CHUNK)
                if not chunk:
                    break
                if len(head) < 544:
                    head += chunk[: 544 - len(head)]
                size += len(chunk)
    except EOFError:
        raise ImageReadError(
            f"{path}: is damaged: its compressed data ends early (a truncated download or copy?); copy the file again"
        ) from None
    except (OSError, zlib.error) as exc:
        raise ImageReadError(
            f"{path}: is damaged: its compressed data is corrupt ({exc}); copy the file again"
        ) from None
    return head, size


def _check_nifti(path: Path, head: bytes, size: int) -> None:
    """A NIfTI-1 or NIfTI-2 header's data size against the bytes there are."""
    need = _nifti_needs(head)
    if need is not None and size < need:
        raise ImageReadError(
            f"{path}: is damaged: its header describes {need} bytes of image data but the file "
            f"holds {size} (a truncated download or copy?); copy the file again"
        )


def _nifti_needs(head: bytes):
    if len(head) < 348:
        return None
    for order in "<>":
        n1 = struct.unpack(order + "i", head[:4])[0]
        if n1 == 348 and head[344:347] == b"n+1":  # single-file NIfTI-1
            dims = struct.unpack(order + "8h", head[40:56])
            bitpix = struct.unpack(order + "h", head[72:74])[0]
            offset = struct.unpack(order + "f", head[108:112])[0]
            return _bytes(dims, bitpix, offset)
        if n1 == 540 and len(head) >= 540 and head[4:7] == b"n+2":
            bitpix = struct.unpack(order + "h", head[14:16])[0]
            dims = struct.unpack(order + "8q", head[16:80])
            offset = struct.unpack(order + "q", head[168:176])[0]
            return _bytes(dims, bitpix, offset)
    return None


def _bytes(dims, bitpix, offset):
    nd = int(dims[0])
    if not 1 <= nd <= 7 or bitpix <= 0 or not np.isfinite(offset) or offset < 0:
        return None  # a header ITK will refuse on its own
    count = 1
    for d in dims[1 : nd + 1]:
        count *= max(int(d), 1)
    return int(offset) + count * bitpix // 8


_NOISE = re.compile(
    r"(Exception thrown in SimpleITK \w+:\s*)?(/[^\s:]+\.(cxx|h|hxx|txx):\d+:\s*)|"
    r"ITK ERROR:\s*\w+\(0x[0-9a-f]+\):\s*"
)


def itk_reason(exc: BaseException) -> str:
    """An ITK error as a reason a user can act on: no source paths, no object addresses."""
    text = str(exc)
    low = text.lower()
    if (
        "not read completely" in low
        or "trouble reading" in low
        or "read failed" in low
        or "unexpected end" in low
        or "premature" in low
    ):
        return "the file is damaged or truncated: it holds less data than its header says; copy it again"
    if "file cannot be read" in low:  # MetaImage: the real reason went to the C library's stderr
        return "the file is damaged, truncated or not readable; copy it again"
    if "unable to determine imageio" in low or "could not create io object" in low:
        return "not an image format that can be read (NIfTI, NRRD, MHA/MHD or a DICOM folder)"
    lines = [_NOISE.sub("", ln).strip() for ln in text.strip().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("[")]
    return lines[0] if lines else type(exc).__name__
