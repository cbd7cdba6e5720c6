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

from ..data.geometry import LPS_TO_RAS, apply_affine, as_points, flip_lps_ras
from ..data.image_io import is_itk_transform_text, read_matrix_file
from ..errors import InputError, opt
from ..evidence import prior_coverage

PriorFn = Callable[[np.ndarray], np.ndarray]

DENSE_CHECK_MM = 6.0
"""With ``prior="dense"``: the window around the field's position in which the paper's argmax is
looked up to score the match (and, with an explicit radius, to move it). Two finest MIND-SSC voxels
on a typical 3 mm scan: the field's own error is about 1 mm there."""

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
        lps = flip_lps_ras(as_points(pts))
        out = np.array([transform.TransformPoint(tuple(p)) for p in lps])
        return flip_lps_ras(out)

    return fn


def field_prior(field, path) -> PriorFn:
    """A displacement-field image (ITK, LPS) as a RAS prior. A field is known only on its grid (outside
    it ITK applies no displacement), so each call counts the points inside the grid: none is refused,
    some is warned (:func:`~MedDIFTLib.evidence.prior_coverage`; the warnings on ``fn.warnings``)."""
    import SimpleITK as sitk

    d = np.asarray(field.GetDirection(), dtype=np.float64).reshape(3, 3) * np.asarray(field.GetSpacing())
    to_index = np.linalg.inv(d)
    origin, size = np.asarray(field.GetOrigin()), np.asarray(field.GetSize())
    move = itk_transform_prior(sitk.DisplacementFieldTransform(field))

    def fn(pts):
        lps = as_points(pts) * [-1.0, -1.0, 1.0]
        ijk = (lps - origin) @ to_index.T
        fn.warnings = prior_coverage(np.all((ijk >= -0.5) & (ijk <= size - 0.5), axis=1), str(path))
        return move(pts)

    fn.warnings = []
    return fn


def resolve_prior(spec=None, radius_mm: Optional[float] = None):
    """The prior a search uses, decided here only: ``None`` for a global search (no radius, no spec);
    the identity (the same world point) when a radius is given without a spec; ``"coarse"`` and
    ``"dense"`` (the session's dense registration) as they are; a callable as is; any other spec
    through :func:`load_prior`."""
    if spec is None or (isinstance(spec, str) and spec == ""):
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
        return field_prior(field, path)
    if name.endswith(".npy") or (name.endswith(".txt") and not is_itk_transform_text(path)):
        return matrix_prior(read_matrix_file(path, "a prior matrix"))
    try:
        return itk_transform_prior(sitk.ReadTransform(str(path)))
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot read transform ({str(exc).splitlines()[0]})") from exc


__all__ = ["PriorFn", "DEFAULT_RADIUS_MM", "DENSE_CHECK_MM", "identity_prior", "matrix_prior", "itk_transform_prior", "load_prior",
           "resolve_prior", "LPS_TO_RAS"]
