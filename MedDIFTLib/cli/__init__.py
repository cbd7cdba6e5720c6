"""The ``meddift`` command line: one entry point, a subcommand per job (one module each).

The engine below returns results and raises :class:`~MedDIFTLib.errors.MedDIFTError`; printing
them, and turning them into exit codes, happens here and nowhere else.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import MedDIFTError, render


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meddift",
        description="Find corresponding anatomical points between two 3D CT scans with diffusion features (MedDIFT).",
    )
    parser.add_argument("--version", action="version", version=f"meddift {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import batch, cache, demo, evaluate, match, recist, register, serve, weights

    match.add_parser(sub)
    register.add_parser(sub)
    demo.add_parser(sub)
    evaluate.add_parser(sub)
    evaluate.add_ablation_parser(sub)
    weights.add_parser(sub)
    cache.add_parser(sub)
    batch.add_parser(sub)
    serve.add_parser(sub)
    recist.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except MedDIFTError as err:
        print(f"meddift: error: {render(err, 'cli')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("meddift: cancelled", file=sys.stderr)
        return 130
