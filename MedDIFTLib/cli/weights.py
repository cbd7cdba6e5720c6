"""``meddift weights download|info``: get the MAISI v1 files and check them."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import render
from ..features.maisi import download, weights


def run_download(args) -> int:
    paths = download.download_weights(
        dest=args.dest, token=args.token, endpoint=args.endpoint, progress=not args.no_progress, force=args.force
    )
    print(f"MAISI v1 weights downloaded and verified:\n  {paths.autoencoder}\n  {paths.unet}")
    if args.dest and Path(args.dest).expanduser().resolve() != weights.default_weights_dir().resolve():
        print(
            f"MedDIFT looks in {weights.default_weights_dir()} by default: set MEDDIFT_WEIGHTS_DIR={args.dest} "
            "or pass --weights-dir to use these"
        )
    return 0


def run_info(args) -> int:
    folder, found = weights.locate_files(args.weights_dir)
    source = (
        "--weights-dir"
        if args.weights_dir
        else "MEDDIFT_WEIGHTS_DIR"
        if os.environ.get("MEDDIFT_WEIGHTS_DIR")
        else "the per-user default"
    )
    print(f"weights folder: {folder}  (from {source})")
    try:
        paths = weights.find_weights(folder)
    except weights.WeightsError as err:
        for key, path in found.items():
            print(f"{key}: {path or 'missing (' + Path(weights.FILES[key]).name + ')'}")
        print(f"status: missing. {render(err, 'cli')}")
        return 1
    report = weights.verify_weights(paths)
    ok, clean = True, True
    for key, entry in report.items():
        print(f"{key}: {entry['path']}")
        print(f"  size {entry['size']:,} bytes, sha256 {entry['sha256']}")
        print(f"  {_digest_line(Path(entry['path']).name, entry['known'])}")
        if entry["ok"]:
            extra = f", scale_factor {entry['scale_factor']:.6g}" if "scale_factor" in entry else ""
            load = entry["load"]
            how = "strictly" if load["strict"] else "WITHOUT strict key matching"
            print(f"  verifies against the {entry['config']} configuration (loaded {how}){extra}")
            clean = clean and load["strict"] and not load["unwrapped"] and not load["prefix"]
            for line in _load_lines(load):
                print(f"    {line}")
        else:
            ok = False
            print(f"  does NOT verify against the {entry['config']} configuration: {entry['error']}")
    print(
        "status: ready"
        if ok and clean
        else "status: ready, with the load differences listed above (none is used by the features)"
        if ok
        else "status: present but not usable (see above)"
    )
    return 0 if ok else 1


def _digest_line(name: str, known: str) -> str:
    release = weights.KNOWN_RELEASES.get(name)
    if known == "match":
        return f"digest: matches the released {name}"
    if known == "differs":
        assert release is not None  # "differs": compared with a published digest
        return (
            f"digest: differs from the released {name} ({release['size']:,} bytes, sha256 {release['sha256']}); "
            "reported, not refused: a re-saved copy can hold the same weights"
        )
    return "digest: no published digest is known for this file"


def _load_lines(load: dict) -> list:
    """Every difference of a load, in full: this is the report a user sends when weights do not load."""
    out = []
    if load["unwrapped"]:
        out.append(f"state dict found under '{load['unwrapped']}' (unwrapped, as NVIDIA's inference code does)")
    if load["prefix"]:
        out.append(f"'{load['prefix']}' removed from every key (saved from a DataParallel wrapper)")
    if load["ignored"]:
        out.append(f"entries that are not weights, ignored: {', '.join(load['ignored'])}")
    for title, keys in (
        ("missing from the file, kept as built", load["missing"]),
        ("unexpected in the file, ignored", load["unexpected"]),
        ("of another shape, not loaded", [f"{k} {tuple(a)} vs {tuple(b)}" for k, a, b in load["mismatched"]]),
    ):
        if keys:
            out.append(f"{len(keys)} key(s) {title}: {', '.join(keys)}")
    return out


def add_parser(sub) -> None:
    p = sub.add_parser(
        "weights",
        help="download or check the MAISI v1 weights",
        description=f"MAISI v1 weights from the gated Hugging Face repository {weights.HF_REPO_ID} "
        f"(accept its licence at {weights.REPO_URL} first).",
    )
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    d = wsub.add_parser(
        "download",
        help="download the MAISI v1 files (needs an access token)",
        description="Download autoencoder_v1.pt and diff_unet_3d_ddpm-ct.pt and verify them.",
    )
    d.add_argument("--token", help="Hugging Face access token (default: $HF_TOKEN or a saved `hf auth login`)")
    d.add_argument("--dest", help="target folder (default: $MEDDIFT_WEIGHTS_DIR or the per-user cache)")
    d.add_argument("--endpoint", help=argparse.SUPPRESS)  # a Hub mirror (HF_ENDPOINT works too); used by the tests
    d.add_argument("--force", action="store_true", help="download again even if the files are present")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.set_defaults(func=run_download)
    i = wsub.add_parser(
        "info",
        help="where the weights are and whether they verify",
        description="Show where MedDIFT looks for the weights, their sizes and SHA-256 (and whether "
        "they are the released files'), whether they load into the MAISI v1 networks, "
        "and every key that differs. Exit code 0 if ready, 1 if not.",
    )
    i.add_argument("--weights-dir", help="folder to check (default: $MEDDIFT_WEIGHTS_DIR or the per-user cache)")
    i.set_defaults(func=run_info)
    p.set_defaults(func=lambda args: p.print_help() or 0)
