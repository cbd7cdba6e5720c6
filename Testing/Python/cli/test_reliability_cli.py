"""Issue 13 through the real ``meddift match`` command (subprocesses): wrong answers, lost data,
crashes, late or wrong errors, options silently ignored. Each test failed before its fix."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from cli_runner import run_meddift, start_meddift  # Testing/Python, on sys.path
from MedDIFTLib.data.image_io import write_volume
from MedDIFTLib.data.landmark_io import write_points
from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("rel_cli")
    pair = make_pair(seed=4, shape=(48, 48, 48), spacing=(6.0, 6.0, 6.0))
    lm = sample_landmarks(pair, n=5, seed=4)
    write_volume(pair.fixed, d / "f.nii.gz")
    write_volume(pair.moving, d / "m.nii.gz")
    write_points(lm, d / "p.csv")
    return d, lm


def meddift(d, *args, cwd=None):
    p = run_meddift("match", d / "f.nii.gz", d / "m.nii.gz", "--points", d / "p.csv", *args, folder=d, cwd=cwd)
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, p.stderr


def test_truncated_nii_gz_is_refused_not_read_as_zeros(files, tmp_path):
    d, _ = files
    data = (d / "f.nii.gz").read_bytes()
    (tmp_path / "f.nii.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "m.nii.gz").write_bytes((d / "m.nii.gz").read_bytes())
    (tmp_path / "p.csv").write_bytes((d / "p.csv").read_bytes())
    rc, err = meddift(tmp_path, "--out", tmp_path / "o.csv")
    assert rc == 2 and "f.nii.gz: is damaged: its compressed data ends early" in err
    assert not (tmp_path / "o.csv").exists()
    # an uncompressed NIfTI shorter than its header says
    raw = gzip.decompress((d / "f.nii.gz").read_bytes())
    (tmp_path / "f.nii.gz").write_bytes(gzip.compress(raw[: len(raw) - 1000]))
    rc, err = meddift(tmp_path, "--out", tmp_path / "o.csv")
    assert rc == 2 and "header describes" in err and "copy the file again" in err


def test_nan_and_inf_points_are_refused_by_label(files, tmp_path):
    d, lm = files
    for name in ("f.nii.gz", "m.nii.gz"):
        (tmp_path / name).write_bytes((d / name).read_bytes())
    for bad in ("nan", "inf"):
        (tmp_path / "p.csv").write_text(
            f"label,x,y,z\nA,{bad},0,0\n"
            + "".join(f"{lb},{x},{y},{z}\n" for lb, (x, y, z) in zip(lm.labels, lm.points))
        )
        rc, err = meddift(tmp_path, "--out", tmp_path / "o.csv")
        assert rc == 2 and "point 'A' has no finite position" in err and not (tmp_path / "o.csv").exists()


def test_heatmap_onto_an_input_is_refused_even_with_force(files):
    d, lm = files
    before = (d / "m.nii.gz").read_bytes()
    rc, err = meddift(d, "--out", d / "o1.csv", "--heatmap", d / "m.nii.gz", "--heatmap-for", lm.labels[0], "--force")
    assert rc == 2 and "--heatmap" in err and "is the moving volume" in err
    assert (d / "m.nii.gz").read_bytes() == before and not (d / "o1.csv").exists()
    rc, err = meddift(d, "--out", d / "p.csv", "--force")
    assert rc == 2 and "is the --points file" in err


def test_two_runs_writing_one_out_at_once_one_loses_clearly(files):
    d, _ = files
    cmd = ["match", d / "f.nii.gz", d / "m.nii.gz", "--points", d / "p.csv", "--out", d / "race.csv"]
    procs = [start_meddift(*cmd, folder=d, MEDDIFT_CACHE_DIR=d / "c2") for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    loser = next(err for rc, err in results if rc == 2)
    assert "race.csv" in loser and ("output exists" in loser or "created by another process" in loser)


def test_output_files_get_the_users_umask_permissions(files):
    d, _ = files
    rc, err = meddift(d, "--out", d / "perm.csv")
    assert rc == 0, err
    assert (d / "perm.csv").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask():
    m = os.umask(0o022)
    os.umask(m)
    return m


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--device", "tpu"], "unknown device 'tpu': use auto, cpu or cuda[:N] (--device)"),
        (["--timestep", "-1"], "--timestep"),
        (["--ensemble", "0"], "at least 1 noise draw"),
        (["--region", "moon"], "unknown body region 'moon'"),
        (["--radius", "-5"], "--radius"),
        (["--radius", "nan"], "--radius"),
        (
            ["--upsampled-budget", "0"],
            "the upsampled strategy's budget must be a positive number of MB, got 0.0 (--upsampled-budget)",
        ),
        (["--backbone", "maisi"], "MAISI weights not found"),
        (["--prior", "coarse"], "a prior needs a search radius (--radius MM)"),
        (["--prior", "identity"], "a prior needs a search radius (--radius MM)"),
        (["--hu-offset", "-1024"], "--fixed-hu-offset and/or --moving-hu-offset"),
        (["--heatmap", "h.nrrd", "--heatmap-for", "nope"], "no point labelled 'nope'"),
        (["--heatmap", "h.xyz", "--heatmap-for", "L1"], "cannot write images with extension '.xyz'"),
    ],
)
def test_bad_options_are_refused_before_any_work_in_cli_words(files, args, expected):
    d, _ = files
    rc, err = meddift(d, "--out", d / "late.csv", *args)
    assert rc == 2 and expected in err, err
    assert "fixed: features" not in err and "MAISI v1 diffusion features" not in err  # nothing computed first
    assert not (d / "late.csv").exists()  # nothing written, so the rerun needs no --force


@pytest.mark.parametrize("backbone", ["auto", "mind-ssc"])
def test_cuda_on_a_cpu_only_torch_is_refused_in_words(files, backbone):
    """Also with the weight-free backbone, whose features never need the GPU: ``--device`` is where matching
    runs too, so it is checked at once, before any volume is read."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this torch has CUDA")
    d, _ = files
    rc, err = meddift(d, "--out", d / "cuda.csv", "--device", "cuda", "--backbone", backbone)
    assert rc == 2 and "no CUDA device" in err and "--device cpu" in err
    assert "fixed: features" not in err and "backbone:" not in err and not (d / "cuda.csv").exists()


