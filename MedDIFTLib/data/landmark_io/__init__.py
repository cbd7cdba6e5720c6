"""Landmark files: every format MedDIFT reads or writes, picked by extension or by name.

Every reader returns a :class:`~MedDIFTLib.data.points.PointSet` in MedDIFT's one world space, RAS
millimetres (see :mod:`MedDIFTLib.data.geometry`); every writer takes one. Files
in LPS (ITK, elastix, Slicer's default) are flipped here, and files of voxel
indices (Learn2Reg, DIR-Lab, DIR-QA, elastix ``index``) are converted through
the image geometry they refer to, passed as ``reference`` (a ``Volume``, a
``Grid`` or a 4x4 IJK-to-RAS matrix). Nothing guesses a geometry: a format
that needs one and gets none is an error.

Formats (``read_points``/``write_points`` pick one from the extension, or
take ``format=``):

===============  ==========================  ===================================
format           extensions                  coordinates in the file
===============  ==========================  ===================================
csv              .csv                        RAS mm, header ``label,x,y,z,...``
mrk.json         .mrk.json, .json            Slicer markups, LPS or RAS mm
fcsv             .fcsv                       Slicer legacy markups, LPS or RAS mm
learn2reg        (explicit; .csv files)      0-based voxel indices i,j,k
dirlab           .txt (sniffed)              1-based voxel indices x,y,z
dirqa-mat        .mat (read only)            1-based voxel indices y,x,z
elastix          .txt (sniffed)              ``point`` LPS mm or ``index``
elastix-output   .txt (sniffed, read only)   transformix ``outputpoints.txt``
===============  ==========================  ===================================

Writes are atomic: a temporary file in the target folder renamed into place,
so a crash leaves the old file or the complete new one. The formats live by family:
:mod:`.slicer` (mrk.json, fcsv), :mod:`.tables` (csv, learn2reg, dirlab,
dirqa-mat), :mod:`.elastix`.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from ...errors import InputError, LandmarkFormatError, opt
from ..points import PointSet
from ._common import read_text, replacing
from .elastix import (
    ELASTIX_OUTPUT_FIELDS,
    read_elastix,
    read_elastix_output,
    write_elastix,
)
from .slicer import (
    FCSV_COLUMNS,
    MRK_JSON_SCHEMA,
    read_fcsv,
    read_mrk_json,
    write_fcsv,
    write_mrk_json,
)
from .tables import (
    DIRLAB_4DCT_GEOMETRY,
    DIRLAB_COPD_GEOMETRY,
    DIRQA_VARIABLES,
    dirlab_geometry,
    read_csv,
    read_dirlab,
    read_dirqa_mat,
    read_learn2reg,
    write_csv,
    write_dirlab,
    write_learn2reg,
)

_READERS = {
    "csv": read_csv,
    "mrk.json": read_mrk_json,
    "fcsv": read_fcsv,
    "learn2reg": read_learn2reg,
    "dirlab": read_dirlab,
    "dirqa-mat": read_dirqa_mat,
    "elastix": read_elastix,
    "elastix-output": read_elastix_output,
}
_WRITERS = {
    "csv": write_csv,
    "mrk.json": write_mrk_json,
    "fcsv": write_fcsv,
    "learn2reg": write_learn2reg,
    "dirlab": write_dirlab,
    "elastix": write_elastix,
}
_ALIASES = {
    "json": "mrk.json",
    "mrk": "mrk.json",
    "mat": "dirqa-mat",
    "l2r": "learn2reg",
    "transformix": "elastix-output",
}
READ_FORMATS = tuple(_READERS)
WRITE_FORMATS = tuple(_WRITERS)
_EXTENSIONS = ".csv (csv), .mrk.json/.json (mrk.json), .fcsv (fcsv), .mat (dirqa-mat), .txt (elastix or dirlab)"


def _format_of(path: Path, fmt, table: dict, sniff: bool) -> str:
    if fmt is not None:
        key = _ALIASES.get(str(fmt).lower(), str(fmt).lower())
        if key not in table:
            verb = "read" if table is _READERS else "write"
            raise LandmarkFormatError(f"{path}: cannot {verb} landmark format {fmt!r}; supported: {', '.join(table)}")
        return key
    name = path.name.lower()
    if name.endswith(".mrk.json") or name.endswith(".json"):
        return "mrk.json"
    ext = path.suffix.lower()
    if ext in (".csv", ".fcsv"):
        return ext[1:]
    if ext == ".mat" and sniff:
        return "dirqa-mat"
    if ext == ".txt" and sniff:
        first = next((s.strip() for s in read_text(path).splitlines() if s.strip()), "")
        if first.startswith("Point") and "=" in first:
            return "elastix-output"
        if first.lower() in ("point", "index") or re.fullmatch(r"\d+", first):
            return "elastix"
        return "dirlab"
    if ext == ".mat":
        raise LandmarkFormatError(f"{path}: DIR-QA .mat files are read-only here; write another format")
    if ext == ".txt":
        raise LandmarkFormatError(
            f"{path}: a .txt landmark file is written as elastix or dirlab, which are chosen "
            "by their content when read; name the output .csv, .mrk.json or .fcsv"
        )
    if table is _WRITERS:
        raise LandmarkFormatError(
            f"{path}: unknown landmark file extension {ext or '(none)'!r}; name the output "
            ".csv (RAS mm), .mrk.json (Slicer) or .fcsv (legacy Slicer)"
        )
    raise LandmarkFormatError(
        f"{path}: unknown landmark file extension {ext or '(none)'!r}; known: {_EXTENSIONS}, or choose the format "
        f"with {opt('points_format')} (one of: {', '.join(table)})"
    )


def check_points_path(path, writing: bool = True) -> str:
    """The landmark format a path's extension gives, or the error saying why there is none (before any work)."""
    return _format_of(Path(path), None, _WRITERS if writing else _READERS, sniff=not writing)


