"""``meddift weights download|info``: get the MAISI v1 files and check them."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import render
from ..features.maisi import download, weights


def run_download(args) -> int:
    paths = download.download_weights(dest=args.dest, token=args.token, endpoint=args.endpoint,
                                     progress=not args.no_progress, force=args.force)
    print(f"MAISI v1 weights downloaded and verified:\n  {paths.autoencoder}\n  {paths.unet}")
    if args.dest and Path(args.dest).expanduser().resolve() != weights.default_weights_dir().resolve():
        print(f"MedDIFT looks in {weights.default_weights_dir()} by default: set MEDDIFT_WEIGHTS_DIR={args.dest} "
              "or pass --weights-dir to use these")
    return 0


def run_info(args) -> int:
    folder, found = weights.locate_files(args.weights_dir)
    source = ("--weights-dir" if args.weights_dir else
              "MEDDIFT_WEIGHTS_DIR" if os.environ.get("MEDDIFT_WEIGHTS_DIR") else "the per-user default")
    print(f"weights folder: {folder}  (from {source})")
    try:
        paths = weights.find_weights(folder)
    except weights.WeightsError as err:
        for key, path in found.items():
            print(f"{key}: {path or 'missing (' + Path(weights.FILES[key]).name + ')'}")
        print(f"status: missing. {render(err, 'cli')}")
        return 1
    report = weights.verify_weights(paths)
    ok = True
    for key, entry in report.items():
        print(f"{key}: {entry['path']}")
        print(f"  size {entry['size']:,} bytes, sha256 {entry['sha256']}")
        if entry["ok"]:
            extra = f", scale_factor {entry['scale_factor']:.6g}" if "scale_factor" in entry else ""
            print(f"  verifies against the {entry['config']} configuration{extra}")
        else:
            ok = False
            print(f"  does NOT verify against the {entry['config']} configuration: {entry['error']}")
    print("status: ready" if ok else "status: present but not usable (see above)")
    return 0 if ok else 1


def add_parser(sub) -> None:
    p = sub.add_parser("weights", help="download or check the MAISI v1 weights",
                       description=f"MAISI v1 weights from the gated Hugging Face repository {weights.HF_REPO_ID} "
                                   f"(accept its licence at {weights.REPO_URL} first).")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    d = wsub.add_parser("download", help="download the MAISI v1 files (needs an access token)",
                        description="Download autoencoder_v1.pt and diff_unet_3d_ddpm-ct.pt and verify them.")
    d.add_argument("--token", help="Hugging Face access token (default: $HF_TOKEN or a saved `hf auth login`)")
    d.add_argument("--dest", help="target folder (default: $MEDDIFT_WEIGHTS_DIR or the per-user cache)")
    d.add_argument("--endpoint", help=argparse.SUPPRESS)  # a Hub mirror (HF_ENDPOINT works too); used by the tests
    d.add_argument("--force", action="store_true", help="download again even if the files are present")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.set_defaults(func=run_download)
    i = wsub.add_parser("info", help="where the weights are and whether they verify",
                        description="Show where MedDIFT looks for the weights, their sizes and SHA-256, and whether "
                                    "they load strictly into the MAISI v1 networks. Exit code 0 if ready, 1 if not.")
    i.add_argument("--weights-dir", help="folder to check (default: $MEDDIFT_WEIGHTS_DIR or the per-user cache)")
    i.set_defaults(func=run_info)
    p.set_defaults(func=lambda args: p.print_help() or 0)
