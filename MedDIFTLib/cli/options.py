"""Option groups shared by the subcommands, each declared once.

``match`` takes every group; ``demo`` the backbone and cache groups; ``evaluate`` and ``ablate``
the case group; ``ablate`` the weights folder alone (its variants choose the backbone).
:func:`engine_options` and :func:`match_options` turn parsed options into the engine's own.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ..data.image_io import read_matrix_file
from ..engine import Engine, LocalEngine
from ..errors import InputError
from ..options import (
    BACKBONE_NAMES,
    MAISI_LEVELS,
    MIND_LEVELS,
    PREALIGN_KINDS,
    EngineOptions,
    MatchOptions,
    RegistrationOptions,
)
from ..runtime import Progress
from ..service.remote_client import read_token
from ..service.remote_engine import RemoteEngine


def add_weights_dir_argument(p) -> None:
    p.add_argument(
        "--weights-dir", help="folder with the MAISI v1 files (default: $MEDDIFT_WEIGHTS_DIR or the user cache)"
    )


def add_backbone_arguments(p: argparse.ArgumentParser) -> None:
    """Which backbone, where its weights are, where it runs (match, demo)."""
    g = p.add_argument_group("backbone")
    g.add_argument(
        "--backbone",
        choices=BACKBONE_NAMES,
        default=EngineOptions.backbone,
        help="maisi: MedDIFT diffusion features (needs weights); mind-ssc: weight-free descriptor; "
        "auto: maisi when its weights are found (default)",
    )
    add_weights_dir_argument(g)
    g.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")


def add_feature_arguments(p: argparse.ArgumentParser) -> None:
    """How the features are computed (match)."""
    g = p.add_argument_group("features")
    g.add_argument(
        "--levels",
        help=f"comma-separated feature levels (maisi: {','.join(MAISI_LEVELS)}; mind-ssc: "
        f"{','.join(MIND_LEVELS)}; default all)",
    )
    g.add_argument("--timestep", type=int, default=20, help="DDPM timestep of the noise (default 20)")
    g.add_argument("--ensemble", type=int, default=1, help="average features over K noise draws (default 1)")
    g.add_argument(
        "--latent", choices=["sample", "mean"], default="sample", help="VAE latent: posterior sample or mean"
    )
    g.add_argument("--region", default="thorax", help="body region condition: head, thorax, abdomen, pelvis")
    g.add_argument("--seed", type=int, default=0, help="seed of the noise draws (default 0)")
    g.add_argument(
        "--fixed-hu-offset",
        type=float,
        default=0.0,
        metavar="HU",
        help="added to every voxel of FIXED first: -1024 for a CT stored as 0..4095 without its rescale",
    )
    g.add_argument(
        "--moving-hu-offset",
        type=float,
        default=0.0,
        metavar="HU",
        help="the same for MOVING (each scan has its own: one may be rescaled, the other not)",
    )
    g.add_argument("--hu-offset", type=float, default=None, help=argparse.SUPPRESS)  # refused: see refuse_hu_offset
    g.add_argument(
        "--size-policy",
        choices=["paper", "spacing"],
        default="paper",
        help="network input size: nearest multiple of 128 (paper) or by physical spacing",
    )


def add_cache_arguments(p: argparse.ArgumentParser) -> None:
    """The feature cache (match, demo)."""
    g = p.add_argument_group("cache")
    g.add_argument("--cache-dir", help="feature cache folder (default: $MEDDIFT_CACHE_DIR or the user cache)")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("search")
    g.add_argument("--radius", type=float, help="local search radius in mm around the prior (default: global search)")
    g.add_argument(
        "--prior",
        default=None,
        help="where each match comes from: dense (the default: the dense registration's map; its "
        "position is the match, or with --radius the argmax within that radius of it), none (the "
        "paper's plain argmax: global, or within --radius of the same world point), identity, "
        "coarse (coarsest level first), or a file: 4x4 RAS matrix (.txt/.npy), ITK transform "
        "(.tfm/.h5/.txt) or displacement field image, mapping fixed to moving points",
    )
    g.add_argument("--mask", help="candidate mask on the moving scan (label image; matches only where > 0)")
    g.add_argument("--no-subvoxel", action="store_true", help="keep matches on voxel centres")
    g.add_argument("--no-forward-backward", action="store_true", help="skip the forward-backward check")
    g.add_argument(
        "--memory-budget",
        type=float,
        default=64.0,
        metavar="MB",
        help="working memory for a batch of queries (default 64 MB); sets the batch size",
    )
    g.add_argument(
        "--coarse-stride",
        type=int,
        default=None,
        help="coarse search step in voxels; 1 is exhaustive (default: two samples per finest-level voxel)",
    )
    g.add_argument(
        "--match-strategy",
        choices=["auto", "native", "upsampled"],
        default="auto",
        help="how the exact similarity is computed: native-resolution dot maps, or the descriptor "
        "upsampled once (few channels); the same matches; auto: the cheaper estimate (default)",
    )
    g.add_argument(
        "--upsampled-budget",
        type=float,
        default=1024.0,
        metavar="MB",
        help="memory the upsampled strategy may keep per scan (default 1024 MB)",
    )


def add_server_arguments(p: argparse.ArgumentParser) -> None:
    """Compute on a ``meddift serve`` machine instead (match, register)."""
    g = p.add_argument_group("server (compute on a `meddift serve` machine; docs/server.md)")
    g.add_argument("--server", metavar="URL", help="e.g. https://gpu-box:8765; the same outputs as a local run")
    g.add_argument("--token-file", help="file holding the server's token (or set MEDDIFT_TOKEN)")
    g.add_argument("--ca-file", help="CA certificate (PEM) that signed a self-signed server's certificate")


def open_engine(args, progress: Progress | None = None) -> Engine:
    """The engine of ``--server`` when given (the token read here and never printed), else this process's."""
    if not getattr(args, "server", None):
        return LocalEngine(progress)
    token = read_token(args.token_file)
    if token is None:
        print(
            "meddift: warning: no token (--token-file F or MEDDIFT_TOKEN); the server must run --no-auth",
            file=sys.stderr,
        )
    return RemoteEngine(args.server, token=token, ca_file=args.ca_file, progress=progress)


