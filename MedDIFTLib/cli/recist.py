"""``meddift recist``: the RECIST 1.1 response table from a CSV of accepted lesion lengths.

The same rules as the Slicer module's follow-up worksheet (:mod:`MedDIFTLib.followup`), for a cohort or
another viewer. The file formats are described in :mod:`MedDIFTLib.followup.worksheet_io`.
"""

from __future__ import annotations

import sys

from ..atomic import check_outputs
from ..followup import assess
from ..followup.worksheet_io import read_lengths, table_rows, write_worksheet


def run(args) -> int:
    outputs = {"--out": args.out, "--html": args.html}
    inputs = {"the lengths file": args.lengths, "the --timepoints file": args.timepoints}
    check_outputs(outputs, inputs, args.force)
    lesions, timepoints, lengths = read_lengths(args.lengths, args.timepoints)
    ws = assess(lesions, timepoints, lengths)
    for row in table_rows(ws):
        print("  ".join(f"{c:<14}" for c in row[:9]).rstrip() + (f"  {row[9]}" if row[9] else ""))
    for text in ws.warnings:
        print(f"meddift: warning: {text}", file=sys.stderr)
    written = write_worksheet(ws, args.out, args.html, args.force, inputs, {"csv": "--out", "html": "--html"})
    print(f"meddift: worksheet -> {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "recist",
        help="RECIST 1.1 response table from accepted lesion lengths",
        description="Compute each time point's target sum, its change from baseline and from the "
        "nadir, and the RECIST 1.1 response (CR, PR, SD, PD, NE) from a CSV of the "
        "lengths a reader accepted.",
    )
    p.add_argument("lengths", help="CSV: lesion,kind,organ,location,lymph_node,timepoint,length_mm")
    p.add_argument("--timepoints", help="CSV: timepoint,new_lesions,non_target (the reader's assessments)")
    p.add_argument("--out", required=True, help="worksheet CSV (lesion table and response table)")
    p.add_argument("--html", help="one-page report (HTML, printable to PDF)")
    p.add_argument("--force", action="store_true", help="replace existing outputs (never an input)")
    p.set_defaults(func=run)
