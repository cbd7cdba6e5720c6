"""Where to look in the moving scan: priors for local search.

A prior maps fixed-scan RAS points to expected moving-scan RAS points. It can
be the identity (same world point), a 4x4 matrix, an ITK transform file or a
displacement field. Transform files follow ITK's *resampling* convention:
they map points of the fixed image to the moving image, which is what
elastix, ANTs and SimpleITK write when the moving image is registered to the
fixed one. ITK works in LPS; the flip to RAS happens here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.geometry import LPS_TO_RAS, apply_affine, as_points, flip_lps_ras
from ..data.image_io import is_itk_transform_text, read_matrix_file
from ..errors import InputError
from ..evidence import prior_coverage
from ..options import PriorKind, search_radius  # search_radius: importable here as before

PriorFn = Callable[[np.ndarray], np.ndarray]
GLOBAL = "global"
"""A :class:`Prior`'s kind when there is none: a global search."""
TRANSFORM = "transform"
"""A :class:`Prior`'s kind for a map of points (a matrix, a transform file, a function)."""

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

    fn.warnings = []  # type: ignore[attr-defined]  # a function attribute (mypy does not model them)
    return fn


@dataclass(frozen=True)
class Prior:
    """The prior of a search, resolved: what :func:`resolve_prior` always returns.

    ``kind``: :data:`GLOBAL` (no prior: search everywhere), a :class:`~MedDIFTLib.options.PriorKind`
    value (``identity``, ``coarse``, ``dense``) or :data:`TRANSFORM`; ``fn`` maps fixed RAS points to
    expected moving RAS points where the kind has such a map (identity, transform). ``needs_radius``:
    the prior only narrows a local search, so a search radius must be given (false for the identity
    that a radius implies, the dense prior, which places points itself, and a global search).
    """

    kind: str
    fn: PriorFn | None = None
    needs_radius: bool = False

    def __call__(self, points) -> np.ndarray:
        """The expected moving RAS points of fixed RAS ``points`` (identity and transform priors)."""
        if self.fn is None:
            raise InputError(f"the {self.kind} prior does not map points by itself")
        return self.fn(points)


def resolve_prior(spec: Any = None, radius_mm: float | None = None) -> Prior:
    """The prior a search uses, decided here only, as a :class:`Prior`.

    Args:
        spec: None, "" or "none" (the paper's argmax: the identity when a radius is given, else a global
            search; the session's own default, "dense", is decided by the session), a
            :class:`~MedDIFTLib.options.PriorKind` name, a :class:`Prior` (as is), a function of
            fixed RAS points, a 4x4 RAS matrix, or a file (see :func:`load_prior`).
        radius_mm: the search radius (None: a global search).
    """
    if isinstance(spec, Prior):
        return spec
    if spec is None or (isinstance(spec, str) and spec in ("", PriorKind.NONE)):  # the paper's argmax
        return Prior(PriorKind.IDENTITY.value, identity_prior) if radius_mm else Prior(GLOBAL)
    if isinstance(spec, str) and spec in (PriorKind.COARSE, PriorKind.DENSE):
        return Prior(str(spec), needs_radius=spec == PriorKind.COARSE)
    if isinstance(spec, str) and spec == PriorKind.IDENTITY:
        return Prior(PriorKind.IDENTITY.value, identity_prior, needs_radius=True)
    if callable(spec):
        return Prior(TRANSFORM, spec, needs_radius=True)
    if isinstance(spec, (list, tuple, np.ndarray)):
        return Prior(TRANSFORM, matrix_prior(spec), needs_radius=True)
    if isinstance(spec, str):
        return Prior(TRANSFORM, load_prior(spec), needs_radius=True)
    raise InputError(f"unknown prior {spec!r}")


def load_prior(spec: str) -> PriorFn:
    """``identity``, or a file: ``.txt``/``.npy`` 4x4 RAS matrix, ITK transform
    (``.tfm``, ``.h5``, ITK ``.txt``), or a displacement-field image."""
    if spec in (None, "", PriorKind.IDENTITY):
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
            raise InputError(
                f"{path}: a displacement field needs 3 components per voxel in 3D, got "
                f"{field.GetNumberOfComponentsPerPixel()} in {field.GetDimension()}D"
            )
        return field_prior(field, path)
    if name.endswith(".npy") or (name.endswith(".txt") and not is_itk_transform_text(path)):
        return matrix_prior(read_matrix_file(path, "a prior matrix"))
    try:
        return itk_transform_prior(sitk.ReadTransform(str(path)))
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot read transform ({str(exc).splitlines()[0]})") from exc


__all__ = [
    "PriorFn",
    "Prior",
    "GLOBAL",
    "TRANSFORM",
    "DEFAULT_PRIOR",
    "DEFAULT_RADIUS_MM",
    "DENSE_CHECK_MM",
    "identity_prior",
    "matrix_prior",
    "itk_transform_prior",
    "load_prior",
    "resolve_prior",
    "search_radius",
    "LPS_TO_RAS",
]