@pytest.mark.parametrize(
    "out, expected",
    [
        ("o.xyz", "name the output .csv"),
        ("f.nii.gz/o.csv", "is a file, not a folder"),
    ],
)
def test_output_path_errors_give_the_true_reason_before_any_work(files, out, expected):
    d, _ = files
    rc, err = meddift(d, "--out", d / out)
    assert rc == 2 and expected in err and "disk full" not in err and "format=" not in err
    assert "features" not in err


def test_unwritable_folder_is_named_not_called_a_full_disk(files, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    d, _ = files
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    rc, err = meddift(d, "--out", ro / "o.csv")
    assert rc == 2 and "no permission" in err and "disk full" not in err


def test_radius_zero_is_a_global_search_as_in_demo_and_slicer(files):
    d, _ = files
    rc, err = meddift(d, "--out", d / "r0.csv", "--radius", "0")
    assert rc == 0 and "5 of 5 points matched" in err


def test_maisi_only_options_with_the_weight_free_backbone_are_warned(files):
    d, _ = files
    rc, err = meddift(d, "--out", d / "ens.csv", "--ensemble", "3", "--region", "head")
    assert rc == 0 and "warning: --ensemble, --region: MAISI option(s)" in err
    assert err.count("MAISI option(s)") == 1  # said once


def test_elastix_index_file_is_read_against_the_fixed_volume(files):
    d, lm = files
    from MedDIFTLib.data.image_io import read_volume

    fixed = read_volume(d / "f.nii.gz")
    write_points(lm, d / "idx.txt", "elastix", reference=fixed, kind="index")
    p = run_meddift(
        "match",
        d / "f.nii.gz",
        d / "m.nii.gz",
        "--points",
        d / "idx.txt",
        "--out",
        d / "el.csv",
        folder=d,
        MEDDIFT_CACHE_DIR=d / "c3",
    )
    assert p.returncode == 0 and "reference=" not in p.stderr, p.stderr


def test_unreadable_image_shows_a_reason_not_itk_source_paths(files, tmp_path):
    d, _ = files
    (tmp_path / "f.nii.gz").write_bytes((d / "f.nii.gz").read_bytes())
    (tmp_path / "m.nii.gz").write_text("not an image")
    (tmp_path / "p.csv").write_bytes((d / "p.csv").read_bytes())
    rc, err = meddift(tmp_path, "--out", tmp_path / "o.csv")
    assert rc == 2 and "m.nii.gz: cannot read image" in err
    assert ".cxx" not in err and "ITK ERROR" not in err and "0x" not in err


def test_skip_outside_lists_the_skipped_labels(files, tmp_path):
    d, lm = files
    for name in ("f.nii.gz", "m.nii.gz"):
        (tmp_path / name).write_bytes((d / name).read_bytes())
    (tmp_path / "p.csv").write_text(
        "label,x,y,z\nFAR,9999,0,0\n" + "".join(f"{lb},{x},{y},{z}\n" for lb, (x, y, z) in zip(lm.labels, lm.points))
    )
    rc, err = meddift(tmp_path, "--out", tmp_path / "o.csv")
    assert rc == 2 and "FAR at" in err
    rc, err = meddift(tmp_path, "--out", tmp_path / "o.csv", "--skip-outside")
    assert rc == 0 and "outside the fixed volume are skipped: FAR" in err and "5 of 6 points matched" in err
