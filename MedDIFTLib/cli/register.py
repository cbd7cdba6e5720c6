"""``meddift register``: a dense fixed -> moving map of two scans, written as ITK displacement fields."""

from __future__ import annotations

import sys
from pathlib import Path

from ..atomic import check_outputs
from ..data.image_io import read_matrix_file, read_volume
from ..errors import InputError, render
from ..registration import PREALIGN_KINDS, RegistrationOptions
from ..registration.field import FIELD_EXTENSIONS
from ..registration.outputs import output_paths, write_outputs
from ..session import MatchSession
from .options import (
    add_backbone_arguments,
    add_cache_arguments,
    add_feature_arguments,
    add_server_arguments,
    engine_options,
    refuse_hu_offset,
)
from .progress import ProgressPrinter


def add_registration_arguments(p) -> None:
    """How the dense map is found (register; match --prior dense)."""
    d = RegistrationOptions()
    g = p.add_argument_group("registration")
    g.add_argument("--prealign", choices=PREALIGN_KINDS, default=d.prealign,
                   help=f"automatic pre-alignment from global feature matches (default {d.prealign})")
    g.add_argument("--search", type=float, default=d.search_mm, metavar="MM",
                   help=f"discrete search range around the pre-aligned position (default {d.search_mm:g} mm)")
    g.add_argument("--grid-spacing", type=float, default=None, metavar="MM",
                   help="registration grid spacing (default: the fixed scan's voxel size, coarser on large scans)")
    g.add_argument("--smoothness", type=float, default=d.lam, metavar="LAMBDA",
                   help=f"weight of the diffusion regulariser (default {d.lam:g})")
    g.add_argument("--iterations", type=int, default=d.iterations,
                   help=f"Adam refinement iterations (default {d.iterations})")
    g.add_argument("--initial", metavar="FILE",
                   help="a known initial transform instead of the automatic pre-alignment: 4x4 RAS matrix "
                        "(.txt/.npy) mapping fixed to moving points")


def registration_options(args) -> RegistrationOptions:
    """The options' own checks name the flags (errors.opt), so nothing is checked twice here."""
    return RegistrationOptions(prealign=args.prealign, search_mm=args.search, spacing_mm=args.grid_spacing,
                               lam=args.smoothness, iterations=args.iterations)


def initial_matrix(spec):
    return read_matrix_file(spec, "the initial transform") if spec else None


def run(args) -> int:
    if args.field_ext not in FIELD_EXTENSIONS:
        raise InputError(f"--field-format must be one of {', '.join(FIELD_EXTENSIONS)}")
    opts = registration_options(args)
    initial = initial_matrix(args.initial)
    refuse_hu_offset(args)
    paths = output_paths(args.out, args.field_ext)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; it must be a folder")
    check_outputs({f"--out {p.name}": p for p in paths.values()},
                  {"the fixed volume": args.fixed, "the moving volume": args.moving}, args.force)
    if args.server:
        from .register_remote import run_remote_register

        written = run_remote_register(args, opts, initial, paths)
    else:
        session = MatchSession(engine_options(args))  # every engine option checked before reading
        fixed = read_volume(args.fixed, hu_offset=args.fixed_hu_offset)
        moving = read_volume(args.moving, hu_offset=args.moving_hu_offset)
        print(f"meddift: backbone: {render(session.backbone_note, 'cli')}", file=sys.stderr)
        field = session.register(fixed, moving, opts, initial=initial, progress=ProgressPrinter())
        written = write_outputs(field, fixed, moving, out, args.field_ext, figure=not args.no_figure,
                                force=args.force)
    rep = written.pop("report_data")
    j = rep["jacobian"]
    print(f"meddift: pre-alignment: {rep.get('prealign_used', 'none')}; folding voxels "
          f"{100 * j['folding_share']:.3f}%, Jacobian {j['jacobian_min']:.2f}..{j['jacobian_max']:.2f}; "
          f"{rep.get('seconds', 0):.1f} s", file=sys.stderr)
    for what, path in written.items():
        print(f"meddift: {what} -> {path}", file=sys.stderr)
    for w in rep.get("warnings", []):
        print(f"meddift: warning: {render(w, 'cli')}", file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("register", help="dense registration: a displacement field from FIXED to MOVING",
                       description="Find a smooth map of every fixed-scan point into MOVING from feature similarity "
                                   "(ConvexAdam's scheme on the backbone's features) and write it as ITK "
                                   "displacement fields, with the moving scan resampled onto the fixed grid.")
    p.add_argument("fixed", help="fixed CT volume (NIfTI, NRRD, MHA, or a DICOM folder)")
    p.add_argument("moving", help="moving CT volume")
    p.add_argument("--out", required=True, help="output folder (field, inverse_field, moving_resampled, report, figure)")
    p.add_argument("--field-format", dest="field_ext", default=".nii.gz",
                   help=f"displacement field file type: {', '.join(FIELD_EXTENSIONS)} (default .nii.gz)")
    p.add_argument("--no-figure", action="store_true", help="skip the before/after PNG")
    p.add_argument("--force", action="store_true", help="replace existing outputs in --out")
    add_backbone_arguments(p)
    add_feature_arguments(p)
    add_cache_arguments(p)
    add_registration_arguments(p)
    add_server_arguments(p)
    p.set_defaults(func=run)
