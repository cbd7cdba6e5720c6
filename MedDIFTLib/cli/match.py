"""``meddift match``: landmarks of a fixed scan matched into a moving scan.

Everything is checked before the features are computed (minutes with MAISI on a CPU): every
option (by the session), the outputs (extension known, folder writable, not an input, free unless
``--force``), the inputs (readable, whole), the ``--heatmap-for`` label. Outputs are then created
exclusively (without ``--force``) or replaced atomically (with it), see :mod:`MedDIFTLib.atomic`.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from ..atomic import check_outputs
from ..data.image_io import check_image_path, read_volume, write_volume
from ..data.landmark_io import check_points_path, read_points, write_points
from ..errors import InputError, render
from ..session import MatchSession
from .options import (
    add_backbone_arguments,
    add_cache_arguments,
    add_feature_arguments,
    add_search_arguments,
    add_server_arguments,
    engine_options,
    match_options,
    refuse_hu_offset,
)
from .progress import ProgressPrinter
from .register import add_registration_arguments, registration_options


def say(text: str, kind: str = "") -> None:
    print(f"meddift: {kind}{render(text, 'cli')}", file=sys.stderr)


def run(args) -> int:
    if bool(args.heatmap_for) != bool(args.heatmap):
        raise InputError("--heatmap-for LABEL and --heatmap OUT_VOLUME go together")
    refuse_hu_offset(args)
    check_points_path(args.out)
    if args.heatmap:
        check_image_path(args.heatmap)
    inputs = {"the fixed volume": args.fixed, "the moving volume": args.moving, "the --points file": args.points,
              "the --mask": args.mask}
    if args.prior and args.prior not in ("identity", "coarse", "dense"):
        inputs["the --prior file"] = args.prior
    check_outputs({"--out": args.out, "--heatmap": args.heatmap}, inputs, args.force)
    if args.server:
        from .match_remote import run_remote

        return run_remote(args)
    session = MatchSession(engine_options(args), match_options(args),  # every option checked here
                           registration=registration_options(args))
    fixed = read_volume(args.fixed, hu_offset=args.fixed_hu_offset)
    moving = read_volume(args.moving, hu_offset=args.moving_hu_offset)
    points = read_points(args.points, format=args.points_format, reference=fixed)
    if args.skip_outside:
        points = skip_outside(points, fixed)
    if args.heatmap_for:
        idx = points.label_index(args.heatmap_for)
        if not points.defined[idx] or not fixed.grid.contains(points.points[idx:idx + 1])[0]:
            raise InputError(f"--heatmap-for {args.heatmap_for!r}: that point has no position in the fixed volume; "
                             "choose a point inside it")
    mask = read_volume(args.mask) if args.mask else None
    say(f"backbone: {session.backbone_note}")
    for w in session.option_warnings:
        say(w, "warning: ")
    report = session.match(fixed, moving, points, prior=args.prior, mask=mask, progress=ProgressPrinter())
    matched = report.points
    for w in report.warnings:
        say(w, "warning: ")
    write_points(matched, args.out, force=args.force)
    n_ok = int(np.sum(np.all(np.isfinite(matched.points), axis=1)))
    missing = [lb for lb, ok in zip(matched.labels, np.all(np.isfinite(matched.points), axis=1)) if not ok]
    tail = f"; {len(missing)} without a position: {', '.join(missing[:10])}" if missing else ""
    say(f"{n_ok} of {len(matched)} points matched -> {args.out}{tail}")
    if args.heatmap_for:
        hm = session.heatmap(fixed, moving, points.points[idx])
        write_volume(hm, args.heatmap, force=args.force)
        say(f"heatmap of {args.heatmap_for} -> {args.heatmap}")
    return 0


def skip_outside(points, fixed):
    """``--skip-outside``: points outside the fixed scan lose their position (their rows stay, empty),
    and their labels are listed; a benchmark file often covers more than a cropped scan."""
    inside = np.zeros(len(points), bool)
    inside[points.defined] = fixed.grid.contains(points.points[points.defined])
    out = points.defined & ~inside
    if not out.any():
        return points
    if not inside.any():
        raise InputError("--skip-outside: every landmark lies outside the fixed volume; check that the points "
                         "belong to this scan")
    labels = [points.labels[i] for i in np.flatnonzero(out)]
    more = f" and {len(labels) - 20} more" if len(labels) > 20 else ""
    say(f"{len(labels)} landmark(s) outside the fixed volume are skipped: {', '.join(labels[:20])}{more}",
        "warning: ")
    pts = np.array(points.points, dtype=np.float64)
    pts[out] = np.nan
    return dataclasses.replace(points, points=pts)


def add_parser(sub) -> None:
    p = sub.add_parser("match", help="match landmarks from a fixed scan into a moving scan",
                       description="Match every landmark of FIXED into MOVING by MedDIFT feature similarity.")
    p.add_argument("fixed", help="fixed CT volume (NIfTI, NRRD, MHA, or a DICOM folder)")
    p.add_argument("moving", help="moving CT volume")
    p.add_argument("--points", required=True, help="landmarks on the fixed volume (.csv RAS mm, .mrk.json, .fcsv, ...)")
    p.add_argument("--points-format", help="force the landmark format (e.g. learn2reg: voxel indices of FIXED)")
    p.add_argument("--out", required=True, help="matched landmarks (.csv, .mrk.json or .fcsv by extension)")
    p.add_argument("--heatmap-for", metavar="LABEL", help="write the similarity heatmap of this landmark")
    p.add_argument("--heatmap", metavar="OUT_VOLUME", help="heatmap volume path (moving volume geometry)")
    p.add_argument("--force", action="store_true", help="replace existing outputs (never an input)")
    p.add_argument("--skip-outside", action="store_true",
                   help="leave landmarks outside the fixed volume unmatched (listed) instead of refusing the run")
    add_backbone_arguments(p)
    add_feature_arguments(p)
    add_cache_arguments(p)
    add_search_arguments(p)
    add_registration_arguments(p)
    add_server_arguments(p)
    p.set_defaults(func=run)
