"""Dense registration cost and accuracy on a 128^3 phantom pair (2.5 mm), features cached.

Prints the time of each stage of :func:`MedDIFTLib.registration.register` (wall and CPU seconds),
the TRE at the phantom's landmarks, the folding share, and ConvexAdam's time on the same pair
in the same run (the ratio is what carries over between machines).

    python Testing/Benchmarks/bench_registration.py [--size 128] [--no-convexadam]

With ``--sizes`` it draws the cost curve instead (``bench_cost_curve.py``: dense, ANTs SyN and
ConvexAdam from 64^3 to full-size CT, each in a child process; its ``--help`` lists the options):

    python Testing/Benchmarks/bench_registration.py --sizes 64,96,128,512x512x300 --out DIR
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cost_curve  # noqa: E402  (the script's folder is not a package)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--spacing", type=float, default=2.5)
    p.add_argument("--no-convexadam", action="store_true")
    args = p.parse_args(argv)

    from MedDIFTLib.evaluation.motion import BreathingMotion
    from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
    from MedDIFTLib.registration import RegistrationOptions
    from MedDIFTLib.session import EngineOptions, MatchSession

    pair = make_pair(
        shape=(args.size,) * 3, spacing=(args.spacing,) * 3, seed=0, motion=BreathingMotion(amplitude_mm=20.0)
    )
    lm = sample_landmarks(pair, n=20, seed=0)
    truth = pair.true_moving_points(lm.points)
    session = MatchSession(EngineOptions(backbone="mind-ssc", use_cache=False))
    bb = session.registration_backbone()
    for vol in (pair.fixed, pair.moving):  # features first: the target is for cached features
        session.features(vol, backbone=bb)
    stages = {}
    last = [time.perf_counter(), time.process_time(), None]

    def progress(stage, frac):
        now, cpu = time.perf_counter(), time.process_time()
        if last[2] is not None and last[2] != stage:
            w, c = stages.get(last[2], (0.0, 0.0))
            stages[last[2]] = (w + now - last[0], c + cpu - last[1])
            last[0], last[1] = now, cpu
        if last[2] != stage:
            last[0], last[1] = now, cpu
        last[2] = stage

    t0, c0 = time.perf_counter(), time.process_time()
    field = session.register(pair.fixed, pair.moving, RegistrationOptions(), progress=progress)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    progress("done", 1.0)
    err = np.linalg.norm(field.map_points(lm.points) - truth, axis=1)
    init = np.linalg.norm(lm.points - truth, axis=1)
    js = field.jacobian_stats()
    print(
        f"phantom {args.size}^3 at {args.spacing} mm, MIND-SSC levels {bb.level_names}, grid {field.info['grid_shape']}"
    )
    print(f"register: {wall:.1f} s wall, {cpu:.1f} s CPU")
    for stage, (w, c) in stages.items():
        print(f"  {stage:<22} {w:7.1f} s wall {c:7.1f} s CPU")
    print(
        f"TRE: initial {init.mean():.2f} mm -> {err.mean():.2f} mm mean, {np.median(err):.2f} median, {err.max():.2f} max"
    )
    print(f"folding share {js['folding_share']:.5f}, Jacobian {js['jacobian_min']:.3f}..{js['jacobian_max']:.3f}")
    if not args.no_convexadam:
        try:
            from MedDIFTLib.evaluation.cases import Case
            from MedDIFTLib.evaluation.methods import ConvexAdam
        except ImportError as err_:
            print(f"ConvexAdam: not run ({err_})")
            return 0
        if ConvexAdam.unavailable_reason():
            print(ConvexAdam.unavailable_reason())
            return 0
        case = Case("phantom", "bench", pair.fixed, pair.moving, lm, lm)
        t0, c0 = time.perf_counter(), time.process_time()
        pts = ConvexAdam().map_points(case)
        cw, cc = time.perf_counter() - t0, time.process_time() - c0
        cerr = np.linalg.norm(pts - truth, axis=1)
        print(
            f"ConvexAdam (MIND, same pair): {cw:.1f} s wall, {cc:.1f} s CPU, TRE {cerr.mean():.2f} mm mean; "
            f"MedDIFT dense / ConvexAdam wall time = {wall / cw:.2f}"
        )
    return 0


if __name__ == "__main__":
    if any(a == "--sizes" or a.startswith("--sizes=") for a in sys.argv[1:]):
        raise SystemExit(bench_cost_curve.main(sys.argv[1:]))
    raise SystemExit(main())
