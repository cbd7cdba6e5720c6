"""Cohort benchmark: ``meddift batch`` on a local Ray with one and two workers against a sequential
loop of ``meddift match``, on sixteen phantom pairs over eight distinct scans.

Cohort: two patients, each a baseline and three follow-ups (4 scans), eight pairs each
(baseline to each follow-up and back, then two follow-up pairs); weight-free MIND-SSC,
local search 25 mm. Compared, each measured as the user runs it (a fresh process, wall time):

- loop, no cache: ``meddift match --no-cache`` per pair (every pair encodes both scans);
- loop, shared cache: ``meddift match --cache-dir FRESH`` per pair (later pairs reuse pyramids);
- loop in one process: the CLI's ``main`` called per pair (no interpreter start per pair);
- batch with 1 and 2 Ray workers (``--num-cpus``), fresh OUT, Ray's start included.

Memory per worker: the peak RSS each Ray worker reports with its results (summary.csv).

Run:  .venv/bin/python Testing/Benchmarks/bench_batch.py [--size 96] [--spacing 3.5] [--landmarks 10]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OPTS = ["--backbone", "mind-ssc", "--radius", "25"]


def _env():
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MEDDIFT_WEIGHTS_DIR="/nonexistent")
    return env


def _run(cmd) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _pairs(csv_path: Path):
    with open(csv_path) as f:
        return list(csv.DictReader(f))


def loop(csv_path: Path, work: Path, extra: list) -> float:
    base = csv_path.parent
    t0 = time.perf_counter()
    for p in _pairs(csv_path):
        _run(
            [
                sys.executable,
                "-m",
                "MedDIFTLib.cli",
                "match",
                str(base / p["fixed"]),
                str(base / p["moving"]),
                "--points",
                str(base / p["points"]),
                "--out",
                str(work / f"{p['id']}.csv"),
                "--force",
            ]
            + OPTS
            + extra
        )
    return time.perf_counter() - t0


def loop_in_process(csv_path: Path, work: Path) -> float:
    code = (
        "import sys, csv, time; from pathlib import Path; from MedDIFTLib.cli import main\n"
        f"b = Path({str(csv_path.parent)!r}); t0 = time.perf_counter()\n"
        f"for p in csv.DictReader(open({str(csv_path)!r})):\n"
        "    assert main(['match', str(b / p['fixed']), str(b / p['moving']), '--points', str(b / p['points']),"
        f" '--out', str(Path({str(work)!r}) / (p['id'] + '.csv')), '--force', '--no-cache'] + {OPTS!r}) == 0\n"
    )
    return _run([sys.executable, "-c", code])


def batch(csv_path: Path, out: Path, workers: int) -> tuple[float, list]:
    seconds = _run(
        [
            sys.executable,
            "-m",
            "MedDIFTLib.cli",
            "batch",
            str(csv_path),
            "--out",
            str(out),
            "--num-cpus",
            str(workers),
            "--mode",
            "points",
        ]
        + OPTS
    )
    rows = _pairs(out / "summary.csv")
    assert all(r["status"] == "ok" for r in rows), rows
    return seconds, [float(r["worker_peak_rss_mb"]) for r in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--spacing", type=float, default=3.5)
    ap.add_argument("--landmarks", type=int, default=10)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from MedDIFTLib.batch.phantom_cohort import write_phantom_cohort

    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        tmp = Path(tmp)
        csv_path = write_phantom_cohort(
            tmp / "cohort",
            patients=2,
            followups=3,
            landmarks=args.landmarks,
            shape=(args.size,) * 3,
            spacing=(args.spacing,) * 3,
            pairs_per_patient=8,
        )
        pairs = _pairs(csv_path)
        scans = {p[k] for p in pairs for k in ("fixed", "moving")}
        print(
            f"cohort: {len(pairs)} pairs over {len(scans)} distinct scans, {args.size}^3 at {args.spacing} mm, "
            f"{args.landmarks} landmarks per pair, MIND-SSC, radius 25 mm; {os.cpu_count()} CPU cores"
        )
        rows = []
        rows.append(
            (
                "loop of `meddift match --no-cache` (a process per pair)",
                loop(csv_path, tmp / "loop1", ["--no-cache"]),
                None,
            )
        )
        rows.append(
            (
                "loop of `meddift match`, one fresh feature cache",
                loop(csv_path, tmp / "loop2", ["--cache-dir", str(tmp / "loopcache")]),
                None,
            )
        )
        rows.append(("loop of the CLI's main in one process, no cache", loop_in_process(csv_path, tmp / "loop3"), None))
        for workers in (1, 2):
            seconds, rss = batch(csv_path, tmp / f"batch{workers}", workers)
            rows.append((f"`meddift batch`, {workers} Ray worker{'s' if workers > 1 else ''}", seconds, max(rss)))
        print("\n| run | wall time (s) | peak RSS per worker (MB) |\n|---|---|---|")
        for name, seconds, rss in rows:
            print(f"| {name} | {seconds:.1f} | {'' if rss is None else f'{rss:.0f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
