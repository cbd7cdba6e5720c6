"""``meddift weights download|info``: get the MAISI v1 files and check them."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from . import weights
from .errors import WeightsError


def run_download(args) -> int:
    paths = weights.download_weights(dest=args.dest, token=args.token, endpoint=args.endpoint,
                                     progress=not args.no_progress)
    print(f"MAISI v1 weights downloaded and verified:\n  {paths.autoencoder}\n  {paths.unet}")
    return 0


def run_info(args) -> int:
    folder = Path(args.weights_dir) if args.weights_dir else weights.default_weights_dir()
    from_env = not args.weights_dir and "MEDDIFT_WEIGHTS_DIR" in os.environ
    print(f"weights folder: {folder}" + ("  (from MEDDIFT_WEIGHTS_DIR)" if from_env else ""))
    try:
        paths = weights.find_weights(folder)
    except WeightsError as err:
        print(f"status: missing. {err}")
        return 1
    report = weights.verify_weights(paths)
    ok = True
    for key, entry in report.items():
        print(f"{key}: {entry['path']}")
        print(f"  size {entry['size']:,} bytes, sha256 {entry['sha256']}")
        if entry["ok"]:
            extra = f", scale_factor {entry['scale_factor']:.6g}" if "scale_factor" in entry else ""
            print(f"  verifies against the MAISI v1 configuration{extra}")
        else:
            ok = False
            print(f"  does NOT verify: {entry['error']}")
    print("status: ready" if ok else "status: present but not usable")
    return 0 if ok else 1


def add_parser(sub) -> None:
    p = sub.add_parser("weights", help="download or check the MAISI v1 weights",
                       description=f"MAISI v1 weights from the gated Hugging Face repository {weights.HF_REPO_ID}.")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    d = wsub.add_parser("download", help="download the MAISI v1 files (needs an access token)")
    d.add_argument("--token", help="Hugging Face access token (default: $HF_TOKEN or a saved login)")
    d.add_argument("--dest", help="target folder (default: $MEDDIFT_WEIGHTS_DIR or the user cache)")
    d.add_argument("--endpoint", help=argparse.SUPPRESS)  # a Hub mirror; used by the tests
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.set_defaults(func=run_download)
    i = wsub.add_parser("info", help="where the weights are and whether they verify")
    i.add_argument("--weights-dir", help="folder to check (default: $MEDDIFT_WEIGHTS_DIR or the user cache)")
    i.set_defaults(func=run_info)
    p.set_defaults(func=lambda args: p.print_help() or 0)
