"""Where to look in the moving scan: priors for local search.

A prior maps fixed-scan RAS points to expected moving-scan RAS points. It can
be the identity (same world point), a 4x4 matrix, an ITK transform file or a
displacement field. Transform files follow ITK's *resampling* convention:
they map points of the fixed image to the moving image, which is what
elastix, ANTs and SimpleITK write when the moving image is registered to the
fixed one. ITK works in LPS; the flip to RAS happens here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..data.geometry import LPS_TO_RAS, apply_affine, as_points
from ..errors import InputError, opt

PriorFn = Callable[[np.ndarray], np.ndarray]

DENSE_CHECK_MM = 6.0
"""With ``prior="dense"``: the window around the field's position in which the paper's argmax is
looked up to score the match (and, with an explicit radius, to move it). Two finest MIND-SSC voxels
on a typical 3 mm scan: the field's own error is about 1 mm there."""

DEFAULT_PRIOR = "dense"
"""The prior of a match that names none (``MatchSession.match``, hence the CLI, the worker, the server
and the panel): the dense registration's map, the most accurate answer measured (README, "Dense
correspondence"). The one place this default is set. ``"none"`` is the paper's plain argmax: a global
search, or within the search radius of the same world point."""

DEFAULT_RADIUS_MM = 25.0
"""The local search radius used by default where one is used (the demo, the evaluation, the
ablations' reference, the Slicer self-test): larger than breathing motion at the lung base, small
enough to keep a match off a similar-looking structure elsewhere."""

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def search_radius(radius_mm) -> Optional[float]:
    """The one rule for a search radius, wherever it is given (CLI, worker, Slicer panel, demo,
    evaluation): ``None`` or 0 is a global search; otherwise a finite positive number of mm."""
    if radius_mm is None:
        return None
    try:
        r = float(radius_mm)
    except (TypeError, ValueError):
        r = float("nan")
    if r == 0.0:
        return None
    if not np.isfinite(r) or r < 0:
        raise InputError(f"the search radius must be a positive number of mm (0 or none: search the whole moving "
                         f"volume), got {radius_mm!r} ({opt('radius')})")
    return r


def identity_prior(points) -> np.ndarray:
    return as_points(points).copy()


def matrix_prior(matrix_ras) -> PriorFn:
    m = np.asarray(matrix_ras, dtype=np.float64)
    if m.shape != (4, 4) or not np.allclose(m[3], [0, 0, 0, 1]):
        raise InputError(f"a prior matrix must be a 4x4 homogeneous RAS matrix, got shape {m.shape}")
    return lambda pts: apply_affine(m, pts)


def itk_transform_prior(transform) -> PriorFn:
    """An ITK/SimpleITK transform (LPS, fixed -> moving points) as a RAS prior."""

    def fn(pts):
        lps = as_points(pts) * [-1.0, -1.0, 1.0]
        out = np.array([transform.TransformPoint(tuple(p)) for p in lps])
        return out * [-1.0, -1.0, 1.0]

    return fn


def resolve_prior(spec=None, radius_mm: Optional[float] = None):
    """The prior a search uses, decided here only: ``None`` for a global search (no radius; no spec or ``"none"``);
    the identity (the same world point) when a radius is given without a spec; ``"coarse"`` and
    ``"dense"`` (the session's dense registration) as they are; a callable as is; any other spec
    through :func:`load_prior`."""
    if spec is None or (isinstance(spec, str) and spec in ("", "none")):
        return identity_prior if radius_mm else None
    if spec in ("coarse", "dense") or callable(spec):
        return spec
    if isinstance(spec, str):
        return load_prior(spec)
    raise InputError(f"unknown prior {spec!r}")


def load_prior(spec: str) -> PriorFn:
    """``identity``, or a file: ``.txt``/``.npy`` 4x4 RAS matrix, ITK transform
    (``.tfm``, ``.h5``, ITK ``.txt``), or a displacement-field image."""
    if spec in (None, "", "identity"):
        return identity_prior
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{path}: prior transform file not found")
    import SimpleITK as sitk

    name = path.name.lower()
    if name.endswith(IMAGE_SUFFIXES):
        try:
            field = sitk.ReadImage(str(path), sitk.sitkVectorFloat64)
        except RuntimeError as exc:
            raise InputError(f"{path}: cannot read displacement field ({str(exc).splitlines()[0]})") from exc
        if field.GetNumberOfComponentsPerPixel() != 3 or field.GetDimension() != 3:
            raise InputError(f"{path}: a displacement field needs 3 components per voxel in 3D, got "
                             f"{field.GetNumberOfComponentsPerPixel()} in {field.GetDimension()}D")
        return itk_transform_prior(sitk.DisplacementFieldTransform(field))
    if name.endswith(".npy"):
        return matrix_prior(np.load(path))
    if name.endswith(".txt"):
        text = path.read_text(errors="replace")
        if "Transform:" not in text and "#Insight Transform File" not in text:
            try:
                return matrix_prior(np.loadtxt(path))
            except ValueError as exc:
                raise InputError(f"{path}: not a 4x4 matrix nor an ITK transform file ({exc})") from exc
    try:
        return itk_transform_prior(sitk.ReadTransform(str(path)))
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot read transform ({str(exc).splitlines()[0]})") from exc


__all__ = ["PriorFn", "DEFAULT_PRIOR", "DEFAULT_RADIUS_MM", "DENSE_CHECK_MM", "identity_prior", "matrix_prior", "itk_transform_prior", "load_prior",
           "resolve_prior", "LPS_TO_RAS"]
