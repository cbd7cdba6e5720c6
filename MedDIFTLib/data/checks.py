"""Is this volume a CT in Hounsfield units, and do the two scans fit together? Checked before any work.

Fatal problems raise :class:`InputError` naming the volume, what is wrong and
what to do; doubtful ones return warnings (plain sentences) that the CLI, the
worker and Slicer show, and the run goes on. The thresholds are deliberately
loose: they catch a label map, an unrescaled or MR scan, a broken header, not
an unusual CT.
"""

from __future__ import annotations

import numpy as np

from ..errors import GeometryError, InputError, opt
from ..evidence import require_contrast
from .geometry import Volume

LABELMAP_MAX_VALUES = 64  # a segmentation has a few integer labels; a CT has thousands of distinct values
AIR_HU = -200.0  # a CT in HU has air (outside the body, in the lungs) well below this
MIN_VOXELS_PER_AXIS = 8  # the networks and descriptors downsample 8x; fewer voxels leave nothing to describe


def require_min_size(shape, name: str) -> None:
    """Refuse a volume with fewer than :data:`MIN_VOXELS_PER_AXIS` voxels along an axis (a scout, one slice)."""
    if min(shape) < MIN_VOXELS_PER_AXIS:
        raise InputError(
            f"{name} of size {tuple(int(s) for s in shape)} is too small: each axis needs at least "
            f"{MIN_VOXELS_PER_AXIS} voxels"
        )


def require_finite(array: np.ndarray, name: str) -> None:
    """Refuse NaN or infinite voxels, saying how many (a float volume only; integers are always finite)."""
    if not np.issubdtype(array.dtype, np.floating):
        return
    finite = np.isfinite(array)
    if not finite.all():
        raise InputError(
            f"{name} has {int((~finite).sum())} NaN or infinite voxels; fix or mask them (for example "
            "set them to -1000, air) before matching"
        )


def _name(volume: Volume, role: str) -> str:
    return f"{role} volume {volume.name!r}" if volume.name else f"{role} volume"


def check_ct(volume: Volume, role: str = "fixed") -> list:
    """Refuse what cannot be a CT; warn about what may not be one in HU. Returns the warnings.

    ``volume`` is the scan as matched (its own HU offset, if any, already added: see
    :func:`~MedDIFTLib.data.image_io.with_hu_offset`); the remedy named is that scan's own offset."""
    name = _name(volume, role)
    a = volume.array
    if a.ndim != 3:
        raise InputError(f"{name} has {a.ndim} dimensions {a.shape}; a 3D volume is needed")
    require_min_size(a.shape, name)
    require_finite(a, name)
    require_contrast(a, name)
    sample = a[:: max(1, a.shape[0] // 64), :: max(1, a.shape[1] // 64), :: max(1, a.shape[2] // 64)]
    values = np.unique(sample)
    if values.size <= LABELMAP_MAX_VALUES and np.all(values == np.round(values)) and values.min() >= 0:
        raise InputError(
            f"{name} looks like a label map or segmentation ({values.size} distinct integer values "
            f"{values.min():g}..{values.max():g}), not a CT: pick the CT volume itself"
        )
    warnings = []
    modality = str(volume.metadata.get("modality", "")).strip().upper()
    lo = float(np.percentile(sample, 1))
    hi = float(np.percentile(sample, 99.9))
    if modality and modality != "CT":
        warnings.append(
            f"{name} is {modality}, not CT: MedDIFT's MAISI backbone is trained on CT, so matches "
            "may be poor; check them"
        )
    elif lo > AIR_HU:
        hint = (
            f" If it is a CT stored without its rescale (values 0..4095), correct this scan: "
            f"{opt(role + '_hu_offset', -1024)}."
            if lo >= -50 and hi > 1000
            else ""
        )
        warnings.append(
            f"{name} does not look like a CT in Hounsfield units (1st percentile {lo:.0f}, no air near "
            f"-1000): an MR or unrescaled scan. The MAISI backbone expects CT in HU, so matches may be "
            f"poor.{hint}"
        )
    return warnings


def check_pair(fixed: Volume, moving: Volume, local_search: bool) -> list:
    """Scans that do not overlap in world space: an error for a local search (its windows would be
    empty), a warning for a global one (another patient or scanner may well have other origins)."""
    f_lo, f_hi = fixed.grid.bounds_ras()
    m_lo, m_hi = moving.grid.bounds_ras()
    if np.all(f_lo <= m_hi) and np.all(m_lo <= f_hi):
        return []
    where = f"fixed {_fmt(f_lo)}..{_fmt(f_hi)} mm, moving {_fmt(m_lo)}..{_fmt(m_hi)} mm (RAS)"
    if local_search:
        raise GeometryError(
            f"the fixed and moving volumes do not overlap in world space ({where}), so a local "
            f"search around the same world point finds nothing: use a global search (no {opt('radius')}), "
            "a prior transform that aligns them, or check the volumes' origins"
        )
    return [
        f"the fixed and moving volumes do not overlap in world space ({where}); the global search still "
        "works, but check that these are the scans you meant"
    ]


def check_voxel_sizes(fixed: Volume, moving: Volume, tolerance: float = 0.2) -> list:
    """For descriptors computed in voxels (the weight-free MIND-SSC): voxel sizes that differ by
    more than ``tolerance`` cost accuracy (on the phantom, voxel sizes half a millimetre apart more
    than double the median error), so warn with the remedy."""
    f, m = np.sort(fixed.spacing), np.sort(moving.spacing)
    if np.all(np.abs(f - m) <= tolerance * np.minimum(f, m)):
        return []
    return [
        f"fixed and moving voxel sizes differ ({_fmt1(fixed.spacing)} mm against {_fmt1(moving.spacing)} mm); "
        "the weight-free MIND-SSC descriptor is computed in voxels, so matches are less accurate: resample "
        "one scan to the other's voxel size, or use the MAISI backbone"
    ]


def _fmt1(v) -> str:
    return "(" + ", ".join(f"{x:.1f}" for x in v) + ")"


def _fmt(v) -> str:
    return "(" + ", ".join(f"{x:.0f}" for x in v) + ")"


def check_labels(points) -> list:
    """Duplicate labels are kept (each point is matched) but make pairs ambiguous: warn, naming them."""
    dup = points.duplicate_labels()
    if not dup:
        return []
    shown = ", ".join(f"{lb!r} x{len(ix)}" for lb, ix in list(dup.items())[:5])
    return [
        f"landmark labels are not unique ({shown}); every point is matched, but rename them to tell the pairs apart"
    ]
