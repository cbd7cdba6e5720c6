"""``meddift batch``: every pair of a cohort CSV, on Ray (locally, or on a cluster with --address)."""

from __future__ import annotations

import sys
import time

from ..errors import InputError
from .options import (
    add_backbone_arguments,
    add_feature_arguments,
    add_search_arguments,
    engine_options,
    match_options,
    refuse_hu_offset,
)


class BatchProgress:
    """A progress bar over pairs with the stage counts; redrawn in place on a terminal, one line
    per change (at most every 2 s) otherwise, so that logs of cluster jobs stay readable."""

    def __init__(self, stream=None, width: int = 30):
        self.stream, self.width, self.last_line = stream, width, 0.0

    def line(self, c) -> str:
        total = max(c.pairs, 1)
        filled = int(self.width * c.finished / total)
        bar = "#" * filled + "." * (self.width - filled)
        return (
            f"[{bar}] {c.finished}/{c.pairs} pairs | scans encoded {c.scans_encoded} "
            f"(ready {c.scans_ready}/{c.scans_planned}) | matched {c.matched} | failed {c.failed} | "
            f"done earlier {c.done_earlier} | {c.elapsed_s:.0f}s"
        )

    def __call__(self, counts) -> None:
        stream = self.stream or sys.stderr
        tty = getattr(stream, "isatty", lambda: False)()
        last = counts.finished == counts.pairs
        if tty:
            stream.write("\r" + self.line(counts) + ("\n" if last else ""))
        elif last or time.time() - self.last_line >= 2.0:
            stream.write(self.line(counts) + "\n")
            self.last_line = time.time()
        stream.flush()


def run(args) -> int:
    from ..batch.runner import run_batch

    if args.mask:
        raise InputError(
            "--mask is not supported by meddift batch (one mask for every pair is rarely right); "
            "run the pairs that need one with meddift match"
        )
    if args.retries < 0:
        raise InputError("--retries must be 0 or more")
    refuse_hu_offset(args)
    if args.fixed_hu_offset or args.moving_hu_offset:
        raise InputError(
            "--fixed-hu-offset/--moving-hu-offset belong to one pair's scans; a cohort mixes scans, so "
            "meddift batch does not take them: store the scans in HU (rescaled) first"
        )
    engine = engine_options(args)
    engine.cache_dir = args.cache_dir
    result = run_batch(
        args.cohort,
        args.out,
        engine,
        match_options(args),
        mode=args.mode,
        address=args.address,
        prior=args.prior,
        retries=args.retries,
        num_cpus=args.num_cpus,
        resume=not args.restart,
        progress=BatchProgress(),
    )
    c = result.counts
    print(
        f"meddift: {c.matched} pairs matched, {c.done_earlier} done earlier, {c.failed} failed; "
        f"{c.scans} distinct scans, {c.scans_encoded} encoded in this run -> {result.summary_md}",
        file=sys.stderr,
    )
    for pid, rec in result.records.items():
        if rec.get("status") == "failed":
            print(f"meddift: pair {pid} failed: {rec.get('error')}", file=sys.stderr)
    return 1 if c.failed else 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "batch",
        help="match every pair of a cohort CSV on Ray (resumable)",
        description="Match every pair of COHORT (CSV with id,fixed,moving,points[,truth,prior]; paths relative to "
        "its folder) on Ray: each distinct scan is encoded once, failed pairs are recorded and the "
        "cohort goes on, and a second run does only what is not verifiably complete. Exit status 1 "
        "when some pair failed. Needs `pip install 'meddift[cluster]'`.",
    )
    p.add_argument("cohort", help="cohort CSV")
    p.add_argument("--out", required=True, help="output folder: pairs/<id>/, summary.csv, summary.md")
    p.add_argument(
        "--address",
        help="an existing Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: start Ray on this machine)",
    )
    p.add_argument(
        "--mode",
        choices=["dense", "points"],
        default="dense",
        help="dense (the default, as for meddift match): a displacement field per pair and the points from it; "
        "points: the paper's argmax for each landmark (no registration; faster, less accurate)",
    )
    p.add_argument("--cache-dir", help="feature cache on storage every worker sees (default OUT/features)")
    p.add_argument("--retries", type=int, default=2, help="retries of a task whose worker died (default 2)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all; ignored with --address)")
    p.add_argument("--restart", action="store_true", help="redo every pair, even those complete in OUT")
    add_backbone_arguments(p)
    add_feature_arguments(p)
    add_search_arguments(p)
    p.set_defaults(func=run)
