"""Whether a result means anything: the evidence each result carries, and the one policy about it.

A run can finish without an error and still produce nothing of meaning: a search radius smaller
than the moving grid's voxels (no voxel to choose, a score of minus infinity), a prior field that
covers none of the points (the identity in disguise), a scan of one value (nothing to match), a
given initial transform that is not affine or that moves the scans apart. Each result carries
the evidence that it means something (scores finite, points inside the prior's field, overlap
after pre-alignment), and the policy, the same for the CLI, the worker, the server and batch
because the checks are in the engine, is:

- **refused** (a :class:`~MedDIFTLib.errors.MedDIFTError` with the reason; the CLI exits 2 and
  writes nothing) when no part of the result can mean anything: a one-value scan, a radius under
  the grid's resolution, a prior field covering none of the points, a non-affine or singular
  initial matrix, less than :data:`MIN_OVERLAP` of the fixed scan inside the moving one after
  pre-alignment, a score that is not finite;
- **warned** (in the result's file: ``registration.json``'s ``warnings``, and on the console)
  when part of it may still be right: a prior field covering only some points (the others are
  searched around the same world point), an overlap under :data:`WARN_OVERLAP`.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError, opt

MIN_OVERLAP = 0.05
"""Share of the fixed scan that must lie inside the moving scan after pre-alignment: below it the
warped scan is background and the field is invented by the regulariser."""
WARN_OVERLAP = 0.5
"""Below this share the field outside the overlap is extrapolated: warned."""


def require_contrast(array: np.ndarray, name: str) -> None:
    """Refuse a scan that is one value everywhere: there is nothing in it to match or register.

    Args:
        array: the voxels.
        name: the scan as the user knows it (``moving volume 'b'``).
    """
    a = np.asarray(array)
    if a.size and float(np.min(a)) == float(np.max(a)):
        raise InputError(
            f"{name} is {float(a.flat[0]):g} everywhere: there is nothing in it to match or "
            "register; check that it is the scan you meant"
        )


def least_radius(ijk_to_ras: np.ndarray) -> float:
    """Half a voxel diagonal of a grid: the least search radius whose ball always holds a voxel centre."""
    return float(np.linalg.norm(np.linalg.norm(np.asarray(ijk_to_ras, dtype=np.float64)[:3, :3], axis=0)) / 2)


def check_radius_resolution(radius_mm: float | None, ijk_to_ras: np.ndarray) -> None:
    """Refuse a search radius under half a voxel diagonal of the moving grid the search runs on: a
    ball that small may hold no voxel at all, and the 'match' would be a score of minus infinity.

    Args:
        radius_mm: the local search radius (None: a global search, nothing to check).
        ijk_to_ras: the moving grid's 4x4 matrix.
    """
    if radius_mm is None:
        return
    spacing = np.linalg.norm(np.asarray(ijk_to_ras, dtype=np.float64)[:3, :3], axis=0)
    least = least_radius(ijk_to_ras)
    if radius_mm < least:
        raise InputError(
            f"the search radius {radius_mm:g} mm is under the moving scan's resolution (voxels of "
            f"{', '.join(f'{s:.2f}' for s in spacing)} mm): a ball that small may hold no voxel; give "
            f"{opt('radius', f'{np.ceil(least * 10) / 10:g}')} or more, or 0 for a global search"
        )


def require_finite_scores(similarity: np.ndarray, points: np.ndarray, labels: list | None = None) -> None:
    """Refuse a match whose best score is not finite (no candidate was scored): it is no match.

    Args:
        similarity: (N,) best score per point.
        points: (N, 3) the fixed points, to name the first bad one.
        labels: their labels, if any.
    """
    bad = np.flatnonzero(~np.isfinite(np.asarray(similarity, dtype=np.float64)))
    if len(bad):
        i = int(bad[0])
        name = f"point {labels[i]!r}" if labels is not None else f"point #{i}"
        raise InputError(
            f"{name} at {np.round(points[i], 2).tolist()} (and {len(bad) - 1} more) found no scored "
            f"candidate in the moving volume: widen {opt('radius')} or check the prior"
        )


def prior_coverage(inside: np.ndarray, what: str) -> list:
    """The evidence of a prior that is known only on a region (a displacement field): refused when it
    covers none of the points, warned when it covers some.

    Args:
        inside: (N,) whether each point lies in the prior's region.
        what: the prior as the user knows it (its file).
    """
    inside = np.asarray(inside, dtype=bool)
    n, k = len(inside), int(inside.sum())
    if n and k == 0:
        raise InputError(
            f"the prior {what} covers none of the {n} points (they lie outside its grid), so it would "
            "act as the identity: check that the field belongs to these scans"
        )
    if k < n:
        return [
            f"the prior {what} covers {k} of the {n} points; the other {n - k} are searched around the same world point"
        ]
    return []


def checked_initial(matrix) -> np.ndarray | None:
    """A given initial transform as a 4x4 affine matrix, or refused: finite, bottom row 0 0 0 1,
    invertible (a projective or singular matrix has no meaning as a fixed -> moving map).

    Args:
        matrix: the 4x4 RAS matrix (fixed -> moving points), or None.
    """
    if matrix is None:
        return None
    a = np.asarray(matrix, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise InputError(f"the initial transform ({opt('initial')}) must be a 4x4 RAS matrix of finite numbers")
    if not np.allclose(a[3], [0, 0, 0, 1], atol=1e-9):
        raise InputError(
            f"the initial transform ({opt('initial')}) is not affine: its bottom row is "
            f"{np.round(a[3], 6).tolist()}, it must be [0, 0, 0, 1]"
        )
    if abs(np.linalg.det(a[:3, :3])) < 1e-6:
        raise InputError(
            f"the initial transform ({opt('initial')}) is singular (it flattens space): it must be invertible"
        )
    return a


def overlap_share(
    fixed_ijk_to_ras: np.ndarray,
    fixed_shape,
    moving_ijk_to_ras: np.ndarray,
    moving_shape,
    a: np.ndarray,
    samples: int = 12,
) -> float:
    """Share of the fixed scan that ``a`` (fixed -> moving points) puts inside the moving scan, from a
    ``samples``^3 lattice over the fixed scan."""
    axes = [np.linspace(0, s - 1, samples) for s in fixed_shape]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    ras = ijk @ fixed_ijk_to_ras[:3, :3].T + fixed_ijk_to_ras[:3, 3]
    moved = ras @ a[:3, :3].T + a[:3, 3]
    inv = np.linalg.inv(moving_ijk_to_ras)
    mijk = moved @ inv[:3, :3].T + inv[:3, 3]
    inside = np.all((mijk >= -0.5) & (mijk <= np.asarray(moving_shape) - 0.5), axis=1)
    return float(inside.mean())


def prealign_evidence(fixed, moving, a: np.ndarray, given: bool) -> dict:
    """The overlap after pre-alignment, refused under :data:`MIN_OVERLAP`, warned under
    :data:`WARN_OVERLAP`; returns ``{"overlap_after_prealign": share, "warnings": [...]}``.

    Args:
        fixed: the fixed Volume.
        moving: the moving Volume.
        a: the pre-alignment (fixed -> moving points).
        given: whether the user gave it (``--initial``), to name the remedy.
    """
    share = overlap_share(fixed.ijk_to_ras, fixed.shape, moving.ijk_to_ras, moving.shape, a)
    source = f"the initial transform ({opt('initial')})" if given else "the pre-alignment"
    if share < MIN_OVERLAP:
        fix = (
            "check its direction (fixed -> moving points) and units"
            if given
            else f"give a known transform ({opt('initial')}) or check the scans' origins"
        )
        raise InputError(
            f"after {source} only {100 * share:.0f}% of the fixed scan lies inside the moving scan: "
            f"the registration would be of background; {fix}"
        )
    warnings = []
    if share < WARN_OVERLAP:
        warnings.append(
            f"after {source} only {100 * share:.0f}% of the fixed scan lies inside the moving scan; the "
            "field outside that part is extrapolated"
        )
    return {"overlap_after_prealign": round(share, 4), "warnings": warnings}


__all__ = [
    "require_contrast",
    "least_radius",
    "check_radius_resolution",
    "require_finite_scores",
    "prior_coverage",
    "checked_initial",
    "overlap_share",
    "prealign_evidence",
    "MIN_OVERLAP",
    "WARN_OVERLAP",
]
