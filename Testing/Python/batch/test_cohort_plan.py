"""The cohort CSV, the plan and the manifests, without Ray: what a batch decides before any task
runs (every problem of a cohort at once, scans by content, what a restart may skip)."""

from __future__ import annotations

import shutil

import pytest

from MedDIFTLib.batch.cohort import DigestMemo, content_digest, read_cohort
from MedDIFTLib.batch.phantom_cohort import write_phantom_cohort
from MedDIFTLib.batch.plan import completed, make_plan, options_fingerprint, pair_dir, write_manifest
from MedDIFTLib.batch.runner import extraction_resources
from MedDIFTLib.errors import InputError
from MedDIFTLib.matching.search import MatchOptions
from MedDIFTLib.session import EngineOptions


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_phantom_cohort(tmp_path_factory.mktemp("cohort"), patients=1, followups=2, landmarks=5)


def _copy(cohort, tmp_path):
    shutil.copytree(cohort.parent, tmp_path / "c")
    return tmp_path / "c" / "cohort.csv"


def test_cohort_reads_relative_paths_and_identifies_scans_by_content(cohort, tmp_path):
    csv = _copy(cohort, tmp_path)
    # the baseline again under another name: the same scan by content
    shutil.copy(csv.parent / "scans/p0_t0.nii.gz", csv.parent / "scans/baseline_copy.nii.gz")
    with open(csv, "a") as f:
        f.write("copy_to_t1,scans/baseline_copy.nii.gz,scans/p0_t1.nii.gz,scans/p0_t0_points.csv,\n")
    pairs = read_cohort(csv)
    assert len(pairs) == 7 and pairs[0].fixed == str(csv.parent.resolve() / "scans/p0_t0.nii.gz")
    assert pairs[-1].truth is None and pairs[-1].digest("fixed") == pairs[0].digest("fixed")
    assert pairs[-1].fixed != pairs[0].fixed
    plan = make_plan(pairs, tmp_path / "out", {"o": 1})
    assert plan.distinct_scans == 3 and len(plan.scans) == 3 and len(plan.pending) == 7


def test_cohort_problems_are_reported_together_before_any_work(cohort, tmp_path):
    csv = _copy(cohort, tmp_path)
    lines = csv.read_text().splitlines()
    lines[2] = lines[1]  # duplicate id
    lines.append("bad id,scans/p0_t0.nii.gz,scans/p0_t1.nii.gz,scans/p0_t0_points.csv,")
    lines.append("gone,scans/missing.nii.gz,scans/p0_t1.nii.gz,scans/p0_t0_points.csv,")
    lines.append("badpts,scans/p0_t0.nii.gz,scans/p0_t1.nii.gz,scans/p0_t0.nii.gz,")
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        read_cohort(csv)
    text = str(err.value)
    assert "4 problem(s), nothing was run" in text
    assert "duplicate id" in text and "line 8 (bad id)" in text and "missing.nii.gz: no such file" in text
    assert "line 10 (badpts): points:" in text
    csv.write_text("id,fixed,moving\n")
    with pytest.raises(InputError, match="missing column"):
        read_cohort(csv)


def test_digest_memo_rehashes_a_changed_file(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"one")
    memo = DigestMemo(tmp_path / "memo.json")
    first = memo(str(f))
    memo.save()
    assert DigestMemo(tmp_path / "memo.json")(str(f)) == first == content_digest(f)
    f.write_bytes(b"two!")
    assert DigestMemo(tmp_path / "memo.json")(str(f)) == content_digest(f) != first


def test_manifest_is_verified_by_content_inputs_and_options(cohort, tmp_path):
    pairs = read_cohort(cohort)
    out = tmp_path / "out"
    opts = options_fingerprint(EngineOptions(backbone="mind-ssc"), MatchOptions(radius_mm=25.0), "points")
    folder = pair_dir(out, pairs[0].id)
    folder.mkdir(parents=True)
    (folder / "matched.csv").write_text("label,r,a,s\nL1,1,2,3\n")
    write_manifest(folder, pairs[0], opts, ["matched.csv"], {"status": "ok"})
    assert completed(folder, pairs[0], opts) is not None
    plan = make_plan(pairs, out, opts)
    assert list(plan.done) == [pairs[0].id] and len(plan.pending) == len(pairs) - 1
    # the pair's own scans are still needed by other pending pairs
    assert len(plan.scans) == 3
    other = options_fingerprint(EngineOptions(backbone="mind-ssc"), MatchOptions(radius_mm=20.0), "points")
    assert completed(folder, pairs[0], other) is None  # other options: redo
    # the cache location is not a result: moving it keeps the pair done
    moved = options_fingerprint(
        EngineOptions(backbone="mind-ssc", cache_dir="/elsewhere"), MatchOptions(radius_mm=25.0), "points"
    )
    assert completed(folder, pairs[0], moved) is not None
    assert completed(folder, pairs[1], opts) is None  # other inputs
    (folder / "matched.csv").write_text("label,r,a,s\nL1,1,2,4\n")  # same size, other content
    assert completed(folder, pairs[0], opts) is None
    (folder / "matched.csv").unlink()
    assert completed(folder, pairs[0], opts) is None


def test_extraction_asks_for_a_gpu_only_when_the_backbone_runs_on_cuda():
    assert extraction_resources(EngineOptions(device="cuda:1"), {}) == {"num_cpus": 1, "num_gpus": 1}
    assert extraction_resources(EngineOptions(backbone="maisi"), {"GPU": 4.0}) == {"num_cpus": 1, "num_gpus": 1}
    assert extraction_resources(EngineOptions(backbone="maisi"), {"CPU": 8.0}) == {"num_cpus": 1}
    assert extraction_resources(EngineOptions(backbone="mind-ssc"), {"GPU": 4.0}) == {"num_cpus": 1}
    assert extraction_resources(EngineOptions(backbone="maisi", device="cpu"), {"GPU": 4.0}) == {"num_cpus": 1}


def test_without_ray_the_command_says_how_to_get_it(monkeypatch, tmp_path, capsys):
    import builtins

    from MedDIFTLib.cli import main as cli_main

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert cli_main(["batch", str(tmp_path / "c.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "pip install 'meddift[cluster]'" in capsys.readouterr().err
