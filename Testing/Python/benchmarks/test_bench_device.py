"""The GPU script runs on the CPU with small sizes, so that it is ready (not rotten) when a GPU comes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_bench_device_quick_on_cpu_writes_every_section(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "Testing/Benchmarks/bench_device.py"),
            "--device",
            "cpu",
            "--quick",
            "--tiny",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    r = json.loads((tmp_path / "device.json").read_text())
    assert r["device"] == "cpu" and r["config"] == "maisi-v1-ddpm-tiny-test"
    (e,) = r["extraction"]
    assert e["weights"].startswith("RANDOM") and e["network_input"] == [64, 64, 64]
    assert set(e["stages"]) >= {"preprocess", "vae encode", "unet"} and e["fallbacks"] == []
    assert r["oom_fallback"] == {"skipped": "no GPU: nothing to cap"}
    assert r["tiny_parity"]["ok"] and set(r["tiny_parity"]["cosine_per_level"]) == {"up0", "up1", "up2", "up3"}
    assert r["matching"]["ok"] and r["matching"]["identical_argmax"] == 1.0 and r["matching"]["points"] == 20
    reg = r["registration"]
    assert reg["ok"] and reg["max_point_difference_mm"] == 0.0 and reg["shape"] == [64, 64, 64]
    assert reg["cpu"]["tre_mm"] < 2.0  # the breathing is found (initial TRE several mm), on a 64^3 pair
    md = (tmp_path / "device.md").read_text()
    assert "RANDOM weights (timing only)" in md and "| 64x64x64 | 1 |" in md and "Dense registration" in md
