"""elastix point files (``point`` LPS mm or ``index``) and transformix ``outputpoints.txt``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...errors import InputError, LandmarkFormatError
from ..geometry import LPS_FLIP
from ..points import PointSet, format_number
from ._common import atomic_write, numbers, read_text, require_defined
from .tables import need_reference


def read_elastix(path, reference=None) -> PointSet:
    """elastix point file: ``point`` (physical LPS mm) or ``index`` (0-based voxel indices of ``reference``).

    Line 1 is ``point`` or ``index`` (elastix assumes ``index`` when it is
    left out), the next line the number of points, then one point per line.
    A transformix ``outputpoints.txt`` is passed on to :func:`read_elastix_output`.
    """
    path = Path(path)
    text = read_text(path)
    lines = [(n, s.strip()) for n, s in enumerate(text.splitlines(), start=1) if s.strip()]
    if lines[0][1].startswith("Point") and "=" in lines[0][1]:
        return read_elastix_output(path, reference=reference)
    kind = lines[0][1].lower()
    if kind in ("point", "index"):
        lines = lines[1:]
    elif re.fullmatch(r"\d+", kind):
        kind = "index"
    else:
        raise LandmarkFormatError(
            f"{path} line {lines[0][0]}: expected 'point' or 'index' (an elastix point file), got {lines[0][1]!r}"
        )
    if not lines:
        raise LandmarkFormatError(f"{path}: no point count after {kind!r}")
    count_line, count_text = lines[0]
    if not re.fullmatch(r"\d+", count_text):
        raise LandmarkFormatError(f"{path} line {count_line}: expected the number of points, got {count_text!r}")
    rows: list | np.ndarray = [numbers(s.split(), path, n, line=s) for n, s in lines[1:]]
    if len(rows) != int(count_text):
        raise LandmarkFormatError(
            f"{path} line {count_line}: says {int(count_text)} points but the file has {len(rows)} point rows"
        )
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    if kind == "point":
        return PointSet(rows * LPS_FLIP, name=path.name)
    m = need_reference(reference, path, "elastix 'index'", "0-based voxel indices")
    return PointSet.from_voxel(rows, m, name=path.name)


def write_elastix(ps: PointSet, path, reference=None, kind: str = "point") -> Path:
    """elastix point file: ``kind="point"`` (LPS mm) or ``"index"`` (voxel indices of ``reference``)."""
    path = Path(path)
    if kind not in ("point", "index"):
        raise InputError(f"{path}: elastix kind must be 'point' or 'index', got {kind!r}")
    require_defined(ps, path, "elastix")
    if kind == "point":
        rows = ps.points * LPS_FLIP + 0.0
    else:
        rows = ps.to_voxel(need_reference(reference, path, "elastix 'index'", "0-based voxel indices"))
    body = "".join(" ".join(format_number(c) for c in row) + "\n" for row in rows)
    return atomic_write(path, f"{kind}\n{len(ps)}\n{body}")


ELASTIX_OUTPUT_FIELDS = ("OutputPoint", "InputPoint", "InputIndex", "OutputIndexFixed", "OutputIndexMoving")
_FIELD_RE = re.compile(r"(\w+)\s*=\s*\[([^\]]*)\]")


def read_elastix_output(path, field: str = "OutputPoint", reference=None) -> PointSet:
    """transformix ``outputpoints.txt``: one ``Point n ; Name = [ ... ] ; ...`` line per point.

    ``OutputPoint``/``InputPoint`` are LPS mm; the ``*Index*`` fields are
    voxel indices and need the ``reference`` they index (the fixed image for
    ``InputIndex``/``OutputIndexFixed``, the moving one for ``OutputIndexMoving``).
    ``Deformation`` (in LPS) is kept as values ``deformation_r/_a/_s`` in RAS.
    """
    path = Path(path)
    if field not in ELASTIX_OUTPUT_FIELDS:
        raise InputError(f"{path}: field must be one of {', '.join(ELASTIX_OUTPUT_FIELDS)}, got {field!r}")
    is_index = "Index" in field
    m = need_reference(reference, path, f"elastix-output field {field!r}", "voxel indices") if is_index else None
    rows: list | np.ndarray
    rows, deform = [], []
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        found = dict(_FIELD_RE.findall(line))
        if field not in found:
            raise LandmarkFormatError(f"{path} line {lineno}: no '{field} = [ ... ]' in {line.strip()[:80]!r}")
        rows.append(numbers(found[field].split(), path, lineno, line=found[field]))
        if "Deformation" in found:
            deform.append(numbers(found["Deformation"].split(), path, lineno, line=found["Deformation"]))
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    values = {}
    if deform and len(deform) == len(rows):
        d = np.asarray(deform) * LPS_FLIP + 0.0
        values = {"deformation_r": d[:, 0], "deformation_a": d[:, 1], "deformation_s": d[:, 2]}
    if is_index:
        return PointSet.from_voxel(rows, m, values=values, name=path.name)
    return PointSet(rows * LPS_FLIP, values=values, name=path.name)
