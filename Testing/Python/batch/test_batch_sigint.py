"""``meddift batch`` sent SIGINT through the real CLI: every pair's folder holds its complete set or
nothing of it (no points without their manifest, no private folder), the summary's two files agree
and say the run was interrupted, and the next run is not refused by anything left: it does only the
rest. ``meddift batch`` starts its own local Ray (two CPUs) in the subprocess.

SIGINT goes as soon as a first pair's set is being put in place (its private folder exists) or is in
place (``Testing/Python/interrupts.py``, the mechanism of every SIGINT test). Phantom cohort: one
patient, a baseline and one follow-up (48^3 at 6.5 mm), two pairs, MIND-SSC.
"""

from __future__ import annotations

import csv

import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install 'meddift[cluster]')")

from interrupts import INTERRUPTED, interrupt_when, meddift_process  # noqa: E402  (Testing/Python, on sys.path)
from MedDIFTLib.batch.phantom_cohort import write_phantom_cohort  # noqa: E402
from MedDIFTLib.batch.plan import MANIFEST  # noqa: E402
from MedDIFTLib.batch.runner import ERROR, MATCHED  # noqa: E402
from MedDIFTLib.outputs import STAGE_PREFIX  # noqa: E402

ARGS = ["--mode", "points", "--backbone", "mind-ssc", "--radius", "25", "--num-cpus", "2"]


def _statuses(out):
    with open(out / "summary.csv", newline="") as f:
        return {row["id"]: row["status"] for row in csv.DictReader(f)}


def test_batch_interrupted_leaves_whole_pairs_and_the_next_run_does_only_the_rest(tmp_path):
    cohort = write_phantom_cohort(tmp_path / "cohort", patients=1, followups=1, landmarks=3)
    out = tmp_path / "out"
    proc = meddift_process(["batch", cohort, "--out", out, *ARGS], tmp_path)

    def first_pair_writing() -> bool:
        return any(out.glob(f"pairs/*/{STAGE_PREFIX}*")) or any(out.glob(f"pairs/*/{MANIFEST}"))

    assert interrupt_when(proc, first_pair_writing, timeout=240)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode in INTERRUPTED, err
    assert not list(out.rglob(f"{STAGE_PREFIX}*"))  # no private folder left
    complete = set()
    for folder in (out / "pairs").iterdir() if (out / "pairs").exists() else []:  # a first set undone: none
        present = {p.name for p in folder.iterdir()}
        assert present in (set(), {MATCHED, MANIFEST}), (folder.name, present)  # whole or absent
        if present:
            complete.add(folder.name)
    assert len(complete) < 2  # stopped while pairs were still to come
    assert "run interrupted" in (out / "summary.md").read_text()
    statuses = _statuses(out)
    assert {p for p, s in statuses.items() if s == "ok"} == complete and len(statuses) == 2

    again = meddift_process(["batch", cohort, "--out", out, *ARGS], tmp_path)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert f"{2 - len(complete)} pairs matched, {len(complete)} done earlier, 0 failed" in err
    after = _statuses(out)  # a pair the first run finished is reported as such, not done again
    assert {p for p, s in after.items() if s == "done earlier"} == complete
    assert {p for p, s in after.items() if s == "ok"} == set(after) - complete
    assert not list(out.rglob(ERROR)) and not list(out.rglob(f"{STAGE_PREFIX}*"))
