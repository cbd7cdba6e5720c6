"""Matching benchmark: the lean engine against the dense brute-force reference.

Setting of the issue: 300 queries against a 192x192x208 moving volume with
MAISI-shaped levels (512/256/128/64 channels at 1/16, 1/8, 1/4, 1/4 of a 256^3
network input). Each measurement runs in its own subprocess so that its peak
resident memory (ru_maxrss) is its own.

The dense reference in float32 needs 192*192*208*960*4 bytes = 29.5 GB for the
upsampled moving descriptor alone, more than this machine has; it is run with
the descriptor stored in bfloat16 (products in float32, chunk by chunk), the
usual way to make it fit, and its float32 size is printed alongside.

Run:  .venv/bin/python Testing/Benchmarks/bench_matching.py [--queries 300] [--skip-brute]

``--local`` measures instead the local search against the global one in one process, on a real
backbone's features: the thorax phantom pair at the size of the issue's CT pair (250x236x141 at
2 mm, breathing motion), weight-free MIND-SSC pyramids, ``--queries`` landmarks, ``--radius`` mm:
the global search, the former masked local search (whole coarse lattice, masked to the ball) and
the windowed one, with their ratios and whether they agree.

``--strategies`` times the global matching of the same phantom's landmarks with each exact strategy
forced (``native``: native-resolution dot maps; ``upsampled``: the descriptor upsampled once) and with
the automatic choice, each from a fresh matcher on the same pyramids in one process (wall and CPU
seconds; forward-backward on, as by default), prints the cost model's estimates and the ratios, and
checks that the three find the same voxels (exit status 1 if not).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "Python"))
sys.path.insert(0, str(HERE.parents[1]))  # this checkout's MedDIFTLib, not an installed one

SHAPE = (192, 192, 208)
SPACING = (1.75, 1.25, 1.75)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def build_inputs(folder: Path, n_queries: int) -> None:
    """Write the two pyramids and the query points (built once, loaded by each measurement)."""
    from MedDIFTLib.data.geometry import Grid, apply_affine
    from synthetic_pyramids import MAISI_LAYOUT, world_feature_pyramid

    grid = Grid(SHAPE, np.diag([*SPACING, 1.0]))
    world_feature_pyramid(grid, seed=0, layout=MAISI_LAYOUT, input_shape=(256, 256, 256)).save(folder / "fixed.pt")
    world_feature_pyramid(
        grid, seed=0, layout=MAISI_LAYOUT, input_shape=(256, 256, 256), shift_mm=(5.25, -3.75, 7.0), noise=0.5
    ).save(folder / "moving.pt")
    rng = np.random.default_rng(1)
    ijk = rng.uniform(20, np.asarray(SHAPE) - 21, size=(n_queries, 3))
    np.save(folder / "points.npy", apply_affine(grid.ijk_to_ras, ijk))


def make_inputs(n_queries: int):
    from MedDIFTLib.features.pyramid import FeaturePyramid

    folder = Path(os.environ["MEDDIFT_BENCH_DIR"])
    fixed = FeaturePyramid.load(folder / "fixed.pt")
    moving = FeaturePyramid.load(folder / "moving.pt")
    return moving.grid, fixed, moving, np.load(folder / "points.npy")[:n_queries]


def run_engine(n_queries: int) -> dict:
    import torch

    from MedDIFTLib.matching.search import Matcher, MatchOptions

    grid, fixed, moving, pts = make_inputs(n_queries)
    base = peak_rss_gb()
    out = {"inputs_peak_gb": base, "pyramid_gb": (fixed.nbytes() + moving.nbytes()) / 1e9}
    t = time.perf_counter()
    m = Matcher(fixed, moving, MatchOptions(forward_backward=False))
    res = m.match(pts)
    out["engine_s"] = time.perf_counter() - t
    out["engine_peak_gb"] = peak_rss_gb()
    np.save(os.environ["MEDDIFT_BENCH_OUT"], res.voxel)
    # interactive: one more query with everything cached, then its heatmap
    p = pts[:1] + 1.3
    lat = []
    for _ in range(5):
        t = time.perf_counter()
        m.match(p)
        lat.append(time.perf_counter() - t)
    out["query_ms"] = 1000 * float(np.median(lat))
    t = time.perf_counter()
    m.heatmap(p)
    out["heatmap_ms"] = 1000 * (time.perf_counter() - t)
    t = time.perf_counter()
    mfb = Matcher(fixed, moving, MatchOptions(forward_backward=True))
    mfb.match(pts)
    out["engine_with_fb_s"] = time.perf_counter() - t
    lat = []
    for _ in range(5):
        t = time.perf_counter()
        mfb.match(p)
        lat.append(time.perf_counter() - t)
    out["query_with_fb_ms"] = 1000 * float(np.median(lat))
    out["final_peak_gb"] = peak_rss_gb()
    del torch
    return out


def run_brute(n_queries: int) -> dict:
    import torch
    import torch.nn.functional as F

    grid, fixed, moving, pts = make_inputs(n_queries)
    out = {"inputs_peak_gb": peak_rss_gb()}
    t = time.perf_counter()
    n_vox = int(np.prod(SHAPE))
    channels = sum(lv.channels for lv in moving.levels)
    dense = torch.empty((n_vox, channels), dtype=torch.bfloat16)  # the concatenated, normalised descriptor
    c0 = 0
    for lv in moving.levels:
        feats = lv.features[None]
        # level by level at full size is what the reference does; channel chunks keep float32 temporaries bounded
        for cs in range(0, lv.channels, 64):
            part = F.interpolate(feats[:, cs : cs + 64], size=SHAPE, mode="trilinear", align_corners=False)[0]
            part = part.reshape(part.shape[0], -1).T  # (n_vox, c)
            if cs == 0:
                sq = part.pow(2).sum(1)
            else:
                sq += part.pow(2).sum(1)
            dense[:, c0 + cs : c0 + cs + part.shape[1]] = part.to(torch.bfloat16)
            del part
        inv = sq.sqrt().clamp_min(1e-12).reciprocal()
        for r0 in range(0, n_vox, 1 << 20):
            r1 = min(n_vox, r0 + (1 << 20))
            dense[r0:r1, c0 : c0 + lv.channels] = (dense[r0:r1, c0 : c0 + lv.channels].float() * inv[r0:r1, None]).to(
                torch.bfloat16
            )
        c0 += lv.channels
    out["build_s"] = time.perf_counter() - t
    q = []
    for lv in moving.levels:
        d = fixed.level(lv.name).sample(pts)
        q.append(d / d.norm(dim=1, keepdim=True))
    q = torch.cat(q, 1) / len(moving.levels)  # (Q, C): dot = mean of cosines
    best = torch.full((len(pts),), -float("inf"))
    arg = torch.zeros(len(pts), dtype=torch.long)
    for r0 in range(0, n_vox, 1 << 18):
        r1 = min(n_vox, r0 + (1 << 18))
        s = dense[r0:r1].float() @ q.T  # (chunk, Q)
        v, i = s.max(0)
        better = v > best
        best = torch.where(better, v, best)
        arg = torch.where(better, i + r0, arg)
    out["brute_s"] = time.perf_counter() - t
    out["brute_peak_gb"] = peak_rss_gb()
    out["float32_descriptor_gb"] = n_vox * channels * 4 / 1e9
    np.save(os.environ["MEDDIFT_BENCH_OUT"], np.stack(np.unravel_index(arg.numpy(), SHAPE), 1))
    return out


def phantom_pyramids(n_queries: int, shape, spacing: float):
    """The thorax phantom pair, its landmarks and its MIND-SSC pyramids (the --local and --strategies input)."""
    import MedDIFTLib
    from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
    from MedDIFTLib.features import create_backbone

    print(f"engine: {Path(MedDIFTLib.__file__).parent}")
    t = time.perf_counter()
    pair = make_pair(shape=tuple(shape), spacing=(spacing,) * 3, seed=0)
    pts = sample_landmarks(pair, n=n_queries, seed=0).points
    bb = create_backbone("mind-ssc", device="cpu")
    pf, pm = bb.extract(pair.fixed), bb.extract(pair.moving)
    print(
        f"phantom pair {tuple(shape)} at {spacing} mm, MIND-SSC levels "
        f"{[(lv.name, lv.channels, lv.shape) for lv in pm.levels]}, {len(pts)} landmarks, "
        f"{os.cpu_count()} CPU cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
        f"features {time.perf_counter() - t:.1f} s"
    )
    return pts, pf, pm


def run_local(n_queries: int, radius: float, shape, spacing: float, masked_queries: int) -> None:
    """Global vs masked-local vs windowed-local search on one phantom pair, same process, same pyramids."""
    from dense_reference import MaskedLatticeMatcher
    from MedDIFTLib.matching.search import Matcher, MatchOptions

    pts, pf, pm = phantom_pyramids(n_queries, shape, spacing)
    print(f"radius {radius} mm")

    def timed(opts, windowed, q):
        m = (Matcher if windowed else MaskedLatticeMatcher)(pf, pm, opts)
        t0 = time.perf_counter()
        # one-time setup, timed apart: the norm maps of the coarse lattice, both ways
        _ = m.lattice.inv_norms, m.target.levels[0].gram, m.backward().lattice.inv_norms
        setup = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = m.match(q)
        return res, setup, time.perf_counter() - t0

    k = min(masked_queries, len(pts))  # the slow paths on a subset; the per-point figures compare
    # the native strategy in all three, so that the norm maps timed apart are what each search reads
    # (the strategies are compared by --strategies)
    g, gs, gt = timed(MatchOptions(strategy="native"), True, pts[:k])
    ml, ms, mt = timed(MatchOptions(radius_mm=radius, strategy="native"), False, pts[:k])
    wl, ws, wt = timed(MatchOptions(radius_mm=radius, strategy="native"), True, pts)
    wk = wl.voxel[:k]
    same = np.all(ml.voxel == wk, axis=1).mean()
    print(f"global search:        {gt:8.1f} s for {k} points ({gt / k:.2f} s/point), setup {gs:.1f} s")
    print(f"masked local search:  {mt:8.1f} s for {k} points ({mt / k:.2f} s/point), setup {ms:.1f} s")
    print(f"windowed local search:{wt:8.1f} s for {len(pts)} points ({wt / len(pts):.3f} s/point), setup {ws:.1f} s")
    print(
        f"per point, windowed / global: {100 * (wt / len(pts)) / (gt / k):.1f}%; windowed / masked: "
        f"{100 * (wt / len(pts)) / (mt / k):.1f}%; same voxel as the masked search: {100 * same:.1f}% of {k}; "
        f"max point difference {np.abs(ml.points - wl.points[:k]).max():.2e} mm"
    )
    print(
        f"(native strategy and forward-backward on in all three; global vs local differ in results by design: "
        f"{100 * np.all(g.voxel == wk, axis=1).mean():.0f}% same voxel)"
    )


def run_strategies(n_queries: int, shape, spacing: float, repeats: int) -> int:
    """Global matching with each exact strategy forced, and with the automatic choice, on the same pyramids."""
    from MedDIFTLib.matching.search import Matcher, MatchOptions

    pts, pf, pm = phantom_pyramids(n_queries, shape, spacing)
    names = ("native", "upsampled", "auto")
    probe = Matcher(pf, pm)
    c = probe.lattice.costs()
    print(
        f"coarse lattice {probe.lattice.shape} (stride {probe.stride}); estimated work per query: native "
        f"{c.native_query / 1e9:.2f}, upsampled {c.upsampled_query / 1e9:.2f} GFLOP-eq; one-time: native "
        f"{c.native_setup / 1e9:.1f}, upsampled {c.upsampled_setup / 1e9:.1f}; upsampled descriptor "
        f"{c.upsampled_bytes / 2**20:.0f} MB (budget {probe.options.upsampled_budget_mb:.0f} MB)"
    )
    best, res = {}, {}
    for _ in range(repeats):  # interleaved, the fastest of each kept: the cores are shared
        for name in names:
            t, cpu = time.perf_counter(), time.process_time()
            m = Matcher(pf, pm, MatchOptions(strategy=name))  # fresh: its setup is part of its cost
            res[name] = m.match(pts)
            wall, cpu = time.perf_counter() - t, time.process_time() - cpu
            if name not in best or wall < best[name][0]:
                best[name] = (wall, cpu)
    print(
        f"global matching of {len(pts)} points, forward-backward on, from a fresh matcher (setup included), "
        f"fastest of {repeats}:"
    )
    for name in names:
        chose = (
            f" (chose {res[name].extra['strategy']}, back {res[name].extra['fb_strategy']})" if name == "auto" else ""
        )
        print(f"  {name + chose:40s} {best[name][0]:7.1f} s wall  {best[name][1]:7.1f} s CPU")
    fast = min(("native", "upsampled"), key=lambda k: best[k][0])
    print(
        f"upsampled / native: {best['upsampled'][0] / best['native'][0]:.2f} wall, "
        f"{best['upsampled'][1] / best['native'][1]:.2f} CPU; auto / faster forced ({fast}): "
        f"{best['auto'][0] / best[fast][0]:.2f} wall, {best['auto'][1] / best[fast][1]:.2f} CPU"
    )
    same = {k: float(np.all(res[k].voxel == res["native"].voxel, axis=1).mean()) for k in ("upsampled", "auto")}
    diff = max(np.abs(res[k].points - res["native"].points).max() for k in ("upsampled", "auto"))
    print(
        f"same voxel as native: upsampled {100 * same['upsampled']:.1f}%, auto {100 * same['auto']:.1f}% of "
        f"{len(pts)}; max point difference {diff:.2e} mm; max similarity difference "
        f"{np.abs(res['upsampled'].similarity - res['native'].similarity).max():.1e}"
    )
    return 0 if min(same.values()) == 1.0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--skip-brute", action="store_true")
    ap.add_argument("--child", choices=["build", "engine", "brute"], help=argparse.SUPPRESS)
    ap.add_argument("--local", action="store_true", help="local vs global search on the phantom (see above)")
    ap.add_argument("--radius", type=float, default=25.0)
    ap.add_argument("--shape", type=int, nargs=3, default=[250, 236, 141])
    ap.add_argument("--spacing", type=float, default=2.0)
    ap.add_argument("--slow-queries", type=int, default=20, help="--local: points for the global and masked runs")
    ap.add_argument("--strategies", action="store_true", help="native vs upsampled vs auto on the phantom (see above)")
    ap.add_argument("--repeats", type=int, default=1, help="--strategies: runs of each, the fastest kept")
    args = ap.parse_args()
    if args.strategies:
        raise SystemExit(run_strategies(args.queries, args.shape, args.spacing, args.repeats))
    if args.local:
        run_local(args.queries, args.radius, args.shape, args.spacing, args.slow_queries)
        return
    if args.child == "build":
        build_inputs(Path(os.environ["MEDDIFT_BENCH_DIR"]), args.queries)
        return
    if args.child:
        fn = run_engine if args.child == "engine" else run_brute
        print(json.dumps(fn(args.queries)))
        return
    import tempfile

    results, voxels = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        # every step in its own child: Linux carries a parent's peak RSS over fork+exec,
        # so this parent stays small and each child's ru_maxrss is its own
        for which in ["build"] + (["engine"] if args.skip_brute else ["engine", "brute"]):
            env = dict(os.environ, MEDDIFT_BENCH_OUT=str(Path(tmp) / f"{which}.npy"), MEDDIFT_BENCH_DIR=tmp)
            proc = subprocess.run(
                [sys.executable, __file__, "--child", which, "--queries", str(args.queries)],
                env=env,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                raise SystemExit(f"{which} run failed")
            if which == "build":
                continue
            results[which] = json.loads(proc.stdout.strip().splitlines()[-1])
            voxels[which] = np.load(env["MEDDIFT_BENCH_OUT"])
    e = results["engine"]
    print(
        f"moving volume {SHAPE} at {SPACING} mm, MAISI-shaped levels of a 256^3 input, {args.queries} queries, "
        f"{os.cpu_count()} CPU cores"
    )
    print(
        f"pyramids (fixed + moving, float32): {e['pyramid_gb']:.2f} GB; process peak after loading them: "
        f"{e['inputs_peak_gb']:.2f} GB"
    )
    print(
        f"engine:      {e['engine_s']:7.1f} s   peak RSS {e['engine_peak_gb']:.2f} GB   (with forward-backward: "
        f"{e['engine_with_fb_s']:.1f} s)"
    )
    print(
        f"interactive: one query {e['query_ms']:.0f} ms (with forward-backward {e['query_with_fb_ms']:.0f} ms), "
        f"full heatmap {e['heatmap_ms']:.0f} ms"
    )
    if "brute" in results:
        b = results["brute"]
        print(
            f"brute force: {b['brute_s']:7.1f} s   peak RSS {b['brute_peak_gb']:.2f} GB   (descriptor in bfloat16; "
            f"in float32 it alone would take {b['float32_descriptor_gb']:.1f} GB)"
        )
        same = np.all(voxels["engine"] == voxels["brute"], axis=1)
        print(
            f"speed-up {b['brute_s'] / e['engine_s']:.1f}x, peak memory ratio "
            f"{b['brute_peak_gb'] / e['engine_peak_gb']:.1f}x, "
            f"identical argmax {100 * same.mean():.1f}% (max difference "
            f"{np.abs(voxels['engine'] - voxels['brute']).max()} voxels; bf16 rounding can flip near-ties)"
        )


if __name__ == "__main__":
    main()
