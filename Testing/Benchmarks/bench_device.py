"""Everything a GPU must show, in one command that fits the few minutes a GPU is lent for.

    python Testing/Benchmarks/bench_device.py [--device cuda|cpu] [--quick] [--tiny] --out DIR

Writes ``DIR/device.json`` (every figure) and ``DIR/device.md`` (a table for the README):

1. extraction with real-size MAISI v1 networks and RANDOM weights (timing and memory only, labelled
   so): time and peak device memory of each stage (preprocess, VAE encode, UNet with hooks) through
   the backbone's own code path (fp16 autocast and VAE splits on CUDA), for a 256^3 input (no VAE
   splits) and a 512x512x256 input (MAISI's 8 splits); ``--quick``: one 64^3 input;
2. the out-of-memory fallback for real: the process's GPU memory is capped with
   ``torch.cuda.set_per_process_memory_fraction`` below what the first attempt needs, and the run
   must still finish through the fallback (more splits, then the CPU), which it records;
3. features of the tiny test checkpoints (real MONAI networks, random weights, real file format) on
   the device against the CPU: cosine per level (target >= 0.999);
4. matching of 300 points and one click on the device against the CPU (the matcher given the device,
   as ``meddift match --device`` does): identical argmax on >= 99% of points, the rest within one
   voxel; click latency after caching; for the automatic strategy and each forced one;
5. dense registration (the weight-free MIND-SSC backbone, whose features need no weights) of a
   breathing phantom pair on the device against the CPU: time after the features are cached (the
   target is a 256^3 pair in under 5 s on a GPU), TRE at the phantom's landmarks on both, and the
   largest difference between the two fields; ``--quick``: a 64^3 pair.

On the CPU (``--device cpu``) stage 2 is skipped (nothing to cap) and 3-4 compare the CPU with
itself, which keeps the script from rotting: the test suite runs it with ``--quick --tiny``
(``--tiny``: the tiny configuration also for stage 1, so that it takes seconds).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "Python"))
sys.path.insert(0, str(HERE.parents[1]))

from MedDIFTLib.data.geometry import Volume  # noqa: E402
from MedDIFTLib.features.maisi.backbone import MaisiBackbone  # noqa: E402
from MedDIFTLib.features.maisi.networks import MaisiConfig  # noqa: E402


def _ct(shape, spacing=1.0, seed=0) -> Volume:
    """A CT-like volume in HU (air, soft tissue, bright blobs); content does not change timing."""
    rng = np.random.default_rng(seed)
    arr = np.full(shape, -800.0, np.float32)
    s = [slice(n // 6, n - n // 6) for n in shape]
    arr[tuple(s)] = 40.0
    arr += rng.normal(0, 30, shape).astype(np.float32)
    return Volume(arr, np.diag([spacing, spacing, spacing, 1.0]), "bench")


def _peak(device) -> float:
    """Peak memory since the last reset, GB: allocated GPU memory, or the process's peak RSS on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


class StageClock:
    """A progress callback that times each stage (its 0 and 1 reports) and its peak memory."""

    def __init__(self, device):
        self.device, self.start, self.out = device, {}, {}

    def __call__(self, stage, fraction):
        if fraction == 0.0 and stage not in self.start:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
                torch.cuda.reset_peak_memory_stats(self.device)
            self.start[stage] = time.perf_counter()
        elif fraction == 1.0 and stage in self.start:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.out[stage] = {
                "s": round(time.perf_counter() - self.start[stage], 3),
                "peak_gb": round(_peak(self.device), 3),
            }


def extraction(device, cfg, shape, splits, policy="paper"):
    """One volume through the backbone with random weights; per-stage time and peak memory."""
    bb = MaisiBackbone(
        device=str(device),
        config=replace(cfg, num_splits=splits),
        random_init=True,
        size_policy=policy,
        target_spacing_mm=1.5,
        levels=("up0", "up1", "up2", "up3"),
    )
    bb.load()
    clock = StageClock(device)
    t = time.perf_counter()
    pyr = bb.extract(_ct(shape, 1.5 if policy == "spacing" else 1.0), progress=clock)
    total = time.perf_counter() - t
    return {
        "volume": list(shape),
        "network_input": pyr.identity["input_shape"],
        "vae_splits": splits,
        "weights": "RANDOM (timing only, not pretrained)",
        "total_s": round(total, 3),
        "stages": clock.out,
        "fallbacks": list(bb.notices),
    }


