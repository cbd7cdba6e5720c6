"""What a click costs once the dense field is known, and what the dense default costs on the demo pair.

In one run, on the demo pair (128^3 phantom at 2.5 mm, 20 landmarks, weight-free MIND-SSC):

1. ``meddift match`` with the default prior (dense) against ``meddift register``, each a fresh
   process with a fresh cache (features extracted in both), interleaved, the fastest of
   ``--repeats`` runs each: the target is a ratio of at most 1.10;
2. reopening the registered pair: a new session, the field read from the cache (target under 1 s);
3. a click (one landmark through ``MatchSession.match``, engine time) answered from the field
   against a live point-matching click (the paper's argmax: within 25 mm, and global), p50 and p95
   over the landmarks (target for the field's click: p95 at most 20 ms).

    PYTHONPATH=. python Testing/Benchmarks/bench_click.py [--size 128] [--spacing 2.5] [--clicks 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Testing" / "Python" / "service"))  # server_helpers: a real TLS `meddift serve`


def _cli(cache_dir, *args) -> float:
    """Wall seconds of one ``meddift`` command in its own process (which must succeed), with its cache."""
    env = dict(os.environ, PYTHONPATH=str(REPO), MEDDIFT_CACHE_DIR=str(cache_dir))
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "MedDIFTLib.cli", *map(str, args)], env=env, capture_output=True, text=True
    )
    if res.returncode:
        raise SystemExit(f"meddift {' '.join(map(str, args[:1]))} failed:\n{res.stderr}")
    return time.perf_counter() - t0


def _clicks(session, pair, lm, prior, n) -> np.ndarray:
    """Engine milliseconds of ``n`` one-point matches, the first one not counted (it builds the matcher)."""
    session.match(pair.fixed, pair.moving, lm.subset([0]), prior=prior)
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        session.match(pair.fixed, pair.moving, lm.subset([i % len(lm)]), prior=prior)
        out.append(1000.0 * (time.perf_counter() - t0))
    return np.asarray(out)


def _worker_and_server_clicks(d: Path, lm, n: int) -> dict:
    """Wall milliseconds of one-landmark clicks with the default (dense) prior through the background
    worker and through a real ``meddift serve`` on 127.0.0.1 (TLS), both reading the field the
    ``meddift match`` run left in the cache ``d/m0``; the clicks alternate, so the host's load hits both
    alike, and the first of each (loading the field) is not counted."""
    from server_helpers import ServerProcess, make_tls, make_tokens

    from MedDIFTLib.service.client import WorkerClient

    cache = d / "m0"
    env = dict(os.environ, MEDDIFT_WEIGHTS_DIR=str(d / "none"), MEDDIFT_CACHE_DIR=str(cache))
    token_file, tokens = make_tokens(d)
    worker = WorkerClient(env=env)
    worker.start(timeout=120)
    server = ServerProcess(
        d / "srv", "--token-file", token_file, "--device", "cpu", tls=make_tls(d / "tls"), cache_dir=cache
    )
    clients = {"worker": worker, "server": server.client(tokens[0])}
    times: dict = {k: [] for k in clients}
    try:
        for c in clients.values():
            c.request("configure", engine={"backbone": "mind-ssc"}, matching={})
            c.request("load_volume", name="f", path=str(d / "fixed.nii.gz"))
            c.request("load_volume", name="m", path=str(d / "moving.nii.gz"))
        for i in range(n + 1):
            for key, c in clients.items():
                t0 = time.perf_counter()
                c.request("match", fixed="f", moving="m", points=[lm.points[i % len(lm)].tolist()], labels=["p"])
                if i:
                    times[key].append(1000.0 * (time.perf_counter() - t0))
        clients["server"].stop()
    finally:
        worker.kill()
        server.kill()
    return {k: np.asarray(v) for k, v in times.items()}


def _row(name: str, ms: np.ndarray) -> str:
    return f"  {name:<38} p50 {np.percentile(ms, 50):7.1f} ms   p95 {np.percentile(ms, 95):7.1f} ms"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--spacing", type=float, default=2.5)
    p.add_argument("--clicks", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2, help="runs of each command; the fastest counts")
    args = p.parse_args(argv)

    from MedDIFTLib.data.image_io import write_volume
    from MedDIFTLib.data.landmark_io import write_points
    from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
    from MedDIFTLib.matching.search import MatchOptions
    from MedDIFTLib.session import EngineOptions, MatchSession

    pair = make_pair(shape=(args.size,) * 3, spacing=(args.spacing,) * 3, seed=0)
    lm = sample_landmarks(pair, n=20, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        write_volume(pair.fixed, d / "fixed.nii.gz")
        write_volume(pair.moving, d / "moving.nii.gz")
        write_points(lm, d / "lm.csv")
        common = ["--backbone", "mind-ssc", "--force"]
        t_match, t_reg = [], []
        for r in range(args.repeats):  # interleaved, each with a fresh cache: the host's load hits both alike
            t_match.append(
                _cli(
                    d / f"m{r}",
                    "match",
                    d / "fixed.nii.gz",
                    d / "moving.nii.gz",
                    "--points",
                    d / "lm.csv",
                    "--out",
                    d / "m.csv",
                    *common,
                )
            )
            t_reg.append(
                _cli(d / f"r{r}", "register", d / "fixed.nii.gz", d / "moving.nii.gz", "--out", d / "reg", *common)
            )
        t_match, t_reg = min(t_match), min(t_reg)

        engine = EngineOptions(backbone="mind-ssc", device="cpu", cache_dir=str(d / "m0"))
        t0 = time.perf_counter()
        session = MatchSession(engine, MatchOptions(radius_mm=None))
        session.register(pair.fixed, pair.moving)  # the field `meddift match` left in the cache
        t_reopen = time.perf_counter() - t0

        field_ms = _clicks(session, pair, lm, None, args.clicks)
        live25 = _clicks(session.with_matching(MatchOptions(radius_mm=25.0)), pair, lm, "none", args.clicks)
        live = _clicks(session, pair, lm, "none", args.clicks)
        wire = _worker_and_server_clicks(d, lm, args.clicks)

    print(
        f"demo pair {args.size}^3 at {args.spacing} mm, weight-free MIND-SSC, {os.cpu_count()} CPU(s), "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    print(f"  meddift match (default prior: dense)   {t_match:7.1f} s wall (fastest of {args.repeats})")
    print(f"  meddift register                       {t_reg:7.1f} s wall (fastest of {args.repeats})")
    print(f"  ratio match / register                 {t_match / t_reg:7.2f}   (target <= 1.10)")
    print(f"  reopening the pair: field from cache   {t_reopen:7.2f} s   (target < 1 s)")
    print(f"clicks, engine time over {args.clicks} clicks (MatchSession.match of one landmark):")
    print(_row("field lookup (default prior)", field_ms) + "   (target p95 <= 20 ms)")
    print(_row("live point match, 25 mm window", live25))
    print(_row("live point match, global", live))
    print(f"clicks through a process, wall time over {args.clicks} clicks (default prior: the field's lookup):")
    print(_row("background worker (pipe)", wire["worker"]))
    print(_row("meddift serve on 127.0.0.1 (TLS)", wire["server"]))
    gap = np.percentile(wire["server"], 95) - np.percentile(wire["worker"], 95)
    print(f"  server - worker, p95                   {gap:+7.1f} ms   (target <= +20 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
