"""``meddift match``: landmarks of a fixed scan matched into a moving scan.

Everything is checked before the features are computed (minutes with MAISI on a CPU): every
option (by the session), the outputs (extension known, folder writable, not an input, free unless
``--force``), the inputs (readable, whole), the ``--heatmap-for`` label. Outputs are then created
exclusively (without ``--force``) or replaced atomically (with it), see :mod:`MedDIFTLib.atomic`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys

import numpy as np

from ..atomic import check_outputs
from ..data.image_io import check_image_path, read_volume
from ..data.landmark_io import check_points_path, read_points, write_points
from ..data.points import PointSet
from ..engine import EngineInfo, Scan
from ..errors import InputError, render
from ..options import is_named_prior
from ..outputs import OutputSet
from .options import (
    add_backbone_arguments,
    add_cache_arguments,
    add_feature_arguments,
    add_registration_arguments,
    add_search_arguments,
    add_server_arguments,
    engine_options,
    match_options,
    open_engine,
    refuse_hu_offset,
    registration_options,
)
from .progress import ProgressPrinter


def say(text: str, kind: str = "") -> None:
    print(f"meddift: {kind}{render(text, 'cli')}", file=sys.stderr)


def say_configured(info: EngineInfo) -> None:
    """What runs where, and the options that do not apply to it (``match`` and ``register``)."""
    say(f"backbone: {info.note}")
    say(f"computing on {info.place}, device {info.device}")
    for w in info.warnings:
        say(w, "warning: ")


def check_args(args) -> dict:
    """Every refusal that needs no file read: option pairs, output paths, inputs never overwritten."""
    if bool(args.heatmap_for) != bool(args.heatmap):
        raise InputError("--heatmap-for LABEL and --heatmap OUT_VOLUME go together")
    refuse_hu_offset(args)
    check_points_path(args.out)
    if args.heatmap:
        check_image_path(args.heatmap)
    inputs = {
        "the fixed volume": args.fixed,
        "the moving volume": args.moving,
        "the --points file": args.points,
        "the --mask": args.mask,
    }
    if args.prior and not is_named_prior(args.prior):
        inputs["the --prior file"] = args.prior
    check_outputs({"--out": args.out, "--heatmap": args.heatmap}, inputs, args.force)
    return inputs


def run(args) -> int:
    """``meddift match``, locally or on ``--server`` alike (see :mod:`MedDIFTLib.engine`)."""
    inputs = check_args(args)
    options = engine_options(args), match_options(args), registration_options(args)  # each checks itself
    engine = open_engine(args, ProgressPrinter())
    with contextlib.closing(engine):
        say_configured(engine.configure(*options))
        prior = engine.prior(args.prior)  # a file read here, refused in words before any scan is sent
        fixed = Scan(args.fixed, args.fixed_hu_offset, read_volume(args.fixed, hu_offset=args.fixed_hu_offset))
        moving = Scan(args.moving, args.moving_hu_offset)
        points = read_points(args.points, format=args.points_format, reference=fixed.volume)
        if args.skip_outside:
            points = skip_outside(points, fixed.volume)
        idx = heatmap_index(args, points, fixed.volume) if args.heatmap_for else None
        report = engine.match(fixed, moving, points, prior=prior, mask=Scan(args.mask) if args.mask else None)
        for w in report.warnings:
            say(w, "warning: ")
        # the points and the heatmap are one output set: both in place, or neither (a Ctrl-C, a failure)
        targets = {"out": args.out, **({"heatmap": args.heatmap} if idx is not None else {})}
        with OutputSet(targets, inputs, args.force, labels={"out": "--out", "heatmap": "--heatmap"}) as outputs:
            write_points(report.points, outputs.path("out"), force=True)
            if idx is not None:
                engine.heatmap(fixed, moving, points.points[idx], outputs.path("heatmap"), force=True)
            outputs.commit()
        say(summary(report.points, args.out))
        if idx is not None:
            say(f"heatmap of {args.heatmap_for} -> {args.heatmap}")
    return 0


def heatmap_index(args, points: PointSet, fixed) -> int:
    """The row of ``--heatmap-for``, refused unless that point lies in the fixed volume."""
    idx = points.label_index(args.heatmap_for)
    if not points.defined[idx] or not fixed.grid.contains(points.points[idx : idx + 1])[0]:
        raise InputError(
            f"--heatmap-for {args.heatmap_for!r}: that point has no position in the fixed volume; "
            "choose a point inside it"
        )
    return idx


def summary(matched: PointSet, out) -> str:
    """The last line of a run: how many points have a match, and which have none."""
    ok = np.all(np.isfinite(matched.points), axis=1)
    assert matched.labels is not None  # PointSet.__post_init__ sets the labels
    missing = [lb for lb, good in zip(matched.labels, ok) if not good]
    tail = f"; {len(missing)} without a position: {', '.join(missing[:10])}" if missing else ""
    return f"{int(ok.sum())} of {len(matched)} points matched -> {out}{tail}"


def skip_outside(points, fixed):
    """``--skip-outside``: points outside the fixed scan lose their position (their rows stay, empty),
    and their labels are listed; a benchmark file often covers more than a cropped scan."""
    inside = np.zeros(len(points), bool)
    inside[points.defined] = fixed.grid.contains(points.points[points.defined])
    out = points.defined & ~inside
    if not out.any():
        return points
    if not inside.any():
        raise InputError(
            "--skip-outside: every landmark lies outside the fixed volume; check that the points belong to this scan"
        )
    labels = [points.labels[i] for i in np.flatnonzero(out)]
    more = f" and {len(labels) - 20} more" if len(labels) > 20 else ""
    say(f"{len(labels)} landmark(s) outside the fixed volume are skipped: {', '.join(labels[:20])}{more}", "warning: ")
    pts = np.array(points.points, dtype=np.float64)
    pts[out] = np.nan
    return dataclasses.replace(points, points=pts)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "match",
        help="match landmarks from a fixed scan into a moving scan",
        description="Match every landmark of FIXED into MOVING by MedDIFT feature similarity.",
    )
    p.add_argument("fixed", help="fixed CT volume (NIfTI, NRRD, MHA, or a DICOM folder)")
    p.add_argument("moving", help="moving CT volume")
    p.add_argument("--points", required=True, help="landmarks on the fixed volume (.csv RAS mm, .mrk.json, .fcsv, ...)")
    p.add_argument("--points-format", help="force the landmark format (e.g. learn2reg: voxel indices of FIXED)")
    p.add_argument("--out", required=True, help="matched landmarks (.csv, .mrk.json or .fcsv by extension)")
    p.add_argument("--heatmap-for", metavar="LABEL", help="write the similarity heatmap of this landmark")
    p.add_argument("--heatmap", metavar="OUT_VOLUME", help="heatmap volume path (moving volume geometry)")
    p.add_argument("--force", action="store_true", help="replace existing outputs (never an input)")
    p.add_argument(
        "--skip-outside",
        action="store_true",
        help="leave landmarks outside the fixed volume unmatched (listed) instead of refusing the run",
    )
    add_backbone_arguments(p)
    add_feature_arguments(p)
    add_cache_arguments(p)
    add_search_arguments(p)
    add_registration_arguments(p)
    add_server_arguments(p)
    p.set_defaults(func=run)
