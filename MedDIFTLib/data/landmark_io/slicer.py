"""Slicer markups files: ``.mrk.json`` and the legacy ``.fcsv``, in LPS or RAS mm.

Per-point values travel in each control point's description through the one
score codec (:func:`MedDIFTLib.data.points.describe` / ``parse_description``).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from ...errors import InputError, LandmarkFormatError
from ..geometry import LPS_FLIP
from ..points import (
    PointSet,
    format_number,
    parse_description,
    point_description,
    values_from_dicts,
)
from ._common import atomic_write, numbers, read_text

MRK_JSON_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)
FCSV_COLUMNS = ("id", "x", "y", "z", "ow", "ox", "oy", "oz", "vis", "sel", "lock", "label", "desc", "associatedNodeID")


def read_mrk_json(path) -> PointSet:
    """Slicer markups point list (``.mrk.json``), in LPS or RAS mm.

    Per-point values are read back from ``name=number`` parts of each control
    point's description. Points whose ``positionStatus`` is not "defined" come
    back as NaN rows.
    """
    path = Path(path)
    text = read_text(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LandmarkFormatError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("markups"), list):
        raise LandmarkFormatError(f"{path}: not a Slicer markups file (no 'markups' list at the top level)")
    lists = [m for m in doc["markups"] if isinstance(m, dict) and m.get("type") == "Fiducial"]
    if len(lists) != 1:
        types = sorted({str(m.get("type")) for m in doc["markups"] if isinstance(m, dict)})
        raise LandmarkFormatError(
            f"{path}: holds {len(lists)} point lists (markups of type 'Fiducial'); exactly one is needed"
            + (f" (found types: {', '.join(types)})" if types else "")
        )
    mk = lists[0]
    system = str(mk.get("coordinateSystem", "LPS")).upper()
    if system not in ("LPS", "RAS"):
        raise LandmarkFormatError(f"{path}: coordinateSystem {system!r} is neither 'LPS' nor 'RAS'")
    units = mk.get("coordinateUnits", "mm")
    units = units[0] if isinstance(units, list) and units else units
    scale = {"mm": 1.0, "um": 1e-3}.get(str(units))
    if scale is None:
        raise LandmarkFormatError(f"{path}: coordinateUnits {units!r} is neither 'mm' nor 'um'")
    pts, labels, descs, locked, per_point = [], [], [], [], []
    for i, cp in enumerate(mk.get("controlPoints") or []):
        label = str(cp.get("label", f"F-{i + 1}"))
        status = cp.get("positionStatus", "defined")
        pos = cp.get("position")
        if status != "defined":
            pts.append([np.nan] * 3)
        else:
            ok = (
                isinstance(pos, list)
                and len(pos) == 3
                and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in pos)
            )
            if not ok:
                raise LandmarkFormatError(
                    f"{path}: control point {i + 1} ({label!r}): position must be 3 numbers, got {pos!r}"
                )
            pts.append([float(c) * scale for c in pos])
        desc, vals = parse_description(cp.get("description", ""))
        labels.append(label)
        descs.append(desc)
        locked.append(bool(cp.get("locked", False)))
        per_point.append(vals)
    return _markups_pointset(pts, system, labels, per_point, descs, locked, path)


def _markups_pointset(pts, system: str, labels, per_point, descs, locked, path: Path) -> PointSet:
    """The rows read from a markups file as a PointSet in RAS, values decoded from the descriptions."""
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 3)
    if system == "LPS":
        pts = pts * LPS_FLIP
    return PointSet(pts, labels, values_from_dicts(per_point), descs, locked, name=path.name)


def write_mrk_json(ps: PointSet, path, coordinate_system: str = "LPS") -> Path:
    """Slicer markups point list; LPS by default, as Slicer 5 writes it."""
    path = Path(path)
    system = _coordinate_system(coordinate_system, path)
    flip = LPS_FLIP if system == "LPS" else np.ones(3)
    orientation = (
        [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0] if system == "LPS" else [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
    )
    cps = []
    assert ps.labels is not None and ps.locked is not None  # set by PointSet.__post_init__
    for i in range(len(ps)):
        defined = bool(ps.defined[i])
        pos = (ps.points[i] * flip + 0.0).tolist() if defined else [0.0, 0.0, 0.0]
        cps.append(
            {
                "id": str(i + 1),
                "label": ps.labels[i],
                "description": point_description(ps, i),
                "associatedNodeID": "",
                "position": pos,
                "orientation": [float(o) for o in orientation],
                "selected": True,
                "locked": bool(ps.locked[i]),
                "visibility": True,
                "positionStatus": "defined" if defined else "undefined",
            }
        )
    doc = {
        "@schema": MRK_JSON_SCHEMA,
        "markups": [
            {
                "type": "Fiducial",
                "coordinateSystem": system,
                "coordinateUnits": "mm",
                "locked": False,
                "fixedNumberOfControlPoints": False,
                "labelFormat": "%N-%d",
                "lastUsedControlPointNumber": len(ps),
                "controlPoints": cps,
                "display": {
                    "visibility": True,
                    "opacity": 1.0,
                    "color": [0.4, 1.0, 1.0],
                    "selectedColor": [1.0, 0.5, 0.5],
                    "pointLabelsVisibility": True,
                    "textScale": 3.0,
                    "glyphType": "Sphere3D",
                    "glyphScale": 3.0,
                },
            }
        ],
    }
    return atomic_write(path, json.dumps(doc, indent=4) + "\n")


def _coordinate_system(system, path: Path) -> str:
    s = str(system).upper()
    if s not in ("LPS", "RAS"):
        raise InputError(f"{path}: coordinate_system must be 'LPS' or 'RAS', got {system!r}")
    return s


def read_fcsv(path) -> PointSet:
    """Slicer legacy markups ``.fcsv`` (version 4.x), in LPS or RAS mm.

    ``# CoordinateSystem`` is ``LPS``/``RAS`` or the old numbers 0 (RAS) and
    1 (LPS); a file without the line is RAS, as Slicer's files before 4.11
    were. Columns follow the ``# columns =`` line when present; extra columns
    (Slicer 5 appends some) are ignored.
    """
    path = Path(path)
    text = read_text(path)
    system: str | None
    system, columns = "RAS", list(FCSV_COLUMNS)
    pts, labels, descs, locked, per_point = [], [], [], [], []
    lines = text.splitlines()
    for lineno, line in enumerate(lines, start=1):
        if line.startswith("#"):
            key, _, val = line[1:].partition("=")
            key, val = key.strip().lower(), val.strip()
            if key == "coordinatesystem":
                system = {"0": "RAS", "1": "LPS", "RAS": "RAS", "LPS": "LPS"}.get(val.upper())
                if system is None:
                    raise LandmarkFormatError(
                        f"{path} line {lineno}: CoordinateSystem {val!r} is not supported (LPS, RAS, 0 or 1)"
                    )
            elif key == "columns":
                columns = [c.strip() for c in val.split(",")]
                missing = [c for c in ("x", "y", "z") if c not in columns]
                if missing:
                    raise LandmarkFormatError(f"{path} line {lineno}: columns line has no {', '.join(missing)}")
            continue
        if not line.strip():
            continue
        row = next(csv.reader([line]))
        cx = [columns.index(c) for c in ("x", "y", "z")]
        if len(row) <= max(cx):
            raise LandmarkFormatError(
                f"{path} line {lineno}: expected at least {max(cx) + 1} columns ({','.join(columns[: max(cx) + 1])}), got {len(row)}"
            )
        pts.append(numbers([row[j] for j in cx], path, lineno))

        def col(name, default="", row=row, columns=columns):
            j = columns.index(name) if name in columns else -1
            return row[j] if 0 <= j < len(row) else default

        labels.append(col("label", f"F-{len(pts)}"))
        desc, vals = parse_description(col("desc"))
        descs.append(desc)
        per_point.append(vals)
        locked.append(col("lock", "0").strip() == "1")
    return _markups_pointset(pts, system, labels, per_point, descs, locked, path)


def write_fcsv(ps: PointSet, path, coordinate_system: str = "LPS") -> Path:
    """Slicer legacy ``.fcsv`` (version 4.11 layout); LPS by default, as Slicer writes it."""
    path = Path(path)
    system = _coordinate_system(coordinate_system, path)
    flip = LPS_FLIP if system == "LPS" else np.ones(3)
    out = io.StringIO()
    out.write(f"# Markups fiducial file version = 4.11\n# CoordinateSystem = {system}\n")
    out.write("# columns = " + ",".join(FCSV_COLUMNS) + "\n")
    w = csv.writer(out, lineterminator="\n")
    assert ps.labels is not None and ps.locked is not None  # set by PointSet.__post_init__
    for i in range(len(ps)):
        xyz = [format_number(c) for c in ps.points[i] * flip + 0.0]
        w.writerow([str(i + 1), *xyz, 0, 0, 0, 1, 1, 1, int(ps.locked[i]), ps.labels[i], point_description(ps, i), ""])
    return atomic_write(path, out.getvalue())
