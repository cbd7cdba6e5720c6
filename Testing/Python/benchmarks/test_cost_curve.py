"""The cost-curve benchmark: its fit, its per-child measurements, its pairs and one real run at the smallest size."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "Testing" / "Benchmarks"))

import bench_cost_curve as cc  # noqa: E402  (a script folder, not a package)
import cost_curve_pairs  # noqa: E402
from cost_curve_pairs import ct_pair  # noqa: E402

from MedDIFTLib.data.geometry import Volume, make_ijk_to_ras  # noqa: E402


def test_fit_exponent_returns_the_power_of_an_exact_power_law():
    voxels = np.array([64, 96, 128, 256, 512 * 512 * 300 ** (1 / 3)], dtype=float) ** 3
    assert cc.fit_exponent(voxels, 2.5e-6 * voxels**1.37) == pytest.approx(1.37, abs=1e-9)  # float rounding only
    assert cc.fit_exponent(voxels, np.full(len(voxels), 7.0)) == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(cc.fit_exponent([64**3, 64**3], [1.0, 2.0]))  # one size: no slope to fit


def test_exponents_fit_finished_runs_only():
    rows = [{"method": "a", "voxels": v, "wall_s": 1e-4 * v, "status": "ok"} for v in (1000, 8000, 64000)] + [
        {"method": "a", "voxels": 10**6, "wall_s": 5.0, "status": "timeout>5s"}
    ]
    assert cc.exponents(rows)["a"] == pytest.approx(1.0, abs=1e-9)


def test_parse_sizes_reads_cube_edges_and_full_shapes_and_refuses_the_rest():
    assert cc.parse_sizes("64, 96,512x512x300") == [(64, 64, 64), (96, 96, 96), (512, 512, 300)]
    with pytest.raises(cc.InputError, match="neither a cube edge"):
        cc.parse_sizes("64,big")
    with pytest.raises(cc.InputError, match="at least 16 voxels"):
        cc.parse_sizes("8")


def test_an_unknown_method_is_refused_before_any_pair_is_built(tmp_path, capsys):
    out = tmp_path / "out"
    assert cc.main(["--sizes", "24", "--methods", "dense,elastix", "--out", str(out)]) == 2
    assert "unknown 'elastix'" in capsys.readouterr().err
    assert not out.exists()


def test_run_child_measures_that_childs_own_cpu_time_and_peak_memory(tmp_path):
    # 400 MB touched, then about 0.5 s of CPU spinning: numbers of the child, not of this process
    code = (
        "import time,numpy as np; a=np.ones(50_000_000); t=time.process_time()\nwhile time.process_time()-t<0.5: pass"
    )
    r = cc.run_child([sys.executable, "-c", code], 120, 8, tmp_path / "log.txt")
    assert r["status"] == "ok"
    assert r["peak_rss_mb"] > 380  # 50 M float64 = 381 MiB resident at least
    assert 0.5 <= r["cpu_s"] < r["wall_s"] + 1.0  # its own spin, whatever the load


def test_run_child_stops_a_run_past_its_timeout_and_records_it(tmp_path):
    r = cc.run_child([sys.executable, "-c", "import time; time.sleep(60)"], 1.0, 8, tmp_path / "log.txt")
    assert r["status"] == "timeout>1s" and 1.0 <= r["wall_s"] < 20.0


def test_run_child_stops_a_run_over_its_memory_limit_and_records_it(tmp_path):
    code = "import time,numpy as np; a=np.ones(125_000_000); time.sleep(60)"  # 1 GB resident, then waits
    r = cc.run_child([sys.executable, "-c", code], 60, 0.25, tmp_path / "log.txt")
    assert r["status"] == "memory>0.25GB" and r["wall_s"] < 30.0


def test_run_child_reports_a_failed_run_with_its_exit_code(tmp_path):
    r = cc.run_child([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], 60, 8, tmp_path / "log.txt")
    assert r["status"] == "error (exit 3)" and "boom" in (tmp_path / "log.txt").read_text()


class _Shift:
    """A pure translation: fixed point p is at p + d in the moving scan."""

    def __init__(self, d):
        self.d = np.asarray(d, dtype=float)

    def moving_to_fixed(self, pts):
        return pts - self.d


def test_ct_pair_at_the_native_shape_is_the_scan_and_its_exact_shift():
    rng = np.random.default_rng(0)
    native = Volume(
        rng.normal(0, 100, (20, 18, 16)).astype(np.float32), make_ijk_to_ras((2.0, 2.5, 3.0), (-10.0, 5.0, 30.0))
    )
    fixed, moving = ct_pair(native, _Shift([2.0, 0.0, 0.0]), (20, 18, 16), noise_hu=0.0)
    np.testing.assert_allclose(fixed.ijk_to_ras, native.ijk_to_ras, atol=1e-12)
    np.testing.assert_allclose(fixed.array, native.array, atol=1e-3)  # trilinear at voxel centres: float32 only
    # one voxel along i (2 mm): moving[i] = native[i - 1], air entering at i = 0
    np.testing.assert_allclose(moving.array[1:], native.array[:-1], atol=1e-3)
    assert np.all(moving.array[0] == -1000.0)


def test_ct_pair_at_half_the_shape_covers_the_same_box():
    native = Volume(np.zeros((20, 18, 16), np.float32), make_ijk_to_ras((2.0, 2.5, 3.0), (-10.0, 5.0, 30.0)))
    fixed, _ = ct_pair(native, _Shift([0.0, 0.0, 0.0]), (10, 9, 8), noise_hu=0.0)
    np.testing.assert_allclose(fixed.spacing, (4.0, 5.0, 6.0))
    lo, hi = native.grid.bounds_ras()
    lo2, hi2 = fixed.grid.bounds_ras()
    np.testing.assert_allclose((lo2, hi2), (lo, hi), atol=1e-9)  # voxel edges kept


def test_cost_curve_at_the_smallest_size_writes_table_csv_and_plot(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), PYTHONPATH=str(REPO))
    cmd = [sys.executable, str(REPO / "Testing/Benchmarks/bench_registration.py"), "--sizes", "24"]
    cmd += ["--methods", "dense", "--pair-source", "phantom", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with open(tmp_path / "cost_curve.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == cc.COLUMNS and len(rows) == 1
    (row,) = rows
    assert (row["size"], row["voxels"], row["method"], row["status"]) == ("24x24x24", "13824", "dense", "ok")
    assert float(row["cpu_s"]) > 0 and float(row["peak_rss_mb"]) > 50  # a Python process with torch loaded
    assert float(row["tre_mean_mm"]) < float(row["initial_tre_mm"])  # the 15 mm breathing is partly found
    assert "| size | voxels | spacing_mm | method | status | wall_s |" in proc.stdout
    assert "pairs: the thorax phantom" in proc.stdout and "dense: wall time ~ voxels^nan, CPU time" in proc.stdout
    assert (tmp_path / "cost_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("cost-curve-*"))  # the pair and the method's outputs are removed


def test_pair_source_falls_back_to_the_phantom_and_says_so_when_the_ct_is_absent(tmp_path, monkeypatch):
    monkeypatch.setattr(cost_curve_pairs, "DEFAULT_CT", tmp_path / "absent.nii.gz")
    source, desc = cost_curve_pairs.pair_source("auto")
    assert source is None and desc.startswith("the thorax phantom") and "absent.nii.gz is absent" in desc
    with pytest.raises(cc.InputError, match="nope.nii is not a file"):
        cost_curve_pairs.pair_source(str(tmp_path / "nope.nii"))
