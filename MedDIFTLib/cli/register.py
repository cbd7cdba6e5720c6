"""``meddift register``: a dense fixed -> moving map of two scans, written as ITK displacement fields."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ..atomic import check_outputs
from ..engine import Scan
from ..errors import InputError
from ..options import MatchOptions
from ..registration.field import FIELD_EXTENSIONS
from ..registration.outputs import output_paths
from .match import say, say_configured
from .options import (  # noqa: F401  (registration_options, initial_matrix: importable here as before)
    add_backbone_arguments,
    add_cache_arguments,
    add_feature_arguments,
    add_registration_arguments,
    add_server_arguments,
    engine_options,
    initial_matrix,
    open_engine,
    refuse_hu_offset,
    registration_options,
)
from .progress import ProgressPrinter


def run(args) -> int:
    """``meddift register``, locally or on ``--server`` alike (see :mod:`MedDIFTLib.engine`)."""
    if args.field_ext not in FIELD_EXTENSIONS:
        raise InputError(f"--field-format must be one of {', '.join(FIELD_EXTENSIONS)}")
    opts = registration_options(args)
    initial = initial_matrix(args.initial)
    refuse_hu_offset(args)
    paths = output_paths(args.out, args.field_ext)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; it must be a folder")
    check_outputs(
        {f"--out {p.name}": p for p in paths.values()},
        {"the fixed volume": args.fixed, "the moving volume": args.moving},
        args.force,
    )
    engine = open_engine(args, ProgressPrinter())
    with contextlib.closing(engine):
        say_configured(engine.configure(engine_options(args), MatchOptions(), opts))  # every option checked
        fixed, moving = Scan(args.fixed, args.fixed_hu_offset), Scan(args.moving, args.moving_hu_offset)
        done = engine.register(
            fixed, moving, opts, initial, out, args.field_ext, figure=not args.no_figure, force=args.force
        )
    rep, j = done.report, done.report["jacobian"]
    say(
        f"pre-alignment: {rep.get('prealign_used', 'none')}; folding voxels {100 * j['folding_share']:.3f}%, "
        f"Jacobian {j['jacobian_min']:.2f}..{j['jacobian_max']:.2f}; {rep.get('seconds', 0):.1f} s"
    )
    say(regularity_line(j))
    for what, path in done.written.items():
        say(f"{what} -> {path}")
    for w in done.report.get("warnings", []):
        say(w, "warning: ")
    return 0


def regularity_line(j: dict) -> str:
    """The map's regularity in the summary: folding and the log-Jacobian's spread (body, field of view)."""
    parts = [
        f"{name}: folding {j[key + 'folding_percent']:.3f}%, SD log-Jacobian {j[key + 'log_jacobian_std']:.3f}"
        for name, key in (("body", "body_"), ("field of view", ""))
        if key + "folding_percent" in j
    ]
    return "regularity " + "; ".join(parts) if parts else "regularity: not reported"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "register",
        help="dense registration: a displacement field from FIXED to MOVING",
        description="Find a smooth map of every fixed-scan point into MOVING from feature similarity "
        "(ConvexAdam's scheme on the backbone's features) and write it as ITK "
        "displacement fields, with the moving scan resampled onto the fixed grid.",
    )
    p.add_argument("fixed", help="fixed CT volume (NIfTI, NRRD, MHA, or a DICOM folder)")
    p.add_argument("moving", help="moving CT volume")
    p.add_argument(
        "--out", required=True, help="output folder (field, inverse_field, moving_resampled, report, figure)"
    )
    p.add_argument(
        "--field-format",
        dest="field_ext",
        default=".nii.gz",
        help=f"displacement field file type: {', '.join(FIELD_EXTENSIONS)} (default .nii.gz)",
    )
    p.add_argument("--no-figure", action="store_true", help="skip the before/after PNG")
    p.add_argument("--force", action="store_true", help="replace existing outputs in --out")
    add_backbone_arguments(p)
    add_feature_arguments(p)
    add_cache_arguments(p)
    add_registration_arguments(p)
    p.add_argument(
        "--initial",
        metavar="FILE",
        help="a known initial transform instead of the automatic pre-alignment: 4x4 RAS matrix "
        "(.txt/.npy) mapping fixed to moving points",
    )
    add_server_arguments(p)
    p.set_defaults(func=run)
