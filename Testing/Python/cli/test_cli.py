"""`meddift match` and `meddift demo` on phantom pairs: outputs, messages, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from MedDIFTLib.cli import main as cli_main
from MedDIFTLib.data.image_io import read_volume, write_volume
from MedDIFTLib.data.landmark_io import read_points, write_points
from MedDIFTLib.evaluation.metrics import tre
from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
from MedDIFTLib.session import EngineOptions


@pytest.fixture(scope="module")
def pair():
    return make_pair(seed=4, shape=(80, 80, 80), spacing=(4.0, 4.0, 4.0))


@pytest.fixture(scope="module")
def landmarks(pair):
    return sample_landmarks(pair, n=10, seed=4)


def test_cli_match_writes_points_and_heatmap_and_never_overwrites(pair, landmarks, tmp_path, no_weights, capsys):
    write_volume(pair.fixed, tmp_path / "fixed.nii.gz")
    write_volume(pair.moving, tmp_path / "moving.nrrd")
    write_points(landmarks, tmp_path / "fixed.mrk.json")
    args = [
        "match",
        str(tmp_path / "fixed.nii.gz"),
        str(tmp_path / "moving.nrrd"),
        "--points",
        str(tmp_path / "fixed.mrk.json"),
        "--out",
        str(tmp_path / "out.csv"),
        "--backbone",
        "mind-ssc",
        "--radius",
        "25",
        "--heatmap-for",
        landmarks.labels[2],
        "--heatmap",
        str(tmp_path / "hm.nrrd"),
    ]
    assert cli_main(args) == 0
    err = capsys.readouterr().err
    assert "backbone: weight-free MIND-SSC descriptor" in err and "match 100%" in err
    out = read_points(tmp_path / "out.csv")
    assert out.labels == landmarks.labels and "similarity" in out.values and "confidence" in out.values
    truth = pair.true_moving_points(landmarks.points)
    assert np.median(tre(out.points, truth)) < np.median(tre(landmarks.points, truth))
    hm = read_volume(tmp_path / "hm.nrrd")
    assert hm.shape == pair.moving.shape
    before = (tmp_path / "out.csv").read_bytes()
    assert cli_main(args) == 2
    assert "output exists" in capsys.readouterr().err and (tmp_path / "out.csv").read_bytes() == before
    assert cli_main(args + ["--force"]) == 0


def test_cli_match_strategy_flags_reach_the_matcher_and_give_the_same_matches(
    pair, landmarks, tmp_path, no_weights, capsys
):
    write_volume(pair.fixed, tmp_path / "fixed.nii.gz")
    write_volume(pair.moving, tmp_path / "moving.nii.gz")
    write_points(landmarks, tmp_path / "fixed.csv")
    base = [
        "match",
        str(tmp_path / "fixed.nii.gz"),
        str(tmp_path / "moving.nii.gz"),
        "--points",
        str(tmp_path / "fixed.csv"),
        "--backbone",
        "mind-ssc",
        "--prior",
        "none",
    ]  # the paper's argmax
    out = {}
    for strategy in ("native", "upsampled"):
        assert cli_main(base + ["--out", str(tmp_path / f"{strategy}.csv"), "--match-strategy", strategy]) == 0
        out[strategy] = read_points(tmp_path / f"{strategy}.csv")
    np.testing.assert_allclose(out["native"].points, out["upsampled"].points, atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["native"].values["similarity"], out["upsampled"].values["similarity"], atol=1e-5)
    capsys.readouterr()
    # forced beyond its budget (this 80^3 scan's descriptor is 47 MB): refused in words, nothing written
    rc = cli_main(base + ["--out", str(tmp_path / "o.csv"), "--match-strategy", "upsampled", "--upsampled-budget", "8"])
    err = capsys.readouterr().err
    assert rc == 2 and "more than its budget of 8 MB: raise --upsampled-budget or use --match-strategy auto" in err
    assert not (tmp_path / "o.csv").exists()


def test_cli_match_reports_bad_input_cleanly(tmp_path, capsys, no_weights):
    rc = cli_main(
        [
            "match",
            str(tmp_path / "no.nii.gz"),
            str(tmp_path / "no2.nii.gz"),
            "--points",
            str(tmp_path / "p.csv"),
            "--out",
            str(tmp_path / "o.csv"),
        ]
    )
    assert rc == 2 and "no.nii.gz: no such file" in capsys.readouterr().err
    rc = cli_main(["match", "a", "b", "--points", "p", "--out", str(tmp_path / "o.csv"), "--heatmap-for", "L1"])
    assert rc == 2 and "go together" in capsys.readouterr().err


def test_demo_writes_every_output_and_beats_identity(tmp_path, no_weights):
    from MedDIFTLib.evaluation.demo import run_demo

    report = run_demo(
        tmp_path / "demo",
        EngineOptions(backbone="auto", use_cache=False),
        radius_mm=25.0,
        n_landmarks=8,
        shape=(80, 80, 80),
        spacing=(4.0, 4.0, 4.0),
    )
    names = {p.name for p in (tmp_path / "demo").iterdir()}
    assert {
        "fixed.nii.gz",
        "moving.nii.gz",
        "fixed_landmarks.csv",
        "true_moving_landmarks.csv",
        "matched_landmarks.csv",
        "matched_landmarks.mrk.json",
        "heatmap_L1.nii.gz",
        "demo_L1.png",
        "tre.md",
        "summary.json",
        "field.nii.gz",
        "dense_matched_landmarks.csv",
        "dense_matched_landmarks.mrk.json",
    } <= names
    assert report["backbone"] == "mind-ssc" and report["tre_after"]["mean"] < report["tre_before"]["mean"]
    assert report["tre_dense"]["mean"] < report["tre_after"]["mean"] and report["folding_share"] < 0.001
    assert "dense registration" in report["table"]
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["tre_after"]["n"] == 8
