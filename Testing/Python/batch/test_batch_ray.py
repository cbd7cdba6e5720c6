"""``meddift batch`` on a real local Ray (two CPUs, started once for the module): scans encoded
once, results identical to ``meddift match``, a killed worker retried, a broken file reported
while the rest finish, an interrupted run restarted doing only the rest.

Phantom cohort: one patient, a baseline and two follow-ups (3 distinct scans, 48^3 at 6.5 mm),
six pairs, the weight-free MIND-SSC backbone.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'meddift[cluster]')")

from MedDIFTLib.batch.phantom_cohort import write_phantom_cohort  # noqa: E402
from MedDIFTLib.batch.runner import MATCHED, run_batch  # noqa: E402
from MedDIFTLib.cli import main as cli_main  # noqa: E402
from MedDIFTLib.data.landmark_io import read_points  # noqa: E402
from MedDIFTLib.errors import CancelledError  # noqa: E402
from MedDIFTLib.matching.search import MatchOptions  # noqa: E402
from MedDIFTLib.session import EngineOptions  # noqa: E402

OPTS = ["--backbone", "mind-ssc", "--radius", "25"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_phantom_cohort(tmp_path_factory.mktemp("cohort"), patients=1, followups=2, landmarks=6)


def engine():
    return EngineOptions(backbone="mind-ssc")


def matching():
    return MatchOptions(radius_mm=25.0)


def _pairs(csv):
    lines = csv.read_text().splitlines()[1:]
    return [dict(zip(("id", "fixed", "moving", "points", "truth"), ln.split(","))) for ln in lines]


@pytest.fixture(scope="module")
def reference(cohort, tmp_path_factory):
    """Each pair matched by ``meddift match`` (its own process state, no shared cache)."""
    out = tmp_path_factory.mktemp("reference")
    ref = {}
    for p in _pairs(cohort):
        target = out / f"{p['id']}.csv"
        assert (
            cli_main(
                [
                    "match",
                    str(cohort.parent / p["fixed"]),
                    str(cohort.parent / p["moving"]),
                    "--points",
                    str(cohort.parent / p["points"]),
                    "--out",
                    str(target),
                    "--no-cache",
                    "--prior",
                    "none",
                ]
                + OPTS
            )
            == 0
        )  # the batch's points mode is the paper's argmax
        ref[p["id"]] = read_points(target)
    return ref


def _same(out, reference, ids):
    for pid in ids:
        got = read_points(out / "pairs" / pid / MATCHED)
        want = reference[pid]
        assert got.labels == want.labels
        np.testing.assert_array_equal(got.points, want.points)
        for name in ("similarity", "confidence", "fb_error_mm"):
            np.testing.assert_array_equal(got.values[name], want.values[name])


def test_each_scan_encoded_once_and_results_identical_to_match(cohort, reference, tmp_path):
    # the baseline a second time under another name: still one scan (content digest)
    csv = tmp_path / "c" / "cohort.csv"
    shutil.copytree(cohort.parent, csv.parent)
    shutil.copy(csv.parent / "scans/p0_t0.nii.gz", csv.parent / "scans/copy_of_t0.nii.gz")
    with open(csv, "a") as f:
        f.write(
            "copy_t0_to_t1,scans/copy_of_t0.nii.gz,scans/p0_t1.nii.gz,scans/p0_t0_points.csv,scans/p0_t1_points.csv\n"
        )
    out = tmp_path / "out"
    seen = []
    res = run_batch(csv, out, engine(), matching(), mode="points", progress=lambda c: seen.append(c.finished))
    c = res.counts
    assert (c.pairs, c.matched, c.failed, c.scans) == (7, 7, 0, 3)
    assert c.scans_encoded == 3 and len(res.extractions) == 3 and c.reencoded == 0
    assert sum(e["encoded"] for e in res.extractions) == 3
    assert len(list((out / "features").glob("*.pt"))) == 3
    assert seen[-1] == 7
    _same(out, reference, reference)
    np.testing.assert_array_equal(
        read_points(out / "pairs/copy_t0_to_t1" / MATCHED).points, reference["p0_t0_to_t1"].points
    )
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 8 and summary[0].startswith("id,status,seconds,points,tre_mean_mm")
    row = dict(zip(summary[0].split(","), summary[1].split(",")))
    assert row["status"] == "ok" and float(row["tre_mean_mm"]) > 0 and float(row["worker_peak_rss_mb"]) > 0
    md = (out / "summary.md").read_text()
    assert "distinct scans: 3; encoded in this run: 3" in md and "7 matched in this run" in md


def _our_workers(name):
    import psutil

    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.cmdline() and proc.cmdline()[0].startswith(f"ray::{name}"):
                found.append(proc)
        except psutil.Error:
            pass
    return found


def test_a_killed_task_is_retried_and_the_cohort_completes(cohort, reference, tmp_path):
    out = tmp_path / "out"
    box, killed = {}, []
    runner = threading.Thread(
        target=lambda: box.update(res=run_batch(cohort, out, engine(), matching(), mode="points", retries=2))
    )
    runner.start()
    deadline = time.time() + 120
    while runner.is_alive() and not killed and time.time() < deadline:
        for proc in _our_workers("match_pair"):
            os.kill(proc.pid, signal.SIGKILL)
            killed.append(proc.pid)
            break
        time.sleep(0.005)
    runner.join(180)
    assert killed, "no matching task was seen running: nothing was killed"
    c = box["res"].counts
    assert (c.matched, c.failed) == (6, 0)
    _same(out, reference, reference)


def test_a_broken_file_is_reported_and_the_others_finish(cohort, tmp_path, capsys):
    csv = tmp_path / "c" / "cohort.csv"
    shutil.copytree(cohort.parent, csv.parent)
    broken = csv.parent / "scans/p0_t2.nii.gz"
    # exists, cannot be read (a gzip truncated after its header is read by SimpleITK without error: not used here)
    broken.write_bytes(b"\x1f\x8b not really a NIfTI file")
    out = tmp_path / "out"
    rc = cli_main(["batch", str(csv), "--out", str(out), "--mode", "points"] + OPTS)
    err = capsys.readouterr().err
    assert rc == 1 and "2 pairs matched" in err and "4 failed" in err
    assert "pair p0_t0_to_t2 failed: moving scan" in err and "p0_t2.nii.gz" in err
    for pid in ("p0_t0_to_t1", "p0_t1_to_t0"):
        assert (out / "pairs" / pid / MATCHED).exists()
    assert "p0_t2.nii.gz" in (out / "pairs/p0_t2_to_t1/error.txt").read_text()
    md = (out / "summary.md").read_text()
    assert "| p0_t0_to_t2 | failed |" in md and "| p0_t0_to_t1 | ok |" in md


def test_an_interrupted_run_restarted_does_only_the_rest(cohort, reference, tmp_path):
    out = tmp_path / "out"
    state = {"finished": 0}
    with pytest.raises(CancelledError):
        run_batch(
            cohort,
            out,
            engine(),
            matching(),
            mode="points",
            progress=lambda c: state.update(finished=c.matched),
            cancel=lambda: state["finished"] >= 2,
        )
    first = [p.name for p in (out / "pairs").iterdir() if (p / "manifest.json").exists()]
    assert 2 <= len(first) < 6
    assert "run interrupted" in (out / "summary.md").read_text()
    again = run_batch(cohort, out, engine(), matching(), mode="points")
    c = again.counts
    assert c.done_earlier == len(first) and c.matched == 6 - len(first) and c.failed == 0
    assert {pid for pid, r in again.records.items() if r["status"] == "done earlier"} == set(first)
    _same(out, reference, reference)
    # a third run has nothing to do: no task, no extraction
    third = run_batch(cohort, out, engine(), matching(), mode="points")
    assert third.counts.done_earlier == 6 and third.counts.matched == 0 and third.extractions == []


def test_dense_mode_writes_each_pairs_field_and_points_from_it(cohort, tmp_path):
    import SimpleITK as sitk

    from MedDIFTLib.data.image_io import read_volume
    from MedDIFTLib.session import MatchSession

    out = tmp_path / "dense"
    res = run_batch(cohort, out, engine(), MatchOptions(), mode="dense")
    assert res.counts.failed == 0 and res.counts.matched == 6
    pid = _pairs(cohort)[0]
    got = read_points(out / "pairs" / pid["id"] / MATCHED)
    fixed = read_volume(cohort.parent / pid["fixed"])
    moving = read_volume(cohort.parent / pid["moving"])
    field = MatchSession(engine()).register(fixed, moving)
    np.testing.assert_allclose(
        got.points, field.map_points(got_points := read_points(cohort.parent / pid["points"]).points), atol=1e-6
    )
    img = sitk.Cast(sitk.ReadImage(str(out / "pairs" / pid["id"] / "field.nii.gz")), sitk.sitkVectorFloat64)
    tx = sitk.DisplacementFieldTransform(img)
    p = fixed.ijk_to_world(np.array([[20.0, 22.0, 25.0]]))[0]
    lps = np.array([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(np.array(tx.TransformPoint(tuple(p * lps))) * lps, field.map_points(p)[0], atol=1e-4)
    assert "argmax_gap_mm" in got.values and len(got_points) == len(got)