def oom_fallback(device, cfg, shape):
    """Cap the process below the first attempt's need and check that the fallback finishes the job."""
    if device.type != "cuda":
        return {"skipped": "no GPU: nothing to cap"}
    first = extraction(device, cfg, shape, 1)
    need = first["stages"].get("vae encode", {}).get("peak_gb", 0.0)
    total = torch.cuda.get_device_properties(device).total_memory / 1e9
    frac = max(0.01, 0.5 * need / total)
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(frac, device)
    try:
        capped = extraction(device, cfg, shape, 1)
        capped["cap_gb"] = round(frac * total, 2)
        capped["uncapped_vae_peak_gb"] = need
        capped["fallback_taken"] = bool(capped["fallbacks"])
        return capped
    except Exception as exc:  # the fallback itself failed: record it, the rest of the script still runs
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}", "cap_gb": round(frac * total, 2)}
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()


def tiny_parity(device, folder):
    """Tiny checkpoints (real format, random weights) on the device vs the CPU: cosine per level."""
    from tiny_maisi import TINY_CONFIG, write_tiny_checkpoints

    write_tiny_checkpoints(folder, seed=5)
    vol = _ct((64, 64, 64), 1.5, seed=1)
    pyr = {}
    for dev in (device, torch.device("cpu")):
        bb = MaisiBackbone(weights_dir=folder, device=str(dev), config=TINY_CONFIG, size_policy="spacing")
        pyr[dev.type] = bb.extract(vol)
    out = {}
    for a, b in zip(pyr[device.type].levels, pyr["cpu"].levels):
        x, y = a.features.float().cpu().flatten(), b.features.float().flatten()
        out[a.name] = round(float(torch.nn.functional.cosine_similarity(x, y, dim=0)), 6)
    return {"cosine_per_level": out, "min": min(out.values()), "target": 0.999, "ok": min(out.values()) >= 0.999}, pyr


def matching_parity(device, pyr_dev, n_points=300):
    """Matching on the device vs on the CPU, the way ``meddift match --device`` runs it: the same CPU
    pyramids, the matcher given the device (it moves what it needs; the session does the same). Argmax
    agreement and click latency with the automatic strategy, and the agreement of each forced one."""
    from MedDIFTLib.data.geometry import apply_affine
    from MedDIFTLib.matching.search import Matcher, MatchOptions

    cpu = pyr_dev["cpu"]
    grid = cpu.grid
    rng = np.random.default_rng(0)
    pts = apply_affine(grid.ijk_to_ras, rng.uniform(2, np.asarray(grid.shape) - 3, size=(n_points, 3)))
    runs = {}
    for strategy in ("auto", "native", "upsampled"):
        res, times = {}, {}
        for name, dev in (("device", device), ("cpu", torch.device("cpu"))):
            m = Matcher(cpu, cpu, MatchOptions(strategy=strategy), device=dev)
            t = time.perf_counter()
            res[name] = m.match(pts)
            times[name] = time.perf_counter() - t
            m.match(pts[:1])  # warm: the click below is "after caching"
            t = time.perf_counter()
            m.match(pts[:1])
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times[name + "_click_ms"] = 1000 * (time.perf_counter() - t)
        diff = np.abs(res["device"].voxel - res["cpu"].voxel).max(axis=1)
        runs[strategy] = {
            "strategy_used": res["device"].extra["strategy"],
            "identical_argmax": round(float((diff == 0).mean()), 4),
            "max_voxel_difference": int(diff.max()),
            "within_one_voxel": round(float((diff <= 1).mean()), 4),
            "match_s": {"device": round(times["device"], 3), "cpu": round(times["cpu"], 3)},
            "click_ms": {"device": round(times["device_click_ms"], 2), "cpu": round(times["cpu_click_ms"], 2)},
            "ok": bool((diff == 0).mean() >= 0.99 and diff.max() <= 1),
        }
    out = dict(runs.pop("auto"), points=n_points, forced=runs)
    out["ok"] = out["ok"] and all(r["ok"] for r in runs.values())
    return out


