"""Landmark point sets and the file formats they come in.

Every reader returns a :class:`PointSet` in MedDIFT's one world space, RAS
millimetres (see :mod:`MedDIFTLib.geometry`); every writer takes one. Files
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
so a crash leaves the old file or the complete new one.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import write_text_atomic
from .errors import InputError, LandmarkFormatError
from .geometry import LPS_TO_RAS, Grid, Volume, apply_affine, as_points

_FLIP = np.diag(LPS_TO_RAS)[:3]  # (-1, -1, 1): LPS <-> RAS on points and vectors

MRK_JSON_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)
FCSV_COLUMNS = ("id", "x", "y", "z", "ow", "ox", "oy", "oz", "vis", "sel", "lock", "label", "desc", "associatedNodeID")

# Published DIR-Lab scan geometry (spacing in mm along x, y, z; shape in voxels).
DIRLAB_4DCT_GEOMETRY = {
    f"case{c}": {"spacing": (s, s, 2.5), "shape": shape}
    for c, s, shape in [
        (1, 0.97, (256, 256, 94)),
        (2, 1.16, (256, 256, 112)),
        (3, 1.15, (256, 256, 104)),
        (4, 1.13, (256, 256, 99)),
        (5, 1.10, (256, 256, 106)),
        (6, 0.97, (512, 512, 128)),
        (7, 0.97, (512, 512, 136)),
        (8, 0.97, (512, 512, 128)),
        (9, 0.97, (512, 512, 128)),
        (10, 0.97, (512, 512, 120)),
    ]
}
"""DIR-Lab 4DCT cases 1-10: in-plane spacing, 2.5 mm slices, image shape."""

DIRLAB_COPD_GEOMETRY = {
    f"copd{c}": {"spacing": (s, s, 2.5)}
    for c, s in enumerate([0.625, 0.645, 0.652, 0.590, 0.647, 0.633, 0.625, 0.586, 0.664, 0.742], start=1)
}
"""DIR-Lab COPDgene cases 1-10: in-plane spacing with 2.5 mm slices (no shape: not in our sources)."""

DIRQA_VARIABLES = ("landmark_EE", "landmark_dirlab_EI", "landmark_new_EI")
"""Point variables of the DIR-QA ``caseN.mat`` files (``landmark_changed_idx`` is a 0/1 flag per point)."""


# ---------------------------------------------------------------------------
# the point-set type
# ---------------------------------------------------------------------------

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

    def subset(self, indices) -> "PointSet":
        """The points at ``indices`` (integer indices, a boolean mask or a slice), in that order."""
        idx = np.arange(len(self))[indices]
        idx = np.atleast_1d(idx)
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
        for i, s in enumerate(self.labels):
            seen.setdefault(s, []).append(i)
        return {s: idx for s, idx in seen.items() if len(idx) > 1}

    def to_voxel(self, reference) -> np.ndarray:
        """Continuous voxel indices (N, 3) of the points in ``reference`` (Volume, Grid or 4x4 IJK-to-RAS)."""
        return apply_affine(np.linalg.inv(_ijk_to_ras(reference)), self.points)

    @classmethod
    def from_voxel(cls, ijk, reference, labels=None, values=None, descriptions=None, name: str = "") -> "PointSet":
        """Points given as continuous voxel indices of ``reference``, converted to RAS mm."""
        ijk = np.asarray(ijk, dtype=np.float64)
        ras = ijk.reshape(0, 3) if ijk.size == 0 else apply_affine(_ijk_to_ras(reference), ijk)
        return cls(ras, labels, values or {}, descriptions, name=name)


def _ijk_to_ras(reference) -> np.ndarray:
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
# small text helpers
# ---------------------------------------------------------------------------

def _num(v: float) -> str:
    """Shortest text that reads back to the same float (integers without '.0')."""
    v = float(v)
    if math.isfinite(v) and v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def _read_text(path: Path) -> str:
    if not path.exists():
        raise LandmarkFormatError(f"{path}: no such file")
    if path.is_dir():
        raise LandmarkFormatError(f"{path}: is a folder, not a landmark file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LandmarkFormatError(f"{path}: not a text file ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise LandmarkFormatError(f"{path}: file is empty")
    return text


def _numbers(tokens, path: Path, lineno: int, count: int = 3, line: str | None = None) -> list:
    tokens = [t.strip() for t in tokens]
    shown = line.strip() if line is not None else ",".join(tokens)
    if len(tokens) != count:
        raise LandmarkFormatError(f"{path} line {lineno}: expected {count} numbers, got {len(tokens)}: {shown!r}")
    try:
        return [float(t) for t in tokens]
    except ValueError:
        raise LandmarkFormatError(f"{path} line {lineno}: expected {count} numbers, got {shown!r}") from None


def _numeric_rows(text: str, path: Path, split) -> tuple[np.ndarray, list]:
    """Rows of three numbers; blank lines and '#' comments skipped. Returns (rows, line numbers)."""
    rows, linenos = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        rows.append(_numbers(split(line), path, lineno, line=line))
        linenos.append(lineno)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3), linenos


def _split_ws(line: str) -> list:
    return line.split()


def _split_csv_or_ws(line: str) -> list:
    return [t for t in re.split(r"[,;\s]+", line.strip()) if t != ""]


def _atomic_write(path: Path, text: str) -> Path:
    return write_text_atomic(path, text)


_VALUE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\-]*)\s*=\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf)$", re.I)


def _split_description(desc: str) -> tuple[str, dict]:
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


def _join_description(ps: PointSet, i: int) -> str:
    parts = [ps.descriptions[i]] if ps.descriptions[i] else []
    parts += [f"{k}={_num(v[i])}" for k, v in ps.values.items() if not math.isnan(v[i])]
    return "; ".join(parts)


def _values_from_dicts(per_point: list) -> dict:
    keys: list = []
    for d in per_point:
        keys += [k for k in d if k not in keys]
    return {k: np.array([d.get(k, np.nan) for d in per_point], dtype=np.float64) for k in keys}


def _require_defined(ps: PointSet, path: Path, fmt: str) -> None:
    if not np.all(ps.defined):
        bad = np.flatnonzero(~ps.defined)
        raise InputError(
            f"{path}: format {fmt} cannot store points without a position; "
            f"{len(bad)} are undefined: {', '.join(ps.labels[i] for i in bad[:10])}"
        )


# ---------------------------------------------------------------------------
# CSV (RAS mm, with header)
# ---------------------------------------------------------------------------

_COORD_HEADERS = (("x", "y", "z"), ("r", "a", "s"))


def read_csv(path) -> PointSet:
    """CSV in RAS mm with a header: ``label,x,y,z`` (or ``r,a,s``) plus value columns.

    ``label``, ``description`` and ``locked`` are optional columns; every other
    column is a per-point number (an empty cell is NaN).
    """
    path = Path(path)
    text = _read_text(path)
    rows = [(n, r) for n, r in enumerate(csv.reader(io.StringIO(text)), start=1)
            if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if not rows:
        raise LandmarkFormatError(f"{path}: no header row 'label,x,y,z' (only comments)")
    head_line, header = rows[0]
    names = [h.strip().lower() for h in header]
    if all(_is_number(h) for h in names):
        raise LandmarkFormatError(
            f"{path} line {head_line}: no header row; a landmark CSV starts with 'label,x,y,z' (RAS mm). "
            "For Learn2Reg keypoint files (voxel indices, no header) use format='learn2reg' with reference=<image>"
        )
    dup = sorted({h for h in names if names.count(h) > 1})
    if dup:
        raise LandmarkFormatError(f"{path} line {head_line}: column(s) {', '.join(dup)} appear more than once")
    coords = next((c for c in _COORD_HEADERS if all(h in names for h in c)), None)
    if coords is None:
        missing = [h for h in "xyz" if h not in names]
        raise LandmarkFormatError(
            f"{path} line {head_line}: header has no column(s) {', '.join(repr(m) for m in missing)}; "
            f"expected label,x,y,z (RAS mm) plus optional value columns, got {','.join(header)!r}"
        )
    ci = [names.index(c) for c in coords]
    special = set(coords) | {"label", "description", "locked"}
    value_cols = [(h, j) for j, h in enumerate(names) if h not in special]
    pts, labels, descs, locked, vals = [], [], [], [], {h: [] for h, _ in value_cols}
    for lineno, row in rows[1:]:
        if len(row) != len(names):
            raise LandmarkFormatError(
                f"{path} line {lineno}: expected {len(names)} columns (as in the header), got {len(row)}"
            )
        try:
            pts.append([float(row[j]) for j in ci])
        except ValueError:
            shown = ",".join(row[j] for j in ci)
            raise LandmarkFormatError(f"{path} line {lineno}: expected 3 numbers for {','.join(coords)}, got {shown!r}") from None
        labels.append(row[names.index("label")].strip() if "label" in names else f"F-{len(pts)}")
        descs.append(row[names.index("description")].strip() if "description" in names else "")
        locked.append(row[names.index("locked")].strip().lower() in ("1", "true", "yes") if "locked" in names else False)
        for h, j in value_cols:
            cell = row[j].strip()
            try:
                vals[h].append(float(cell) if cell else np.nan)
            except ValueError:
                raise LandmarkFormatError(f"{path} line {lineno}: column {h!r} must be a number, got {cell!r}") from None
    return PointSet(np.asarray(pts).reshape(-1, 3), labels, vals, descs, locked, name=path.name)


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def write_csv(ps: PointSet, path) -> Path:
    """CSV in RAS mm: ``label,x,y,z``, then value columns, then description/locked when used."""
    path = Path(path)
    bad = [k for k in ps.values if k.lower() in ("label", "x", "y", "z", "r", "a", "s", "description", "locked")]
    if bad:
        raise InputError(f"{path}: value name(s) {bad} clash with CSV column names")
    with_desc, with_lock = any(ps.descriptions), bool(np.any(ps.locked))
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["label", "x", "y", "z", *ps.values] + ["description"] * with_desc + ["locked"] * with_lock)
    for i in range(len(ps)):
        row = [ps.labels[i], *(_num(c) for c in ps.points[i]), *(_num(v[i]) for v in ps.values.values())]
        row += [ps.descriptions[i]] * with_desc + (["true" if ps.locked[i] else "false"] * with_lock)
        w.writerow(row)
    return _atomic_write(path, out.getvalue())


# ---------------------------------------------------------------------------
# Slicer markups: .mrk.json and legacy .fcsv
# ---------------------------------------------------------------------------

def read_mrk_json(path) -> PointSet:
    """Slicer markups point list (``.mrk.json``), in LPS or RAS mm.

    Per-point values are read back from ``name=number`` parts of each control
    point's description. Points whose ``positionStatus`` is not "defined" come
    back as NaN rows.
    """
    path = Path(path)
    text = _read_text(path)
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
            ok = isinstance(pos, list) and len(pos) == 3 and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in pos)
            if not ok:
                raise LandmarkFormatError(
                    f"{path}: control point {i + 1} ({label!r}): position must be 3 numbers, got {pos!r}"
                )
            pts.append([float(c) * scale for c in pos])
        desc, vals = _split_description(cp.get("description", ""))
        labels.append(label)
        descs.append(desc)
        locked.append(bool(cp.get("locked", False)))
        per_point.append(vals)
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 3)
    if system == "LPS":
        pts = pts * _FLIP
    return PointSet(pts, labels, _values_from_dicts(per_point), descs, locked, name=path.name)


def write_mrk_json(ps: PointSet, path, coordinate_system: str = "LPS") -> Path:
    """Slicer markups point list; LPS by default, as Slicer 5 writes it."""
    path = Path(path)
    system = _coordinate_system(coordinate_system, path)
    flip = _FLIP if system == "LPS" else np.ones(3)
    orientation = [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0] if system == "LPS" else [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
    cps = []
    for i in range(len(ps)):
        defined = bool(ps.defined[i])
        pos = (ps.points[i] * flip + 0.0).tolist() if defined else [0.0, 0.0, 0.0]
        cps.append({
            "id": str(i + 1), "label": ps.labels[i], "description": _join_description(ps, i),
            "associatedNodeID": "", "position": pos, "orientation": [float(o) for o in orientation],
            "selected": True, "locked": bool(ps.locked[i]), "visibility": True,
            "positionStatus": "defined" if defined else "undefined",
        })
    doc = {
        "@schema": MRK_JSON_SCHEMA,
        "markups": [{
            "type": "Fiducial", "coordinateSystem": system, "coordinateUnits": "mm", "locked": False,
            "fixedNumberOfControlPoints": False, "labelFormat": "%N-%d", "lastUsedControlPointNumber": len(ps),
            "controlPoints": cps,
            "display": {"visibility": True, "opacity": 1.0, "color": [0.4, 1.0, 1.0],
                        "selectedColor": [1.0, 0.5, 0.5], "pointLabelsVisibility": True,
                        "textScale": 3.0, "glyphType": "Sphere3D", "glyphScale": 3.0},
        }],
    }
    return _atomic_write(path, json.dumps(doc, indent=4) + "\n")


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
    text = _read_text(path)
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
                f"{path} line {lineno}: expected at least {max(cx) + 1} columns ({','.join(columns[:max(cx) + 1])}), got {len(row)}"
            )
        pts.append(_numbers([row[j] for j in cx], path, lineno))

        def col(name, default=""):
            j = columns.index(name) if name in columns else -1
            return row[j] if 0 <= j < len(row) else default

        labels.append(col("label", f"F-{len(pts)}"))
        desc, vals = _split_description(col("desc"))
        descs.append(desc)
        per_point.append(vals)
        locked.append(col("lock", "0").strip() == "1")
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 3)
    if system == "LPS":
        pts = pts * _FLIP
    return PointSet(pts, labels, _values_from_dicts(per_point), descs, locked, name=path.name)


def write_fcsv(ps: PointSet, path, coordinate_system: str = "LPS") -> Path:
    """Slicer legacy ``.fcsv`` (version 4.11 layout); LPS by default, as Slicer writes it."""
    path = Path(path)
    system = _coordinate_system(coordinate_system, path)
    flip = _FLIP if system == "LPS" else np.ones(3)
    out = io.StringIO()
    out.write(f"# Markups fiducial file version = 4.11\n# CoordinateSystem = {system}\n")
    out.write("# columns = " + ",".join(FCSV_COLUMNS) + "\n")
    w = csv.writer(out, lineterminator="\n")
    for i in range(len(ps)):
        xyz = [_num(c) for c in ps.points[i] * flip + 0.0]
        w.writerow([str(i + 1), *xyz, 0, 0, 0, 1, 1, 1, int(ps.locked[i]), ps.labels[i], _join_description(ps, i), ""])
    return _atomic_write(path, out.getvalue())


# ---------------------------------------------------------------------------
# voxel-index formats: Learn2Reg, DIR-Lab, DIR-QA
# ---------------------------------------------------------------------------

def _need_reference(reference, path: Path, fmt: str, what: str) -> np.ndarray:
    if reference is None:
        raise LandmarkFormatError(
            f"{path}: format {fmt} stores {what}; pass reference=<the image they index> "
            "(a Volume, a Grid or its 4x4 IJK-to-RAS matrix)"
        )
    return _ijk_to_ras(reference)


def read_learn2reg(path, reference=None) -> PointSet:
    """Learn2Reg keypoint CSV: rows ``i,j,k`` of 0-based voxel indices of ``reference``, no header."""
    path = Path(path)
    text = _read_text(path)
    m = _need_reference(reference, path, "learn2reg", "0-based voxel indices")
    ijk, _ = _numeric_rows(text, path, _split_csv_or_ws)
    return PointSet.from_voxel(ijk, m, name=path.name)


def write_learn2reg(ps: PointSet, path, reference=None) -> Path:
    """Learn2Reg keypoint CSV: 0-based continuous voxel indices of ``reference``."""
    path = Path(path)
    m = _need_reference(reference, path, "learn2reg", "0-based voxel indices")
    _require_defined(ps, path, "learn2reg")
    ijk = ps.to_voxel(m)
    return _atomic_write(path, "".join(",".join(_num(c) for c in row) + "\n" for row in ijk))


def dirlab_geometry(case: str) -> dict:
    """Published geometry of a DIR-Lab case: ``"case1"``..``"case10"`` (4DCT) or ``"copd1"``..``"copd10"``."""
    key = str(case).strip().lower()
    table = {**DIRLAB_4DCT_GEOMETRY, **DIRLAB_COPD_GEOMETRY}
    if key not in table:
        raise InputError(f"unknown DIR-Lab case {case!r}; use one of case1..case10 or copd1..copd10")
    return table[key]


def _dirlab_matrix(path: Path, fmt: str, reference, spacing, case) -> np.ndarray:
    """The 4x4 matrix from 1-based indices to RAS mm (a shift by -1, then the geometry)."""
    given = [n for n, v in (("reference", reference), ("spacing", spacing), ("case", case)) if v is not None]
    if not given:
        raise LandmarkFormatError(
            f"{path}: format {fmt} stores 1-based voxel indices; pass reference=<image>, "
            "spacing=(sx, sy, sz) or case='case1'..'case10' / 'copd1'..'copd10'"
        )
    if len(given) > 1:
        raise InputError(f"{path}: pass only one of reference, spacing or case (got {', '.join(given)})")
    if reference is not None:
        ijk_to_ras = _ijk_to_ras(reference)
    else:
        sp = np.asarray(dirlab_geometry(case)["spacing"] if case is not None else spacing, dtype=np.float64).reshape(-1)
        if sp.shape != (3,) or np.any(sp <= 0) or not np.all(np.isfinite(sp)):
            raise InputError(f"{path}: spacing must be 3 positive numbers, got {spacing!r}")
        ijk_to_ras = np.diag([*sp, 1.0])
    shift = np.eye(4)
    shift[:3, 3] = -1.0
    return ijk_to_ras @ shift


def read_dirlab(path, reference=None, spacing=None, case=None) -> PointSet:
    """DIR-Lab 4DCT / COPD landmark text: rows ``x y z`` of 1-based voxel indices (tabs or spaces).

    With ``reference`` (the image the indices belong to) the points go
    through its IJK-to-RAS matrix after ``index - 1``. With only ``spacing``
    (or ``case``, which looks it up in the published tables) the result is
    DIR-Lab's own millimetre convention, ``(index - 1) * spacing``: a plain
    grid at origin 0 with identity directions. That frame is not anatomical
    RAS, but distances in it are the ones the benchmark's TRE is defined on.
    """
    path = Path(path)
    text = _read_text(path)
    m = _dirlab_matrix(path, "dirlab", reference, spacing, case)
    idx, _ = _numeric_rows(text, path, _split_ws)
    return PointSet.from_voxel(idx, m, name=path.name)


def write_dirlab(ps: PointSet, path, reference=None, spacing=None, case=None) -> Path:
    """DIR-Lab text: tab-separated 1-based voxel indices (the inverse of :func:`read_dirlab`)."""
    path = Path(path)
    m = _dirlab_matrix(path, "dirlab", reference, spacing, case)
    _require_defined(ps, path, "dirlab")
    idx = ps.to_voxel(m)
    return _atomic_write(path, "".join("\t".join(_num(c) for c in row) + "\n" for row in idx))


def read_dirqa_mat(path, variable=None, reference=None, spacing=None, case=None, swap_xy: bool = True) -> PointSet:
    """DIR-Lab 4DCT landmarks from the DIR-QA ``caseN.mat`` files (deshanyang/DIR-QA).

    ``variable`` is one of ``landmark_EE`` (expiration, T50),
    ``landmark_dirlab_EI`` (DIR-Lab's inspiration, T00) or ``landmark_new_EI``
    (Fu et al.'s corrected inspiration points; it gets a ``changed`` value of
    0/1 from ``landmark_changed_idx``). Indices are 1-based and converted as
    in :func:`read_dirlab`.

    Axis order: the columns are (y, x, z), MATLAB's (row, column, slice), so
    ``swap_xy=True`` (the default) swaps the first two. Evidence, from the ten
    files: (1) in every case column 1 spreads about twice as wide as column 0
    (case 1: std 64 vs 32 voxels, range 28-244 vs 56-190 of 256), and a
    thorax's lungs span left-right (x) wider than antero-posterior (y); in
    DIR-Lab's own COPD text files, which are x, y, z, the first column is the
    wider one (copd1: std 103 vs 72). (2) With ``(index - 1) * (s, s, 2.5)``
    the mean +- sd distance between ``landmark_EE`` and
    ``landmark_dirlab_EI`` reproduces DIR-Lab's published initial errors for
    all ten cases (case 1: 3.89 +- 2.78 mm ... case 10: 7.30 +- 6.34 mm),
    which confirms the third column is the slice index in voxel units
    (in-plane spacing is isotropic, so this check cannot tell x from y).

    Version 5 .mat files are read with scipy; v7.3 (HDF5) files need h5py.
    """
    path = Path(path)
    data = _load_mat(path)
    arrays = {k: np.asarray(v) for k, v in data.items() if not k.startswith("__")}
    candidates = [k for k, v in arrays.items() if v.ndim == 2 and v.shape[1] == 3]
    if variable is None:
        if len(candidates) != 1:
            raise LandmarkFormatError(
                f"{path}: holds {len(candidates)} point variables ({', '.join(candidates) or 'none'}); "
                "choose one with variable=..."
            )
        variable = candidates[0]
    if variable not in arrays:
        raise LandmarkFormatError(
            f"{path}: has no variable {variable!r}; it holds {', '.join(sorted(arrays)) or 'no variables'}"
        )
    arr = arrays[variable].astype(np.float64)  # the files hold uint8/uint16: never subtract in those
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise LandmarkFormatError(f"{path}: variable {variable!r} has shape {arr.shape}, not (N, 3) points")
    if swap_xy:
        arr = arr[:, [1, 0, 2]]
    m = _dirlab_matrix(path, "dirqa-mat", reference, spacing, case)
    values = {}
    flag = arrays.get("landmark_changed_idx")
    if variable == "landmark_new_EI" and flag is not None and flag.size == len(arr):
        values["changed"] = flag.reshape(-1).astype(np.float64)
    return PointSet.from_voxel(arr, m, values=values, name=f"{path.name}:{variable}")


def _load_mat(path: Path) -> dict:
    if not path.exists():
        raise LandmarkFormatError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise LandmarkFormatError(f"{path}: file is empty")
    with open(path, "rb") as f:
        head = f.read(128)
    if head[:19] == b"MATLAB 7.3 MAT-file" or head[:8] == b"\x89HDF\r\n\x1a\n":
        try:
            import h5py
        except ImportError:
            raise LandmarkFormatError(
                f"{path}: is a MATLAB v7.3 (HDF5) file; reading it needs the h5py package (pip install h5py)"
            ) from None
        try:
            with h5py.File(path, "r") as f:
                # MATLAB stores column-major: h5py sees each matrix transposed
                return {k: np.asarray(v).T for k, v in f.items() if isinstance(v, h5py.Dataset)}
        except OSError as exc:
            raise LandmarkFormatError(f"{path}: cannot read MATLAB v7.3 file ({exc})") from None
    from scipy.io import loadmat

    try:
        return loadmat(str(path))
    except Exception as exc:  # scipy raises ValueError/TypeError with its own text
        raise LandmarkFormatError(f"{path}: not a readable MATLAB .mat file ({exc})") from None


# ---------------------------------------------------------------------------
# elastix / transformix
# ---------------------------------------------------------------------------

def read_elastix(path, reference=None) -> PointSet:
    """elastix point file: ``point`` (physical LPS mm) or ``index`` (0-based voxel indices of ``reference``).

    Line 1 is ``point`` or ``index`` (elastix assumes ``index`` when it is
    left out), the next line the number of points, then one point per line.
    A transformix ``outputpoints.txt`` is passed on to :func:`read_elastix_output`.
    """
    path = Path(path)
    text = _read_text(path)
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
    rows = [_numbers(s.split(), path, n, line=s) for n, s in lines[1:]]
    if len(rows) != int(count_text):
        raise LandmarkFormatError(
            f"{path} line {count_line}: says {int(count_text)} points but the file has {len(rows)} point rows"
        )
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    if kind == "point":
        return PointSet(rows * _FLIP, name=path.name)
    m = _need_reference(reference, path, "elastix 'index'", "0-based voxel indices")
    return PointSet.from_voxel(rows, m, name=path.name)


def write_elastix(ps: PointSet, path, reference=None, kind: str = "point") -> Path:
    """elastix point file: ``kind="point"`` (LPS mm) or ``"index"`` (voxel indices of ``reference``)."""
    path = Path(path)
    if kind not in ("point", "index"):
        raise InputError(f"{path}: elastix kind must be 'point' or 'index', got {kind!r}")
    _require_defined(ps, path, "elastix")
    if kind == "point":
        rows = ps.points * _FLIP + 0.0
    else:
        rows = ps.to_voxel(_need_reference(reference, path, "elastix 'index'", "0-based voxel indices"))
    body = "".join(" ".join(_num(c) for c in row) + "\n" for row in rows)
    return _atomic_write(path, f"{kind}\n{len(ps)}\n{body}")


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
    m = _need_reference(reference, path, f"elastix-output field {field!r}", "voxel indices") if is_index else None
    rows, deform = [], []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        found = dict(_FIELD_RE.findall(line))
        if field not in found:
            raise LandmarkFormatError(f"{path} line {lineno}: no '{field} = [ ... ]' in {line.strip()[:80]!r}")
        rows.append(_numbers(found[field].split(), path, lineno, line=found[field]))
        if "Deformation" in found:
            deform.append(_numbers(found["Deformation"].split(), path, lineno, line=found["Deformation"]))
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    values = {}
    if deform and len(deform) == len(rows):
        d = np.asarray(deform) * _FLIP + 0.0
        values = {"deformation_r": d[:, 0], "deformation_a": d[:, 1], "deformation_s": d[:, 2]}
    if is_index:
        return PointSet.from_voxel(rows, m, values=values, name=path.name)
    return PointSet(rows * _FLIP, values=values, name=path.name)


# ---------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------

_READERS = {
    "csv": read_csv, "mrk.json": read_mrk_json, "fcsv": read_fcsv, "learn2reg": read_learn2reg,
    "dirlab": read_dirlab, "dirqa-mat": read_dirqa_mat, "elastix": read_elastix,
    "elastix-output": read_elastix_output,
}
_WRITERS = {
    "csv": write_csv, "mrk.json": write_mrk_json, "fcsv": write_fcsv, "learn2reg": write_learn2reg,
    "dirlab": write_dirlab, "elastix": write_elastix,
}
_ALIASES = {"json": "mrk.json", "mrk": "mrk.json", "mat": "dirqa-mat", "l2r": "learn2reg", "transformix": "elastix-output"}
READ_FORMATS = tuple(_READERS)
WRITE_FORMATS = tuple(_WRITERS)
_EXTENSIONS = ".csv (csv), .mrk.json/.json (mrk.json), .fcsv (fcsv), .mat (dirqa-mat), .txt (elastix or dirlab)"


def _format_of(path: Path, fmt, table: dict, sniff: bool) -> str:
    if fmt is not None:
        key = _ALIASES.get(str(fmt).lower(), str(fmt).lower())
        if key not in table:
            verb = "read" if table is _READERS else "write"
            raise LandmarkFormatError(
                f"{path}: cannot {verb} landmark format {fmt!r}; supported: {', '.join(table)}"
            )
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
        first = next((s.strip() for s in _read_text(path).splitlines() if s.strip()), "")
        if first.startswith("Point") and "=" in first:
            return "elastix-output"
        if first.lower() in ("point", "index") or re.fullmatch(r"\d+", first):
            return "elastix"
        return "dirlab"
    if ext == ".mat":
        raise LandmarkFormatError(f"{path}: DIR-QA .mat files are read-only here; write another format")
    if ext == ".txt":
        raise LandmarkFormatError(f"{path}: a .txt file can be elastix or dirlab; pass format='elastix' or format='dirlab'")
    supported = ", ".join(table)
    raise LandmarkFormatError(
        f"{path}: unknown landmark file extension {ext or '(none)'!r}; known: {_EXTENSIONS}. "
        f"Or pass format= one of: {supported}"
    )


def _call(func, fmt: str, path: Path, *args, **options):
    options = {k: v for k, v in options.items() if v is not None}
    accepted = set(inspect.signature(func).parameters)
    extra = sorted(set(options) - accepted)
    if extra:
        raise InputError(f"{path}: option(s) {', '.join(extra)} do not apply to landmark format {fmt!r}")
    return func(*args, **options)


def read_points(path, format=None, *, reference=None, spacing=None, case=None, variable=None,
                swap_xy=None, field=None) -> PointSet:
    """Read a landmark file into RAS mm; ``format`` defaults to what the extension says.

    ``reference`` (Volume, Grid or 4x4 IJK-to-RAS) is needed by voxel-index
    formats; ``spacing``/``case`` give DIR-Lab's own mm instead;
    ``variable``/``swap_xy`` choose a DIR-QA .mat array; ``field`` an
    elastix-output column. Options a format does not use are an error.
    """
    path = Path(path)
    fmt = _format_of(path, format, _READERS, sniff=True)
    return _call(_READERS[fmt], fmt, path, path, reference=reference, spacing=spacing, case=case,
                 variable=variable, swap_xy=swap_xy, field=field)


def write_points(pointset: PointSet, path, format=None, *, reference=None, spacing=None, case=None,
                 coordinate_system=None, kind=None) -> Path:
    """Write ``pointset`` atomically; ``format`` defaults to what the extension says.

    ``coordinate_system`` ("LPS" default, or "RAS") applies to Slicer files;
    ``kind`` ("point" default, or "index") to elastix files.
    """
    path = Path(path)
    if not isinstance(pointset, PointSet):
        raise InputError(f"{path}: write_points needs a PointSet, got {type(pointset).__name__}")
    fmt = _format_of(path, format, _WRITERS, sniff=False)
    return _call(_WRITERS[fmt], fmt, path, pointset, path, reference=reference, spacing=spacing, case=case,
                 coordinate_system=coordinate_system, kind=kind)
