"""``meddift batch`` never writes over or removes what it did not create, and reuses a result only
for unchanged inputs: on a real local Ray (two CPUs), with the weight-free MIND-SSC backbone.

One phantom patient, a baseline and one follow-up (48^3 at 6.5 mm), one or two pairs per cohort.
"""

from __future__ import annotations

import os
import shutil

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'meddift[cluster]')")

from MedDIFTLib.batch.phantom_cohort import write_phantom_cohort  # noqa: E402
from MedDIFTLib.batch.runner import ERROR, MATCHED, run_batch  # noqa: E402
from MedDIFTLib.cli import main as cli_main  # noqa: E402
from MedDIFTLib.data.image_io import read_volume, write_volume  # noqa: E402
from MedDIFTLib.errors import OutputWriteError  # noqa: E402
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
def scans(tmp_path_factory):
    """The phantom cohort's files (scans/p0_t0.nii.gz, p0_t1.nii.gz and their points)."""
    csv = write_phantom_cohort(tmp_path_factory.mktemp("phantom"), patients=1, followups=1, landmarks=4)
    return csv.parent / "scans"


def _bytes(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_failed_pair_whose_inputs_lie_in_its_output_folder_keeps_them(scans, tmp_path, capsys):
    out = tmp_path / "out"
    folder = out / "pairs" / "a"  # the user keeps the pair's inputs where its results will go
    folder.mkdir(parents=True)
    shutil.copy(scans / "p0_t0.nii.gz", folder / "fixed.nii.gz")
    (folder / "moving.nii.gz").write_bytes(b"\x1f\x8b not really a NIfTI file")  # the pair fails on it
    shutil.copy(scans / "p0_t0_points.csv", folder / "points.csv")
    (folder / "notes.txt").write_text("the user's own notes\n")
    before = _bytes(folder)
    csv = tmp_path / "cohort.csv"
    csv.write_text(
        "id,fixed,moving,points\na,out/pairs/a/fixed.nii.gz,out/pairs/a/moving.nii.gz,out/pairs/a/points.csv\n"
    )
    rc = cli_main(["batch", str(csv), "--out", str(out), "--mode", "points"] + OPTS)
    assert rc == 1 and "pair a failed: moving scan" in capsys.readouterr().err
    after = _bytes(folder)
    assert {k: after[k] for k in before} == before  # every input and the user's file, byte for byte
    assert set(after) - set(before) == {ERROR}
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no private folder left behind


def test_a_cohort_csv_named_summary_csv_in_out_is_refused_before_any_work(scans, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    shutil.copytree(scans, out / "scans")
    csv = out / "summary.csv"
    text = "id,fixed,moving,points\na,scans/p0_t0.nii.gz,scans/p0_t1.nii.gz,scans/p0_t0_points.csv\n"
    csv.write_text(text)
    with pytest.raises(OutputWriteError, match=r"summary\.csv .* is the cohort file"):
        run_batch(csv, out, EngineOptions(backbone="mind-ssc"), MatchOptions(radius_mm=25.0), mode="points")
    assert csv.read_text() == text
    assert sorted(p.name for p in out.iterdir()) == ["scans", "summary.csv"]  # nothing written, not even a memo


def test_an_input_named_like_a_pair_output_is_refused_before_any_work(scans, tmp_path):
    out = tmp_path / "out"
    (out / "pairs" / "a").mkdir(parents=True)
    points = out / "pairs" / "a" / MATCHED  # the user's landmarks under the name the results take
    shutil.copy(scans / "p0_t0_points.csv", points)
    csv = tmp_path / "cohort.csv"
    csv.write_text(f"id,fixed,moving,points\na,{scans / 'p0_t0.nii.gz'},{scans / 'p0_t1.nii.gz'},{points}\n")
    before = points.read_bytes()
    with pytest.raises(OutputWriteError, match="matched.csv .* is pair a's points"):
        run_batch(csv, out, EngineOptions(backbone="mind-ssc"), MatchOptions(radius_mm=25.0), mode="points")
    assert points.read_bytes() == before


def test_a_scan_replaced_with_the_same_size_and_times_is_noticed_on_resume(scans, tmp_path):
    """Uncompressed scans of one shape have one size; the replacement gets the old file's times."""
    data = tmp_path / "data"
    data.mkdir()
    for t in (0, 1):
        write_volume(read_volume(scans / f"p0_t{t}.nii.gz"), data / f"t{t}.nii", compress=False)
        shutil.copy(scans / f"p0_t{t}_points.csv", data / f"t{t}.csv")
    csv = data / "cohort.csv"
    csv.write_text("id,fixed,moving,points\nfwd,t0.nii,t1.nii,t0.csv\n")
    out = tmp_path / "out"
    first = run_batch(csv, out, EngineOptions(backbone="mind-ssc"), MatchOptions(radius_mm=25.0), mode="points")
    assert first.counts.matched == 1
    target = data / "t1.nii"
    st = os.stat(target)
    replacement = read_volume(target)
    replacement = replacement.with_array(replacement.array[::-1].copy())  # other content, same size
    write_volume(replacement, tmp_path / "new.nii", compress=False)
    assert (tmp_path / "new.nii").stat().st_size == st.st_size
    os.replace(tmp_path / "new.nii", target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # looks the same by size and time
    again = run_batch(csv, out, EngineOptions(backbone="mind-ssc"), MatchOptions(radius_mm=25.0), mode="points")
    assert again.counts.done_earlier == 0 and again.counts.matched == 1
    third = run_batch(csv, out, EngineOptions(backbone="mind-ssc"), MatchOptions(radius_mm=25.0), mode="points")
    assert third.counts.done_earlier == 1 and third.counts.matched == 0  # unchanged content: reused
