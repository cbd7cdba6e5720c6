"""Feature-extraction benchmark: time and peak memory per stage of the MAISI backbone.

Full-size MAISI v1 networks (random initialisation: the cost does not depend
on the weights), float32 on the CPU, for a 128^3 and a 256x256x128 network
input. Stages: preprocess (orientation, HU window, resize), VAE encode, UNet
without hooks, UNet with the up-block hooks (the extraction itself). Each size
runs in its own process; a sampling thread records the peak RSS of each stage.

Run:  .venv/bin/python Testing/Benchmarks/bench_extraction.py [--sizes 128x128x128 256x256x128] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time


class StagePeak:
    """Peak resident memory while a ``with`` block runs (sampled every 20 ms)."""

    def __init__(self):
        import psutil

        self.proc = psutil.Process()

    def __enter__(self):
        self.peak = self.proc.memory_info().rss
        self.stop = False
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        self.t0 = time.perf_counter()
        return self

    def _sample(self):
        while not self.stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self.stop = True
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        return False


def run_size(size, device: str) -> dict:
    import numpy as np
    import torch

    from MedDIFTLib.data.geometry import Volume, make_ijk_to_ras
    from MedDIFTLib.features.maisi.backbone import LEVEL_NAMES, MaisiBackbone
    from MedDIFTLib.features.maisi.networks import (
        REGION_SCALE,
        UpBlockRecorder,
        build_scheduler,
        region_one_hot,
    )
    from MedDIFTLib.features.preprocess import prepare

    rng = np.random.default_rng(0)
    # a CT-sized volume that the paper policy resizes to exactly ``size``
    vol = Volume(rng.normal(-400, 400, size).astype(np.float32), make_ijk_to_ras((1.5, 1.5, 2.5), (0, 0, 0)))
    bb = MaisiBackbone(random_init=True, device=device)
    out = {"size": list(size), "device": device, "threads": torch.get_num_threads()}
    with StagePeak() as st:
        vae, unet, sf, _ = bb.load()
    out["load_s"], out["load_peak_gb"] = st.seconds, st.peak / 1e9
    with StagePeak() as st:
        prep = prepare(vol)
    out["preprocess_s"], out["preprocess_peak_gb"] = st.seconds, st.peak / 1e9
    assert tuple(prep.tensor.shape[2:]) == tuple(size)
    dev = bb.device
    with StagePeak() as st, torch.inference_mode():
        z_mu, z_sigma = vae.encode(prep.tensor.to(dev))
    out["vae_s"], out["vae_peak_gb"] = st.seconds, st.peak / 1e9
    sched = build_scheduler(bb.config)
    t = torch.tensor([20], device=dev)
    x = sched.add_noise(z_mu, torch.randn_like(z_mu), t)
    kw = dict(
        timesteps=t,
        top_region_index_tensor=region_one_hot("thorax").to(dev),
        bottom_region_index_tensor=region_one_hot("thorax").to(dev),
        spacing_tensor=torch.tensor(prep.input_spacing * REGION_SCALE, dtype=torch.float32, device=dev)[None],
    )
    with StagePeak() as st, torch.inference_mode():
        unet(x, **kw)
    out["unet_s"], out["unet_peak_gb"] = st.seconds, st.peak / 1e9
    with StagePeak() as st, torch.inference_mode(), UpBlockRecorder(unet) as rec:
        unet(x, **kw)
    out["unet_hooks_s"], out["unet_hooks_peak_gb"] = st.seconds, st.peak / 1e9
    out["levels"] = {LEVEL_NAMES[i]: list(o.shape[1:]) for i, o in sorted(rec.outputs.items())}
    out["levels_gb"] = sum(o.numel() * 4 for o in rec.outputs.values()) / 1e9
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["128x128x128", "256x256x128"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_size(tuple(int(s) for s in args.child.split("x")), args.device)))
        return
    print(
        f"MAISI v1 networks (random initialisation), device {args.device}, {os.cpu_count()} CPU cores; "
        "times in s, peak RSS of the process in GB during the stage"
    )
    print(f"{'input':>12} | {'preprocess':>12} | {'VAE encode':>14} | {'UNet':>14} | {'UNet+hooks':>14} | levels (MB)")
    for size in args.sizes:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", size, "--device", args.device], capture_output=True, text=True
        )
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"size {size} failed")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        cell = lambda k, r=r: f"{r[k + '_s']:6.1f}s {r[k + '_peak_gb']:5.2f}GB"  # noqa: E731
        print(
            f"{size:>12} | {cell('preprocess'):>12} | {cell('vae'):>14} | {cell('unet'):>14} | "
            f"{cell('unet_hooks'):>14} | {1000 * r['levels_gb']:.0f}  {r['levels']}"
        )


if __name__ == "__main__":
    main()