def dense_registration(device, size: int, spacing: float):
    """``MatchSession.register`` on the device and on the CPU, features cached first (the target is
    for cached features): seconds, TRE, and how far the two fields differ."""
    from MedDIFTLib.evaluation.motion import BreathingMotion
    from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
    from MedDIFTLib.session import EngineOptions, MatchSession

    pair = make_pair(shape=(size,) * 3, spacing=(spacing,) * 3, seed=0, motion=BreathingMotion(amplitude_mm=20.0))
    lm = sample_landmarks(pair, n=20, seed=0)
    truth = pair.true_moving_points(lm.points)
    out, maps = {"shape": [size] * 3, "spacing_mm": spacing}, {}
    for name, dev in (("device", device), ("cpu", torch.device("cpu"))):
        session = MatchSession(EngineOptions(backbone="mind-ssc", device=str(dev), use_cache=False))
        for vol in (pair.fixed, pair.moving):
            session.features(vol, backbone=session.registration_backbone())
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t = time.perf_counter()
        field = session.register(pair.fixed, pair.moving)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        maps[name] = field.map_points(lm.points)
        out[name] = {
            "s": round(time.perf_counter() - t, 2),
            "tre_mm": round(float(np.linalg.norm(maps[name] - truth, axis=1).mean()), 3),
            "folding_share": field.jacobian_stats()["folding_share"],
        }
    out["max_point_difference_mm"] = round(float(np.linalg.norm(maps["device"] - maps["cpu"], axis=1).max()), 4)
    out["ok"] = out["max_point_difference_mm"] < 0.5
    return out


def markdown(r) -> str:
    lines = [
        f"# MedDIFT on {r['device_name']} ({r['device']})",
        "",
        f"torch {r['torch']}, {r['when']}; MAISI networks with RANDOM weights (timing only).",
        "",
        "| input | splits | preprocess | VAE encode | UNet + hooks | total | fallbacks |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in r["extraction"]:
        st = e["stages"]
        cell = lambda k, st=st: f"{st[k]['s']:.2f} s, {st[k]['peak_gb']:.2f} GB" if k in st else "-"  # noqa: E731
        lines.append(
            f"| {'x'.join(map(str, e['network_input']))} | {e['vae_splits']} | {cell('preprocess')} | "
            f"{cell('vae encode')} | {cell('unet')} | {e['total_s']:.2f} s | {len(e['fallbacks'])} |"
        )
    lines += [
        "",
        f"Out-of-memory fallback: {json.dumps(r['oom_fallback'])}",
        f"Tiny checkpoints, device vs CPU cosine per level: {json.dumps(r['tiny_parity'])}",
        f"Matching, device vs CPU: {json.dumps(r['matching'])}",
        f"Dense registration, device vs CPU: {json.dumps(r['registration'])}",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    ap.add_argument("--quick", action="store_true", help="small sizes (about a minute on a CPU)")
    ap.add_argument("--tiny", action="store_true", help="tiny network configuration for stage 1 too (tests)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.tiny:
        from tiny_maisi import TINY_CONFIG as cfg
    else:
        cfg = MaisiConfig.v1()
    r = {
        "device": str(device),
        "torch": torch.__version__,
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU",
        "quick": args.quick,
        "config": cfg.name,
    }
    runs = (
        [((64, 64, 64), 1, "spacing")] if args.quick else [((256, 256, 256), 1, "paper"), ((512, 512, 256), 8, "paper")]
    )
    r["extraction"] = []
    for shape, splits, policy in runs:
        r["extraction"].append(extraction(device, cfg, shape, splits, policy))
        print(json.dumps(r["extraction"][-1]), flush=True)
    r["oom_fallback"] = oom_fallback(device, cfg, runs[0][0] if args.quick else (256, 256, 256))
    print("oom fallback:", json.dumps(r["oom_fallback"]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        r["tiny_parity"], pyr = tiny_parity(device, Path(tmp))
    print("tiny parity:", json.dumps(r["tiny_parity"]), flush=True)
    try:
        r["matching"] = matching_parity(device, pyr, 20 if args.quick else 300)
    except Exception as exc:  # recorded, so that one failing part never loses the others' figures
        r["matching"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}", "ok": False}
    print("matching:", json.dumps(r["matching"]), flush=True)
    try:
        r["registration"] = dense_registration(device, 64 if args.quick else 256, 4.0 if args.quick else 1.25)
    except Exception as exc:  # recorded, as above
        r["registration"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}", "ok": False}
    print("registration:", json.dumps(r["registration"]), flush=True)
    (out / "device.json").write_text(json.dumps(r, indent=2))
    (out / "device.md").write_text(markdown(r))
    ok = r["tiny_parity"]["ok"] and r["matching"].get("ok", False) and r["registration"].get("ok", False)
    print(f"wrote {out / 'device.json'} and {out / 'device.md'}; parity {'ok' if ok else 'NOT ok'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