def add_registration_arguments(p) -> None:
    """How the dense map is found (register; match --prior dense)."""
    d = RegistrationOptions()
    g = p.add_argument_group("registration")
    g.add_argument(
        "--prealign",
        choices=PREALIGN_KINDS,
        default=d.prealign,
        help=f"automatic pre-alignment from global feature matches (default {d.prealign})",
    )
    g.add_argument(
        "--search",
        type=float,
        default=d.search_mm,
        metavar="MM",
        help=f"discrete search range around the pre-aligned position (default {d.search_mm:g} mm)",
    )
    g.add_argument(
        "--grid-spacing",
        type=float,
        default=None,
        metavar="MM",
        help="registration grid spacing (default: the fixed scan's voxel size, coarser on large scans)",
    )
    g.add_argument(
        "--smoothness",
        type=float,
        default=d.lam,
        metavar="LAMBDA",
        help=f"weight of the diffusion regulariser (default {d.lam:g})",
    )
    g.add_argument(
        "--iterations", type=int, default=d.iterations, help=f"Adam refinement iterations (default {d.iterations})"
    )


def registration_options(args) -> RegistrationOptions:
    """The options' own checks name the flags (errors.opt), so nothing is checked twice here."""
    return RegistrationOptions(
        prealign=args.prealign,
        search_mm=args.search,
        spacing_mm=args.grid_spacing,
        lam=args.smoothness,
        iterations=args.iterations,
    )


def initial_matrix(spec: str | None) -> np.ndarray | None:
    """``--initial``: a 4x4 RAS matrix file (.txt/.npy), or None."""
    return read_matrix_file(spec, "the initial transform") if spec else None


