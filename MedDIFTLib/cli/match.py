"""``meddift match``: landmarks of a fixed scan matched into a moving scan."""

from __future__ import annotations

import sys
from pathlib import Path

from ..data.image_io import read_volume, write_volume
from ..data.landmark_io import read_points, write_points
from ..errors import InputError
from ..matching.priors import resolve_prior
from ..session import MatchSession
from .options import (
    add_backbone_arguments,
    add_cache_arguments,
    add_feature_arguments,
    add_search_arguments,
    engine_options,
    match_options,
)
from .progress import ProgressPrinter


def refuse_overwrite(paths, force: bool) -> None:
    existing = [str(p) for p in paths if p and Path(p).exists()]
    if existing and not force:
        raise InputError(f"output exists: {', '.join(existing)}; choose another name or pass --force to overwrite")


def run(args) -> int:
    if bool(args.heatmap_for) != bool(args.heatmap):
        raise InputError("--heatmap-for LABEL and --heatmap OUT_VOLUME go together")
    refuse_overwrite([args.out, args.heatmap], args.force)
    if args.server:
        from .match_remote import run_remote

        return run_remote(args)
    fixed = read_volume(args.fixed)
    moving = read_volume(args.moving)
    points = read_points(args.points, format=args.points_format,
                         reference=fixed if args.points_format in ("learn2reg", "elastix") else None)
    prior = resolve_prior(args.prior, args.radius)
    mask = read_volume(args.mask) if args.mask else None
    session = MatchSession(engine_options(args), match_options(args))
    print(f"meddift: backbone: {session.backbone_note}", file=sys.stderr)
    progress = ProgressPrinter()
    report = session.match(fixed, moving, points, prior=prior, mask=mask, progress=progress)
    matched = report.points
    for w in report.warnings:
        print(f"meddift: warning: {w}", file=sys.stderr)
    write_points(matched, args.out)
    print(f"meddift: {len(matched)} points matched -> {args.out}", file=sys.stderr)
    if args.heatmap_for:
        idx = points.label_index(args.heatmap_for)
        hm = session.heatmap(fixed, moving, points.points[idx])
        write_volume(hm, args.heatmap)
        print(f"meddift: heatmap of {args.heatmap_for} -> {args.heatmap}", file=sys.stderr)
    return 0


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
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    add_backbone_arguments(p)
    add_feature_arguments(p)
    add_cache_arguments(p)
    add_search_arguments(p)
    g = p.add_argument_group("server (compute on a `meddift serve` machine; docs/server.md)")
    g.add_argument("--server", metavar="URL", help="e.g. https://gpu-box:8765; the same outputs as a local run")
    g.add_argument("--token-file", help="file holding the server's token (or set MEDDIFT_TOKEN)")
    g.add_argument("--ca-file", help="CA certificate (PEM) that signed a self-signed server's certificate")
    p.set_defaults(func=run)
