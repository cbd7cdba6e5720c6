"""``meddift match``: landmarks of a fixed scan matched into a moving scan."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .errors import InputError
from .image_io import read_volume, write_volume
from .landmarks import read_points, write_points
from .matching import MatchOptions
from .pipeline import EngineOptions, MatchSession
from .priors import load_prior


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """Options that choose and configure the backbone (shared by match, demo, evaluate)."""
    g = p.add_argument_group("features")
    g.add_argument("--backbone", choices=["auto", "maisi", "mind-ssc"], default="auto",
                   help="maisi: MedDIFT diffusion features (needs weights); mind-ssc: weight-free descriptor; "
                        "auto: maisi when its weights are found (default)")
    g.add_argument("--weights-dir", help="folder with the MAISI v1 files (default: $MEDDIFT_WEIGHTS_DIR or the user cache)")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    g.add_argument("--levels", help="comma-separated feature levels (maisi: up0,up1,up2,up3; default all)")
    g.add_argument("--timestep", type=int, default=20, help="DDPM timestep of the noise (default 20)")
    g.add_argument("--ensemble", type=int, default=1, help="average features over K noise draws (default 1)")
    g.add_argument("--latent", choices=["sample", "mean"], default="sample", help="VAE latent: posterior sample or mean")
    g.add_argument("--region", default="thorax", help="body region condition: head, thorax, abdomen, pelvis")
    g.add_argument("--seed", type=int, default=0, help="seed of the noise draws (default 0)")
    g.add_argument("--hu-offset", type=float, default=0.0,
                   help="added to every voxel first: -1024 for a CT stored as 0..4095 without its rescale")
    g.add_argument("--size-policy", choices=["paper", "spacing"], default="paper",
                   help="network input size: nearest multiple of 128 (paper) or by physical spacing")
    g.add_argument("--cache-dir", help="feature cache folder (default: $MEDDIFT_CACHE_DIR or the user cache)")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("search")
    g.add_argument("--radius", type=float, help="local search radius in mm around the prior (default: global search)")
    g.add_argument("--prior", default=None,
                   help="prior for local search: identity (default with --radius), coarse (coarsest level first), "
                        "or a file: 4x4 RAS matrix (.txt/.npy), ITK transform (.tfm/.h5/.txt) or displacement field "
                        "image, mapping fixed to moving points")
    g.add_argument("--mask", help="candidate mask on the moving scan (label image; matches only where > 0)")
    g.add_argument("--no-subvoxel", action="store_true", help="keep matches on voxel centres")
    g.add_argument("--no-forward-backward", action="store_true", help="skip the forward-backward check")
    g.add_argument("--memory-budget", type=float, default=64.0, metavar="MB",
                   help="working memory for a batch of queries (default 64 MB); sets the batch size")
    g.add_argument("--coarse-stride", type=int, default=None,
                   help="coarse search step in voxels; 1 is exhaustive (default: two samples per finest-level voxel)")


def engine_options(args) -> EngineOptions:
    return EngineOptions(
        backbone=args.backbone, weights_dir=args.weights_dir, device=args.device,
        timestep=args.timestep, levels=args.levels.split(",") if args.levels else None,
        ensemble=args.ensemble, latent=args.latent, region=args.region, seed=args.seed,
        size_policy=args.size_policy, cache_dir=args.cache_dir, use_cache=not args.no_cache,
        hu_offset=args.hu_offset,
    )


def match_options(args) -> MatchOptions:
    return MatchOptions(radius_mm=args.radius, subvoxel=not args.no_subvoxel,
                        forward_backward=not args.no_forward_backward, coarse_stride=args.coarse_stride,
                        memory_budget_mb=args.memory_budget)


class ProgressPrinter:
    """One line per stage change on stderr, with elapsed seconds."""

    def __init__(self, stream=None):
        # Resolved at call time, not import time: sys.stderr may be replaced (pytest, Slicer).
        self.stream, self.last, self.t0 = stream, None, time.time()

    def __call__(self, stage: str, fraction: float):
        if stage != self.last or fraction >= 1.0:
            stream = self.stream or sys.stderr
            stream.write(f"[{time.time() - self.t0:7.1f}s] {stage} {100 * fraction:3.0f}%\n")
            stream.flush()
            self.last = stage


def refuse_overwrite(paths, force: bool) -> None:
    existing = [str(p) for p in paths if p and Path(p).exists()]
    if existing and not force:
        raise InputError(f"output exists: {', '.join(existing)}; choose another name or pass --force to overwrite")


def run(args) -> int:
    if bool(args.heatmap_for) != bool(args.heatmap):
        raise InputError("--heatmap-for LABEL and --heatmap OUT_VOLUME go together")
    refuse_overwrite([args.out, args.heatmap], args.force)
    fixed = read_volume(args.fixed)
    moving = read_volume(args.moving)
    points = read_points(args.points, format=args.points_format,
                         reference=fixed if args.points_format in ("learn2reg", "elastix") else None)
    prior = None
    if args.prior == "coarse":
        prior = "coarse"
    elif args.prior or args.radius:
        prior = load_prior(args.prior or "identity")
    mask = read_volume(args.mask) if args.mask else None
    session = MatchSession(engine_options(args), match_options(args))
    print(f"meddift: backbone: {session.backbone_note}", file=sys.stderr)
    progress = ProgressPrinter()
    matched = session.match_points(fixed, moving, points, prior=prior, mask=mask, progress=progress)
    for w in session.warnings:
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
    add_engine_arguments(p)
    add_search_arguments(p)
    p.set_defaults(func=run)
