"""The worksheet's files: a CSV of accepted lengths in, the response table out (CSV and a one-page HTML report).

Lengths CSV, one row per lesion and time point (time points in the order they first appear; the first is
the baseline)::

    lesion,kind,organ,location,lymph_node,timepoint,length_mm
    L1,target,liver,segment 7,no,baseline,32.0
    L1,target,liver,segment 7,no,month 3,25.5

``kind``: target or non-target; ``lymph_node``: yes/no; an empty ``length_mm``: not measured; ``0``: the
lesion has disappeared. The optional time points CSV gives what the reader assessed per study:
``timepoint,new_lesions,non_target`` (new_lesions: no, yes, equivocal; non_target: CR, non-CR/non-PD, PD,
NE, or empty where there are no non-target lesions).
"""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path

from ..errors import InputError
from ..outputs import OutputSet
from .recist import Kind, Lesion, NewLesions, Response, TimePoint, Worksheet

LENGTH_COLUMNS = ("lesion", "kind", "organ", "location", "lymph_node", "timepoint", "length_mm")
_YES = {"yes": True, "y": True, "true": True, "1": True, "no": False, "n": False, "false": False, "0": False, "": False}
_NON_TARGET = {"cr": Response.CR, "non-cr/non-pd": Response.NON_CR_NON_PD, "pd": Response.PD, "ne": Response.NE}


def _rows(path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}") from err
    return [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in rows]


def _choice(value: str, table: dict, what: str, where: str):
    key = value.strip().lower()
    if key not in table:
        raise InputError(f"{where}: {what} {value!r} is not one of {', '.join(k for k in table if k)}")
    return table[key]


def read_lengths(path, timepoints_path=None) -> tuple[list[Lesion], list[TimePoint], dict]:
    """Lesions, time points and accepted lengths from the CSV files described above."""
    rows = _rows(path)
    if not rows:
        raise InputError(f"{path}: no rows; expected the columns {', '.join(LENGTH_COLUMNS)}")
    absent = [c for c in ("lesion", "timepoint", "length_mm") if c not in rows[0]]
    if absent:
        raise InputError(f"{path}: missing column(s) {', '.join(absent)}; expected {', '.join(LENGTH_COLUMNS)}")
    lesions: dict[str, Lesion] = {}
    names: list[str] = []
    lengths: dict[tuple[str, str], float | None] = {}
    for n, row in enumerate(rows, start=2):
        where = f"{path}, line {n}"
        lesion = Lesion(
            row["lesion"],
            _choice(row.get("kind") or "target", {k.value: k for k in Kind}, "kind", where),
            row.get("organ", ""),
            row.get("location", ""),
            _choice(row.get("lymph_node", ""), _YES, "lymph_node", where),
        )
        if not lesion.label or not row["timepoint"]:
            raise InputError(f"{where}: a row needs a lesion label and a time point")
        if lesions.setdefault(lesion.label, lesion) != lesion:
            raise InputError(f"{where}: lesion {lesion.label} is described differently on another line")
        if row["timepoint"] not in names:
            names.append(row["timepoint"])
        lengths[(lesion.label, row["timepoint"])] = _length(row["length_mm"], where)
    return list(lesions.values()), _timepoints(names, timepoints_path), lengths


def _length(text: str, where: str) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{where}: length_mm {text!r} is not a number of millimetres") from None


def _timepoints(names: list[str], path) -> list[TimePoint]:
    if path is None:
        return [TimePoint(n) for n in names]
    given = {}
    for n, row in enumerate(_rows(path), start=2):
        where = f"{path}, line {n}"
        name = row.get("timepoint", "")
        if name not in names:
            raise InputError(f"{where}: time point {name!r} has no lengths; known: {', '.join(names)}")
        new = _choice(row.get("new_lesions") or "no", {k.value: k for k in NewLesions}, "new_lesions", where)
        nt = _choice(row["non_target"], _NON_TARGET, "non_target", where) if row.get("non_target") else None
        given[name] = TimePoint(name, new, nt)
    return [given.get(n, TimePoint(n)) for n in names]


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100.0 * x:+.1f}%"


def _mm(x: float | None) -> str:
    return "" if x is None else f"{x:.1f}"


