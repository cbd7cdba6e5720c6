"""Table formats: CSV in RAS mm, and the voxel-index tables of Learn2Reg, DIR-Lab and DIR-QA.

Voxel-index files are converted through the image geometry they refer to,
passed as ``reference`` (a ``Volume``, a ``Grid`` or a 4x4 IJK-to-RAS
matrix); DIR-Lab files may instead use the published spacing of their case.
Nothing guesses a geometry: a format that needs one and gets none is an error.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ...errors import InputError, LandmarkFormatError, opt
from ..points import PointSet, format_number, reference_matrix
from ._common import (
    atomic_write,
    numeric_rows,
    read_text,
    require_defined,
    split_csv_or_ws,
    split_ws,
)

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


_COORD_HEADERS = (("x", "y", "z"), ("r", "a", "s"))


def read_csv(path) -> PointSet:
    """CSV in RAS mm with a header: ``label,x,y,z`` (or ``r,a,s``) plus value columns.

    ``label``, ``description`` and ``locked`` are optional columns; every other
    column is a per-point number (an empty cell is NaN).
    """
    path = Path(path)
    rows = _csv_rows(path, read_text(path))
    head_line, header = rows[0]
    names, coords = _csv_header(path, head_line, header)
    special = set(coords) | {"label", "description", "locked"}
    value_cols = [(h, j) for j, h in enumerate(names) if h not in special]
    pts: list[list[float]] = []
    labels: list[str] = []
    descs: list[str] = []
    locked: list[bool] = []
    vals: dict[str, list[float]] = {h: [] for h, _ in value_cols}
    for lineno, row in rows[1:]:
        pt, label, desc, lock, row_vals = _csv_point(path, lineno, row, names, coords, value_cols, len(pts) + 1)
        pts.append(pt)
        labels.append(label)
        descs.append(desc)
        locked.append(lock)
        for h, v in row_vals.items():
            vals[h].append(v)
    return PointSet(
        np.asarray(pts).reshape(-1, 3),
        labels,
        vals,
        descs,
        locked,  # type: ignore[arg-type]  # a list of bools; PointSet.__post_init__ makes it an array
        name=path.name,
    )


def _csv_rows(path: Path, text: str) -> list[tuple[int, list[str]]]:
    """The (line number, cells) rows that hold data, blank and ``#`` comment rows left out; the first
    is the header, so a file with none is an error here."""
    rows = [
        (n, r)
        for n, r in enumerate(csv.reader(io.StringIO(text)), start=1)
        if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")
    ]
    if not rows:
        raise LandmarkFormatError(f"{path}: no header row 'label,x,y,z' (only comments)")
    return rows


def _csv_header(path: Path, head_line: int, header: list[str]) -> tuple[list[str], tuple[str, str, str]]:
    """The lower-cased column names and the coordinate columns used (``x,y,z`` or ``r,a,s``); a header
    that is missing, repeats a column or lacks coordinates is an error naming its line."""
    names = [h.strip().lower() for h in header]
    if all(_is_number(h) for h in names):
        raise LandmarkFormatError(
            f"{path} line {head_line}: no header row; a landmark CSV starts with 'label,x,y,z' (RAS mm). "
            f"For Learn2Reg keypoint files (voxel indices, no header) use the format learn2reg ({opt('points_format', 'learn2reg')}): voxel indices of the fixed volume"
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
    return names, coords


def _csv_point(
    path: Path,
    lineno: int,
    row: list[str],
    names: list[str],
    coords: tuple[str, str, str],
    value_cols: list[tuple[str, int]],
    number: int,
) -> tuple[list[float], str, str, bool, dict[str, float]]:
    """One data row as (position, label, description, locked, values); ``number`` (1-based) names a
    point without a label. Errors are checked in the row's order and name its line."""
    if len(row) != len(names):
        raise LandmarkFormatError(
            f"{path} line {lineno}: expected {len(names)} columns (as in the header), got {len(row)}"
        )
    ci = [names.index(c) for c in coords]
    try:
        pt = [float(row[j]) for j in ci]
    except ValueError:
        shown = ",".join(row[j] for j in ci)
        raise LandmarkFormatError(
            f"{path} line {lineno}: expected 3 numbers for {','.join(coords)}, got {shown!r}"
        ) from None
    label = row[names.index("label")].strip() if "label" in names else f"F-{number}"
    if not np.all(np.isfinite(pt)):
        shown = ",".join(row[j].strip() for j in ci)
        raise LandmarkFormatError(
            f"{path} line {lineno}: point {label!r} has no finite position ({shown}); give it coordinates "
            "or remove its row (a .mrk.json list can hold points that are not placed)"
        )
    desc = row[names.index("description")].strip() if "description" in names else ""
    lock = row[names.index("locked")].strip().lower() in ("1", "true", "yes") if "locked" in names else False
    values: dict[str, float] = {}
    for h, j in value_cols:
        cell = row[j].strip()
        try:
            values[h] = float(cell) if cell else np.nan
        except ValueError:
            raise LandmarkFormatError(f"{path} line {lineno}: column {h!r} must be a number, got {cell!r}") from None
    return pt, label, desc, lock, values


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
    # set by PointSet.__post_init__
    assert ps.labels is not None and ps.descriptions is not None and ps.locked is not None
    with_desc, with_lock = any(ps.descriptions), bool(np.any(ps.locked))
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["label", "x", "y", "z", *ps.values] + ["description"] * with_desc + ["locked"] * with_lock)
    for i in range(len(ps)):
        row = [
            ps.labels[i],
            *(format_number(c) for c in ps.points[i]),
            *(format_number(v[i]) for v in ps.values.values()),
        ]
        row += [ps.descriptions[i]] * with_desc + (["true" if ps.locked[i] else "false"] * with_lock)
        w.writerow(row)
    return atomic_write(path, out.getvalue())


