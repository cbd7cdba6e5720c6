"""The point-set type, and the one codec of per-point scores in text.

A :class:`PointSet` holds named points in MedDIFT's one world space, RAS
millimetres (see :mod:`MedDIFTLib.data.geometry`), with optional per-point
values (a matcher's ``similarity``, ``confidence``, ``margin``,
``fb_error_mm``). Slicer markups have no per-point number fields, so values
ride in a point's description as ``name=number`` parts separated by ``;``:
:func:`describe` writes that text and :func:`parse_description` reads it. The
file formats (:mod:`MedDIFTLib.data.landmark_io`) and the Slicer module both
use these two functions, so the text is written one way and read back exactly.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .geometry import Grid, Volume, apply_affine, as_points


@dataclass(eq=False)
class PointSet:
    """Named points in RAS mm, with optional per-point values.

    ``values`` carries numbers that travel with the points through every
    format that can hold them (a matcher's ``similarity``, ``confidence``).
    A row of NaN is a point without a position (Slicer's "undefined"), kept so
    that index ``n`` still means the same landmark in a corresponding set.
    Duplicate labels are allowed (files have them); :meth:`duplicate_labels`
    finds them for callers that pair points by label.
    """

    points: np.ndarray
    labels: list | None = None
    values: dict = field(default_factory=dict)
    descriptions: list | None = None
    locked: np.ndarray | None = None
    name: str = ""

    def __post_init__(self):
        pts = np.asarray(self.points, dtype=np.float64)
        self.points = pts.reshape(0, 3).copy() if pts.size == 0 else as_points(pts).copy()
        n = len(self.points)
        self.labels = [f"F-{i + 1}" for i in range(n)] if self.labels is None else [str(s) for s in self.labels]
        self.descriptions = [""] * n if self.descriptions is None else [str(s) for s in self.descriptions]
        self.locked = np.zeros(n, bool) if self.locked is None else np.asarray(self.locked, dtype=bool).reshape(-1)
        for what, seq in (("labels", self.labels), ("descriptions", self.descriptions), ("locked", self.locked)):
            if len(seq) != n:
                raise InputError(f"point set {self.name!r}: {len(seq)} {what} for {n} points")
        vals = {}
        for key, v in dict(self.values).items():
            arr = np.asarray(v, dtype=np.float64).reshape(-1)
            if len(arr) != n:
                raise InputError(f"point set {self.name!r}: value {key!r} has {len(arr)} entries for {n} points")
            vals[str(key)] = arr.copy()
        self.values = vals

    def __len__(self) -> int:
        return len(self.points)

    def __repr__(self) -> str:
        keys = f", values={list(self.values)}" if self.values else ""
        return f"PointSet({self.name!r}, {len(self)} points{keys})"

    @property
    def defined(self) -> np.ndarray:
        """Boolean per point: it has a finite position."""
        return np.all(np.isfinite(self.points), axis=1)

    def subset(self, indices) -> PointSet:
        """The points at ``indices`` (integer indices, a boolean mask or a slice), in that order."""
        idx = np.arange(len(self))[indices]
        idx = np.atleast_1d(idx)
        # set by __post_init__
        assert self.labels is not None and self.descriptions is not None and self.locked is not None
        return PointSet(
            self.points[idx],
            [self.labels[i] for i in idx],
            {k: v[idx] for k, v in self.values.items()},
            [self.descriptions[i] for i in idx],
            self.locked[idx],
            self.name,
        )

    def label_index(self, label) -> int:
        """Index of the one point called ``label``; an error if none or several are."""
        assert self.labels is not None  # set by __post_init__
        hits = [i for i, s in enumerate(self.labels) if s == str(label)]
        if not hits:
            raise InputError(f"point set {self.name!r} has no point labelled {str(label)!r}")
        if len(hits) > 1:
            raise InputError(
                f"point set {self.name!r}: label {str(label)!r} is used by {len(hits)} points (indices {hits})"
            )
        return hits[0]

    def duplicate_labels(self) -> dict:
        """``{label: [indices]}`` for every label used more than once (empty if labels are unique)."""
        seen: dict = {}
        assert self.labels is not None  # set by __post_init__
        for i, s in enumerate(self.labels):
            seen.setdefault(s, []).append(i)
        return {s: idx for s, idx in seen.items() if len(idx) > 1}

    def to_voxel(self, reference) -> np.ndarray:
        """Continuous voxel indices (N, 3) of the points in ``reference`` (Volume, Grid or 4x4 IJK-to-RAS)."""
        return apply_affine(np.linalg.inv(reference_matrix(reference)), self.points)

    @classmethod
    def from_voxel(cls, ijk, reference, labels=None, values=None, descriptions=None, name: str = "") -> PointSet:
        """Points given as continuous voxel indices of ``reference``, converted to RAS mm."""
        ijk = np.asarray(ijk, dtype=np.float64)
        ras = ijk.reshape(0, 3) if ijk.size == 0 else apply_affine(reference_matrix(reference), ijk)
        return cls(ras, labels, values or {}, descriptions, name=name)


def reference_matrix(reference) -> np.ndarray:
    """The IJK-to-RAS matrix of ``reference``: a Volume, a Grid or an invertible 4x4 matrix."""
    if isinstance(reference, (Volume, Grid)):
        return np.asarray(reference.ijk_to_ras, dtype=np.float64)
    m = np.asarray(reference, dtype=np.float64)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)) or abs(np.linalg.det(m[:3, :3])) < 1e-12:
        raise InputError(
            "reference must be a Volume, a Grid or an invertible 4x4 IJK-to-RAS matrix, "
            f"got {type(reference).__name__} of shape {np.shape(reference)}"
        )
    return m


# ---------------------------------------------------------------------------
# the score codec: values in a description
# ---------------------------------------------------------------------------


def format_number(v: float) -> str:
    """Shortest text that reads back to the same float (integers without '.0')."""
    v = float(v)
    if math.isfinite(v) and v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


_VALUE_RE = re.compile(
    r"^([A-Za-z_][A-Za-z0-9_.\-]*)\s*=\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf)$", re.I
)


def parse_description(desc: str) -> tuple[str, dict]:
    """``"note; similarity=0.91; confidence=0.5"`` -> ("note", {"similarity": 0.91, ...}).

    Slicer has no per-point number fields, so values ride in the description
    as ``name=number`` parts separated by ``;``; other text stays description.
    """
    text, vals = [], {}
    for part in str(desc or "").split(";"):
        m = _VALUE_RE.match(part.strip())
        if m:
            vals[m.group(1)] = float(m.group(2))
        elif part.strip():
            text.append(part.strip())
    return "; ".join(text), vals


def describe(text: str, values: dict) -> str:
    """A description holding ``text`` and ``values`` (``{name: number}``; NaN and None left out):
    the inverse of :func:`parse_description`."""
    parts = [text] if text else []
    parts += [f"{k}={format_number(v)}" for k, v in values.items() if v is not None and not math.isnan(v)]
    return "; ".join(parts)


def point_description(ps: PointSet, i: int) -> str:
    """Point ``i``'s description with its values, as written into markups files and nodes."""
    assert ps.descriptions is not None  # set by PointSet.__post_init__
    return describe(ps.descriptions[i], {k: v[i] for k, v in ps.values.items()})


def values_from_dicts(per_point: list) -> dict:
    """Per-point ``{name: value}`` dicts as PointSet values (NaN where a point lacks one)."""
    keys: list = []
    for d in per_point:
        keys += [k for k in d if k not in keys]
    return {k: np.array([d.get(k, np.nan) for d in per_point], dtype=np.float64) for k in keys}