def table_rows(ws: Worksheet) -> list[list[str]]:
    """The response table, one row per time point (header first)."""
    out = [
        [
            "timepoint",
            "sum_mm",
            "change_from_baseline",
            "nadir_mm",
            "change_from_nadir",
            "target",
            "non_target",
            "new_lesions",
            "overall",
            "notes",
        ]
    ]
    for r in ws.results:
        nt = r.non_target.value if r.non_target else ""
        out.append(
            [
                r.name,
                _mm(r.sum_mm),
                _pct(r.change_from_baseline),
                _mm(r.nadir_mm),
                _pct(r.change_from_nadir),
                r.target.value,
                nt,
                r.new_lesions.value,
                r.overall.value,
                "; ".join(r.reasons),
            ]
        )
    return out


def lesion_rows(ws: Worksheet) -> list[list[str]]:
    """Each lesion's accepted length at each time point (header first)."""
    names = [tp.name for tp in ws.timepoints]
    out = [["lesion", "kind", "organ", "location", "lymph_node"] + names]
    for les in ws.lesions:
        out.append(
            [les.label, les.kind.value, les.organ, les.location, "yes" if les.lymph_node else "no"]
            + [_mm(ws.length(les.label, n)) for n in names]
        )
    return out


def worksheet_csv(ws: Worksheet) -> str:
    """The CSV export: the lesion table, a blank line, the response table, then any warnings."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerows(lesion_rows(ws))
    w.writerow([])
    w.writerows(table_rows(ws))
    for text in ws.warnings:
        w.writerow(["warning", text])
    return buf.getvalue()


def worksheet_html(ws: Worksheet, title: str = "Lesion follow-up (RECIST 1.1)", thumbnails: dict | None = None) -> str:
    """A one-page report, printable to PDF. ``thumbnails``: ``(lesion, time point) -> image URI`` (the Slicer
    module passes PNGs of the slice views as data URIs); missing ones are left blank."""
    thumbnails = thumbnails or {}
    esc = html.escape

    def table(rows, images=False):
        head = "".join(f"<th>{esc(c)}</th>" for c in rows[0])
        body = []
        for row in rows[1:]:
            cells = []
            for j, c in enumerate(row):
                uri = thumbnails.get((row[0], rows[0][j])) if images else None
                img = f'<br><img src="{esc(uri)}" alt="{esc(row[0])} at {esc(rows[0][j])}">' if uri else ""
                cells.append(f"<td>{esc(c)}{img}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        return f"<table><tr>{head}</tr>{''.join(body)}</table>"

    warn = "".join(f"<li>{esc(t)}</li>" for t in ws.warnings)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + esc(title) + "</title><style>"
        "body{font-family:sans-serif;font-size:11pt;margin:1.5cm}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #999;padding:3px 6px;text-align:left;vertical-align:top}"
        "img{width:96px;height:96px}@media print{body{margin:0}}</style></head><body>"
        f"<h1>{esc(title)}</h1><h2>Lesions (accepted lengths, mm)</h2>{table(lesion_rows(ws), images=True)}"
        f"<h2>Response</h2>{table(table_rows(ws))}"
        + (f"<h2>Warnings</h2><ul>{warn}</ul>" if warn else "")
        + "<p>Rules: RECIST 1.1 (Eisenhauer et al. 2009). Lengths are the reader's accepted measurements."
        "</p></body></html>"
    )


def write_worksheet(
    ws: Worksheet, csv_path, html_path=None, force: bool = False, inputs: dict | None = None, labels: dict | None = None
) -> list[Path]:
    """Both exports as one set (:class:`~MedDIFTLib.outputs.OutputSet`): the CSV and the report appear
    together or not at all, and an earlier pair is replaced (only with ``force``) as a whole, so a report
    never sits beside a CSV of another reading.

    Args:
        ws: the assessed worksheet.
        csv_path: the worksheet CSV.
        html_path: the one-page report, or None for none.
        force: replace existing files (never an input).
        inputs: name -> path of the files the worksheet was read from; no output may be one of them.
        labels: ``csv``/``html`` -> how the user knows that output (``--out``), for messages.
    """
    targets = {"csv": csv_path, **({"html": html_path} if html_path else {})}
    with OutputSet(targets, inputs or {}, force, labels=labels) as out:
        out.path("csv").write_text(worksheet_csv(ws), encoding="utf-8")
        if html_path:
            out.path("html").write_text(worksheet_html(ws), encoding="utf-8")
        return [Path(p) for p in out.commit().values()]