def need_reference(reference, path: Path, fmt: str, what: str) -> np.ndarray:
    if reference is None:
        raise LandmarkFormatError(
            f"{path}: format {fmt} stores {what}; pass reference=<the image they index> "
            "(a Volume, a Grid or its 4x4 IJK-to-RAS matrix)"
        )
    return reference_matrix(reference)


def read_learn2reg(path, reference=None) -> PointSet:
    """Learn2Reg keypoint CSV: rows ``i,j,k`` of 0-based voxel indices of ``reference``, no header."""
    path = Path(path)
    text = read_text(path)
    m = need_reference(reference, path, "learn2reg", "0-based voxel indices")
    ijk, _ = numeric_rows(text, path, split_csv_or_ws)
    return PointSet.from_voxel(ijk, m, name=path.name)


def write_learn2reg(ps: PointSet, path, reference=None) -> Path:
    """Learn2Reg keypoint CSV: 0-based continuous voxel indices of ``reference``."""
    path = Path(path)
    m = need_reference(reference, path, "learn2reg", "0-based voxel indices")
    require_defined(ps, path, "learn2reg")
    ijk = ps.to_voxel(m)
    return atomic_write(path, "".join(",".join(format_number(c) for c in row) + "\n" for row in ijk))


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
        ijk_to_ras = reference_matrix(reference)
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
    text = read_text(path)
    m = _dirlab_matrix(path, "dirlab", reference, spacing, case)
    idx, _ = numeric_rows(text, path, split_ws)
    return PointSet.from_voxel(idx, m, name=path.name)


def write_dirlab(ps: PointSet, path, reference=None, spacing=None, case=None) -> Path:
    """DIR-Lab text: tab-separated 1-based voxel indices (the inverse of :func:`read_dirlab`)."""
    path = Path(path)
    m = _dirlab_matrix(path, "dirlab", reference, spacing, case)
    require_defined(ps, path, "dirlab")
    idx = ps.to_voxel(m)
    return atomic_write(path, "".join("\t".join(format_number(c) for c in row) + "\n" for row in idx))


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