def _call(func, fmt: str, path: Path, *args, **options):
    options = {k: v for k, v in options.items() if v is not None}
    accepted = set(inspect.signature(func).parameters)
    if "reference" not in accepted:  # the image the points lie on: context, used by the formats that index it
        options.pop("reference", None)
    extra = sorted(set(options) - accepted)
    if extra:
        raise InputError(f"{path}: option(s) {', '.join(extra)} do not apply to landmark format {fmt!r}")
    return func(*args, **options)


def read_points(
    path, format=None, *, reference=None, spacing=None, case=None, variable=None, swap_xy=None, field=None
) -> PointSet:
    """Read a landmark file into RAS mm; ``format`` defaults to what the extension says.

    ``reference`` (Volume, Grid or 4x4 IJK-to-RAS) is needed by voxel-index
    formats; ``spacing``/``case`` give DIR-Lab's own mm instead;
    ``variable``/``swap_xy`` choose a DIR-QA .mat array; ``field`` an
    elastix-output column. Options a format does not use are an error.
    """
    path = Path(path)
    fmt = _format_of(path, format, _READERS, sniff=True)
    return _call(
        _READERS[fmt],
        fmt,
        path,
        path,
        reference=reference,
        spacing=spacing,
        case=case,
        variable=variable,
        swap_xy=swap_xy,
        field=field,
    )


def write_points(
    pointset: PointSet,
    path,
    format=None,
    *,
    reference=None,
    spacing=None,
    case=None,
    coordinate_system=None,
    kind=None,
    force: bool = True,
) -> Path:
    """Write ``pointset`` atomically; ``format`` defaults to what the extension says. ``force=False``:
    only if no file has the name (exclusive creation, see :mod:`MedDIFTLib.atomic`).

    ``coordinate_system`` ("LPS" default, or "RAS") applies to Slicer files;
    ``kind`` ("point" default, or "index") to elastix files.
    """
    path = Path(path)
    if not isinstance(pointset, PointSet):
        raise InputError(f"{path}: write_points needs a PointSet, got {type(pointset).__name__}")
    fmt = _format_of(path, format, _WRITERS, sniff=False)
    with replacing(force):
        return _call(
            _WRITERS[fmt],
            fmt,
            path,
            pointset,
            path,
            reference=reference,
            spacing=spacing,
            case=case,
            coordinate_system=coordinate_system,
            kind=kind,
        )


__all__ = [
    "read_points",
    "write_points",
    "READ_FORMATS",
    "WRITE_FORMATS",
    "read_csv",
    "write_csv",
    "read_mrk_json",
    "write_mrk_json",
    "read_fcsv",
    "write_fcsv",
    "read_learn2reg",
    "write_learn2reg",
    "read_dirlab",
    "write_dirlab",
    "read_dirqa_mat",
    "read_elastix",
    "write_elastix",
    "read_elastix_output",
    "dirlab_geometry",
    "DIRLAB_4DCT_GEOMETRY",
    "DIRLAB_COPD_GEOMETRY",
    "DIRQA_VARIABLES",
    "ELASTIX_OUTPUT_FIELDS",
    "FCSV_COLUMNS",
    "MRK_JSON_SCHEMA",
]