def engine_options(args) -> EngineOptions:
    """EngineOptions from the groups this subcommand has (the rest keep their defaults)."""
    kw = dict(backbone=args.backbone, weights_dir=args.weights_dir, device=args.device)
    if hasattr(args, "no_cache"):
        kw.update(cache_dir=args.cache_dir, use_cache=not args.no_cache)
    if hasattr(args, "timestep"):
        kw.update(
            timestep=args.timestep,
            levels=args.levels.split(",") if args.levels else None,
            ensemble=args.ensemble,
            latent=args.latent,
            region=args.region,
            seed=args.seed,
            size_policy=args.size_policy,
        )
    return EngineOptions(**kw)


def refuse_hu_offset(args) -> None:
    """The former ``--hu-offset`` shifted both scans; an intensity correction belongs to one."""
    if getattr(args, "hu_offset", None) is not None:
        raise InputError(
            "--hu-offset is gone: it shifted both scans, also the one already in HU; use "
            "--fixed-hu-offset and/or --moving-hu-offset for the scan stored without its rescale"
        )


def match_options(args) -> MatchOptions:
    """MatchOptions from the search group."""
    return MatchOptions(
        radius_mm=args.radius,
        subvoxel=not args.no_subvoxel,
        forward_backward=not args.no_forward_backward,
        coarse_stride=args.coarse_stride,
        memory_budget_mb=args.memory_budget,
        strategy=args.match_strategy,
        upsampled_budget_mb=args.upsampled_budget,
    )


def add_case_arguments(p) -> None:
    """The cases: the phantom suite and benchmark folders (evaluate, ablate)."""
    p.add_argument("--seeds", default="0,1", help="phantom seeds")
    p.add_argument("--amplitudes", default="15,25", help="phantom diaphragm amplitudes in mm")
    p.add_argument("--noise", default="20", help="phantom noise levels in HU")
    p.add_argument("--landmarks", type=int, default=20, help="landmarks per phantom case")
    p.add_argument("--no-phantom", action="store_true", help="skip the phantom suite")
    p.add_argument(
        "--no-hard-cases",
        action="store_true",
        help="phantom suite without its two harder cases (a repositioned patient, a contrast follow-up)",
    )
    p.add_argument("--learn2reg", metavar="ROOT", help="a Learn2Reg LungCT folder (imagesTr/, keypointsTr/)")
    p.add_argument("--learn2reg-split", default="Tr", choices=["Tr", "Ts"])
    p.add_argument("--dirlab-4dct", metavar="ROOT", help="a folder holding DIR-Lab Case1Pack ... Case10Pack")
    p.add_argument("--dirlab-copd", metavar="ROOT", help="a folder holding DIR-Lab copd1 ... copd10")
    p.add_argument(
        "--warped-ct",
        metavar="FILE",
        nargs="+",
        help="real CT files, each deformed by a known smooth motion (exact ground truth)",
    )
    p.add_argument(
        "--warped-variants",
        default="smooth,repositioned",
        help="comma list: smooth (the smooth field only), repositioned (then a rigid motion), "
        "contrast (the smooth field and soft tissue +120 HU)",
    )
    p.add_argument("--warped-amplitude", type=float, default=8.0, help="peak of the smooth displacement, mm")
    p.add_argument("--warped-wavelength", type=float, default=120.0, help="shortest wavelength of the field, mm")
    p.add_argument("--warped-rotation", type=float, default=8.0, help="repositioned: rotation about S, degrees")
    p.add_argument("--warped-shift", type=float, default=20.0, help="repositioned: translation length, mm")
    p.add_argument("--warped-noise", type=float, default=10.0, help="noise added to the warped scan, HU")
    p.add_argument("--warped-landmarks", type=int, default=30, help="landmarks per warped-CT case")
    p.add_argument("--warped-seed", type=int, default=0, help="seed of the motion and the noise")
