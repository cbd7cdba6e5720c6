"""An output set is whole or absent: ``meddift register`` sent SIGINT while it writes leaves the folder
as it was (empty, or the earlier complete set whose inverse still undoes its field), and the
mechanism under it (:class:`MedDIFTLib.outputs.OutputSet`) undoes a half-done step.

The register runs are real subprocesses on a small phantom pair (40^3 at 6 mm, MIND-SSC). SIGINT is
sent when the private folder holds k finished files (k = 0, 1, 2: while the field is written, after
it, after the inverse), found by polling the folder (``Testing/Python/interrupts.py``, the one mechanism
the SIGINT tests share), so each run is interrupted at another write.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cli_runner import start_meddift  # Testing/Python, on sys.path
from interrupts import INTERRUPTED, interrupt_after  # Testing/Python, on sys.path by conftest
from MedDIFTLib.data.image_io import read_volume, write_volume
from MedDIFTLib.data.landmark_io import write_points
from MedDIFTLib.data.points import PointSet
from MedDIFTLib.errors import OutputWriteError
from MedDIFTLib.evaluation.phantom import make_pair
from MedDIFTLib.outputs import STAGE_PREFIX, OutputSet, deferred_interrupts

ROOT = Path(__file__).resolve().parents[3]
SET = ["field.nii.gz", "inverse_field.nii.gz", "moving_resampled.nii.gz", "registration.json"]  # + the figure
LPS = np.array([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair")
    p = make_pair(shape=(40, 40, 40), spacing=(6.0, 6.0, 6.0), seed=3)
    write_volume(p.fixed, folder / "fixed.nii.gz")
    write_volume(p.moving, folder / "moving.nii.gz")
    return folder


def _register(pair, out, *extra):
    cmd = [
        "register",
        str(pair / "fixed.nii.gz"),
        str(pair / "moving.nii.gz"),
        "--out",
        str(out),
        "--backbone",
        "mind-ssc",
        "--no-cache",
        "--iterations",
        "20",
        *extra,
    ]
    return start_meddift(*cmd, folder=out.parent)


def _names(out: Path) -> list:
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


def _inverse_error_mm(out: Path, fixed) -> float:
    """How far field-then-inverse leaves sample points of the fixed scan from where they started."""
    read = lambda name: sitk.DisplacementFieldTransform(  # noqa: E731
        sitk.Cast(sitk.ReadImage(str(out / name)), sitk.sitkVectorFloat64)
    )
    fwd, inv = read("field.nii.gz"), read("inverse_field.nii.gz")
    ras = fixed.ijk_to_world(np.array([[10, 20, 30], [20, 20, 12], [30, 8, 25]], dtype=float))
    moved = [inv.TransformPoint(fwd.TransformPoint(tuple(p * LPS))) for p in ras]
    return float(np.max(np.linalg.norm(np.array(moved) * LPS - ras, axis=1)))


@pytest.mark.parametrize("files", [0, 2])
def test_register_interrupted_while_writing_leaves_nothing(pair, tmp_path, files):
    out = tmp_path / "reg"
    proc = _register(pair, out)
    assert interrupt_after(proc, out, files)  # the warped scan and the figure, still to come, take far longer
    _, err = proc.communicate(timeout=600)
    assert proc.returncode in INTERRUPTED, err
    assert _names(out) == []  # no field alone, no private folder; the folder it made is gone too


@pytest.mark.parametrize("files", [1, 2])
def test_force_over_a_complete_set_interrupted_keeps_the_old_set_and_its_inverse(pair, tmp_path, files):
    out = tmp_path / "reg"
    first = _register(pair, out)
    _, first_err = first.communicate(timeout=600)  # an upper bound against a hang: busy cores are slow
    assert first.returncode == 0, first_err
    old = {name: (out / name).read_bytes() for name in _names(out)}
    assert set(SET) <= set(old)  # and registration.png where matplotlib is installed
    fixed = read_volume(pair / "fixed.nii.gz")
    assert _inverse_error_mm(out, fixed) < 0.5  # the inverse is sampled on the moving grid: sub-voxel (6 mm)
    proc = _register(pair, out, "--force", "--smoothness", "2.0", "--search", "18")  # another field
    assert interrupt_after(proc, out, files)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode in INTERRUPTED, err
    assert {name: (out / name).read_bytes() for name in _names(out)} == old  # the earlier set, byte for byte
    assert _inverse_error_mm(out, fixed) < 0.5


def test_a_name_taken_meanwhile_undoes_the_files_already_in_place(tmp_path):
    targets = {"a": tmp_path / "a.txt", "b": tmp_path / "b.txt"}
    with pytest.raises(OutputWriteError, match="created by another process meanwhile"):
        with OutputSet(targets) as out:
            out.path("a").write_text("new a")
            out.path("b").write_text("new b")
            targets["b"].write_text("someone else's b")  # after the check, before the commit
            out.commit()
    assert _names(tmp_path) == ["b.txt"] and targets["b"].read_text() == "someone else's b"


def test_a_killed_runs_private_folder_is_cleared_by_the_next_run_and_nothing_else(tmp_path):
    (tmp_path / "mine.txt").write_text("a user's file")
    script = (
        "import os, sys; from MedDIFTLib.outputs import OutputSet\n"
        "s = OutputSet({'a': sys.argv[1] + '/a.txt'}).__enter__()\n"
        "s.path('a').write_text('half')\nos._exit(9)\n"
    )
    rc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60
    ).returncode
    assert rc == 9 and len(list(tmp_path.glob(STAGE_PREFIX + "*"))) == 1
    with OutputSet({"b": tmp_path / "b.txt"}) as out:
        out.path("b").write_text("b")
        out.commit()
    assert _names(tmp_path) == ["b.txt", "mine.txt"]


def test_sigint_during_the_put_in_place_waits_for_its_end(tmp_path):
    got = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            got.append("finished")  # not interrupted in between
    assert got == ["finished"]


def test_a_run_killed_halfway_through_the_put_in_place_is_undone_by_the_next(tmp_path):
    """What a SIGKILL between two renames leaves (the journal, one old file aside, one new file linked)
    is built here by the same steps; the next run on the folder puts the earlier set back."""
    (tmp_path / "a.txt").write_text("old a")
    (tmp_path / "b.txt").write_text("old b")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    stage = tmp_path / f"{STAGE_PREFIX}killed"
    stage.mkdir()
    (stage / "owner").write_text(f"{dead}\n")
    for name in ("a.txt", "b.txt"):
        (stage / name).write_text(f"new {name[0]}")
    moves = [[str(stage / n), str(tmp_path / n), str(stage / f".old.{n}")] for n in ("a.txt", "b.txt")]
    (stage / "journal.json").write_text(json.dumps({"moves": moves, "done": False}))
    os.replace(tmp_path / "a.txt", stage / ".old.a.txt")  # first move done, the second not begun
    os.link(stage / "a.txt", tmp_path / "a.txt")
    with OutputSet({"c": tmp_path / "c.txt"}) as out:  # the next run on this folder
        out.path("c").write_text("c")
        out.commit()
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"a.txt": "old a", "b.txt": "old b", "c.txt": "c"}


def test_match_interrupted_between_its_points_and_its_heatmap_leaves_neither(pair, tmp_path):
    """``match --out P --heatmap H`` is one set: SIGINT once the points are written (privately), while the
    heatmap is computed, leaves no points file behind."""
    fixed = read_volume(pair / "fixed.nii.gz")
    write_points(
        PointSet(fixed.ijk_to_world(np.array([[20.0, 20.0, 20.0], [15.0, 22.0, 18.0]])), ["A", "B"]),
        tmp_path / "points.csv",
    )
    out = tmp_path / "m"
    out.mkdir()
    cmd = [
        "match",
        str(pair / "fixed.nii.gz"),
        str(pair / "moving.nii.gz"),
        "--points",
        str(tmp_path / "points.csv"),
        "--out",
        str(out / "points.csv"),
        "--heatmap-for",
        "A",
        "--heatmap",
        str(out / "heat.nii.gz"),
        "--backbone",
        "mind-ssc",
        "--no-cache",
        "--prior",
        "none",
        "--radius",
        "20",
    ]
    proc = start_meddift(*cmd, folder=tmp_path)
    assert interrupt_after(proc, out, 1)  # the points are in the private folder; the heatmap is not
    _, err = proc.communicate(timeout=600)
    assert proc.returncode in INTERRUPTED, err
    assert _names(out) == []  # the folder was there before: it stays, empty
