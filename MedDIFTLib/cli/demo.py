"""``meddift demo``: the demo (:mod:`MedDIFTLib.evaluation.demo`) with its table printed."""

from __future__ import annotations

import sys

from ..matching.priors import DEFAULT_RADIUS_MM
from ..outputs import FolderSet
from .options import add_backbone_arguments, add_cache_arguments, engine_options
from .progress import ProgressPrinter


def run(args) -> int:
    from ..evaluation.demo import run_demo

    # before any work: a new or empty folder, or an earlier demo's with --force (replaced as a whole)
    FolderSet.check(args.out, "demo", force=args.force)
    res = run_demo(
        args.out,
        engine_options(args),
        args.radius or None,
        args.landmarks,
        args.seed,
        progress=ProgressPrinter(),
        log=lambda msg: print(f"meddift demo: {msg}", file=sys.stderr),
        dense=not args.no_dense,
        force=args.force,
    )
    print(res["table"])
    dense = f"; the dense registration took {res['dense_seconds']:.1f} s more" if "dense_seconds" in res else ""
    print(
        f"\nbackbone: {res['backbone_note']}\nsearch: {res['search']}; features + matching took "
        f"{res['match_seconds']:.1f} s{dense}; outputs in {res['out_dir']}"
    )
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="match landmarks on a generated phantom pair with known motion",
        description="The main job on a bundled default: a thorax phantom pair with exact breathing "
        "motion, matched with the best available backbone, scored against the truth.",
    )
    p.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    add_backbone_arguments(p)
    p.add_argument(
        "--radius",
        type=float,
        default=DEFAULT_RADIUS_MM,
        help=f"local search radius in mm (0: global; default {DEFAULT_RADIUS_MM:g})",
    )
    p.add_argument(
        "--no-dense",
        action="store_true",
        help="skip the dense registration row (its field and points); about half a minute on 2 cores",
    )
    p.add_argument("--landmarks", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace an earlier demo's outputs in --out (as a whole)")
    add_cache_arguments(p)
    p.set_defaults(func=run)
