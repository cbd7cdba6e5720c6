"""Dense registration through every interface: the session's points, `meddift register`, the worker,
the evaluation methods. One small phantom pair (48^3 at 6 mm) keeps them fast."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from MedDIFTLib.cli import main as cli_main
from MedDIFTLib.data.image_io import read_volume, write_volume
from MedDIFTLib.data.landmark_io import read_points, write_points
from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
from MedDIFTLib.matching.search import MatchOptions
from MedDIFTLib.registration import RegistrationOptions
from MedDIFTLib.session import EngineOptions, MatchSession

LPS = np.array([-1.0, -1.0, 1.0])
ENGINE = {"backbone": "mind-ssc", "device": "cpu", "use_cache": False}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dense_pair")
    pair = make_pair(shape=(48, 48, 48), spacing=(6.0, 6.0, 6.0), seed=1)
    write_volume(pair.fixed, folder / "fixed.nii.gz")
    write_volume(pair.moving, folder / "moving.nrrd")
    lm = sample_landmarks(pair, n=6, seed=1)
    write_points(lm, folder / "fixed.csv")
    return folder, pair, lm


@pytest.fixture(scope="module")
def session_field(files):
    folder, pair, lm = files
    session = MatchSession(EngineOptions(**ENGINE))
    fixed, moving = read_volume(folder / "fixed.nii.gz"), read_volume(folder / "moving.nrrd")
    return session, fixed, moving, session.register(fixed, moving)


def test_session_dense_prior_gives_the_field_position_and_scores_it(files, session_field):
    folder, pair, lm = files
    session, fixed, moving, field = session_field
    assert session.register(fixed, moving) is field  # kept per pair: nothing computed twice
    report = session.match(fixed, moving, lm, prior="dense")
    np.testing.assert_allclose(report.points.points, field.map_points(lm.points), atol=1e-9)
    gap = report.points.values["argmax_gap_mm"]
    assert np.all(np.isfinite(gap)) and np.all(gap <= 6.0 + 6.0)  # the window, plus the sub-voxel fit (6 mm voxels)
    assert np.all((report.points.values["confidence"] >= 0) & (report.points.values["confidence"] <= 1))
    truth = pair.true_moving_points(lm.points)
    before = np.linalg.norm(lm.points - truth, axis=1).mean()
    assert np.linalg.norm(report.points.points - truth, axis=1).mean() < 0.5 * before
    # with a radius the paper's argmax within it is the match, and the gap is how far it moved
    sharp = MatchSession(EngineOptions(**ENGINE), MatchOptions(radius_mm=6.0))
    sharp._fields = session._fields  # the same field (a test shortcut: the options are equal)
    out = sharp.match(fixed, moving, lm, prior="dense").points
    moved = np.linalg.norm(out.points - field.map_points(lm.points), axis=1)
    np.testing.assert_allclose(moved, out.values["argmax_gap_mm"], atol=1e-6)


def test_cli_register_writes_fields_that_simpleitk_applies_as_the_engine_says(
    files, session_field, tmp_path, no_weights, capsys
):
    folder, pair, lm = files
    session, fixed, moving, field = session_field
    out = tmp_path / "reg"
    args = [
        "register",
        str(folder / "fixed.nii.gz"),
        str(folder / "moving.nrrd"),
        "--out",
        str(out),
        "--backbone",
        "mind-ssc",
        "--no-cache",
    ]
    assert cli_main(args) == 0
    err = capsys.readouterr().err
    assert "folding voxels" in err and "field ->" in err
    assert "regularity body: folding 0.000%, SD log-Jacobian" in err
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "field.nii.gz",
        "inverse_field.nii.gz",
        "moving_resampled.nii.gz",
        "registration.json",
        "registration.png",
    ]
    tx = sitk.DisplacementFieldTransform(sitk.Cast(sitk.ReadImage(str(out / "field.nii.gz")), sitk.sitkVectorFloat64))
    ijk = np.array([[10, 20, 30], [25, 25, 12], [40, 8, 33]], dtype=float)
    ras = fixed.ijk_to_world(ijk)
    got = np.array([tx.TransformPoint(tuple(p * LPS)) for p in ras]) * LPS
    np.testing.assert_allclose(got, field.map_points(ras), atol=1e-4)  # same options, same field as the session
    inv = sitk.DisplacementFieldTransform(
        sitk.Cast(sitk.ReadImage(str(out / "inverse_field.nii.gz")), sitk.sitkVectorFloat64)
    )
    back = np.array([inv.TransformPoint(tuple(p * LPS)) for p in got]) * LPS
    np.testing.assert_allclose(back, ras, atol=0.5)  # composes to near identity (sampled on the moving grid)
    report = json.loads((out / "registration.json").read_text())
    assert report["jacobian"]["folding_share"] < 1e-3
    assert report["jacobian"]["body_folding_percent"] == 0.0 and report["jacobian"]["body_log_jacobian_std"] > 0
    warped = read_volume(out / "moving_resampled.nii.gz")
    assert warped.shape == fixed.shape and np.allclose(warped.ijk_to_ras, fixed.ijk_to_ras)
    # registered, the moving scan is closer to the fixed one than before
    before = np.abs(read_volume(folder / "moving.nrrd").array - fixed.array).mean()
    assert np.abs(warped.array - fixed.array).mean() < before
    before_bytes = (out / "field.nii.gz").read_bytes()
    assert cli_main(args) == 2 and "output exists" in capsys.readouterr().err
    assert (out / "field.nii.gz").read_bytes() == before_bytes


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--search", "nan"], "--search must be a finite number"),
        (["--smoothness", "-1"], "--smoothness must be zero or positive"),
        (["--field-format", ".png"], "--field-format must be one of"),
        (["--initial", "missing.txt"], "initial transform file not found"),
    ],
)
def test_cli_register_refuses_bad_options_before_any_work(files, tmp_path, capsys, bad, message, no_weights):
    folder, _, _ = files
    rc = cli_main(
        [
            "register",
            str(folder / "fixed.nii.gz"),
            str(folder / "moving.nrrd"),
            "--out",
            str(tmp_path / "o"),
            "--backbone",
            "mind-ssc",
        ]
        + bad
    )
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_register_refuses_to_replace_an_input(files, tmp_path, capsys, no_weights):
    folder, pair, _ = files
    write_volume(pair.moving, tmp_path / "moving_resampled.nii.gz")
    before = (tmp_path / "moving_resampled.nii.gz").read_bytes()
    rc = cli_main(
        [
            "register",
            str(folder / "fixed.nii.gz"),
            str(tmp_path / "moving_resampled.nii.gz"),
            "--out",
            str(tmp_path),
            "--backbone",
            "mind-ssc",
            "--force",
        ]
    )
    assert rc == 2 and "never replaces an input" in capsys.readouterr().err
    assert (tmp_path / "moving_resampled.nii.gz").read_bytes() == before


def test_cli_match_prior_dense_writes_the_gap_column(files, tmp_path, no_weights):
    folder, _, lm = files
    assert (
        cli_main(
            [
                "match",
                str(folder / "fixed.nii.gz"),
                str(folder / "moving.nrrd"),
                "--points",
                str(folder / "fixed.csv"),
                "--out",
                str(tmp_path / "out.csv"),
                "--backbone",
                "mind-ssc",
                "--prior",
                "dense",
                "--no-cache",
            ]
        )
        == 0
    )
    out = read_points(tmp_path / "out.csv")
    assert out.labels == lm.labels and "argmax_gap_mm" in out.values


def test_worker_register_writes_the_field_and_the_warped_scan(files, session_field, tmp_path):
    from MedDIFTLib.service.client import WorkerClient

    folder, _, lm = files
    _, fixed, _, field = session_field
    env = dict(os.environ, MEDDIFT_WEIGHTS_DIR=str(tmp_path / "none"), MEDDIFT_CACHE_DIR=str(tmp_path / "cache"))
    client = WorkerClient(env=env)
    client.start(timeout=120)
    try:
        client.request("configure", engine=ENGINE)
        client.request("load_volume", name="f", path=str(folder / "fixed.nii.gz"))
        client.request("load_volume", name="m", path=str(folder / "moving.nrrd"))
        res = client.request(
            "register", fixed="f", moving="m", out=str(tmp_path / "field.nrrd"), warped=str(tmp_path / "warped.nrrd")
        )
        assert res["jacobian"]["folding_share"] < 1e-3 and (tmp_path / "warped.nrrd").exists()
        img = sitk.Cast(sitk.ReadImage(str(tmp_path / "field.nrrd")), sitk.sitkVectorFloat64)
        tx = sitk.DisplacementFieldTransform(img)
        p = fixed.ijk_to_world(np.array([[20.0, 24.0, 30.0]]))[0]
        got = np.array(tx.TransformPoint(tuple(p * LPS))) * LPS
        np.testing.assert_allclose(got, field.map_points(p)[0], atol=1e-4)
        out = client.request("match", fixed="f", moving="m", points=lm.points.tolist(), labels=lm.labels, prior="dense")
        np.testing.assert_allclose(np.array(out["points"]), field.map_points(lm.points), atol=1e-4)
        with pytest.raises(Exception, match="bad registration options"):
            client.request("register", fixed="f", moving="m", out=str(tmp_path / "x.nrrd"), options={"nope": 1})
    finally:
        client.kill()


def test_evaluation_dense_methods_and_ablation_group(files):
    from MedDIFTLib.evaluation.ablation import ablation_methods, ablation_variants
    from MedDIFTLib.evaluation.cases import Case
    from MedDIFTLib.evaluation.methods import METHODS, MedDIFTDense

    folder, pair, lm = files
    truth = sample_landmarks(pair, n=6, seed=1)
    truth.points = pair.true_moving_points(lm.points)
    case = Case("phantom", "t", pair.fixed, pair.moving, lm, truth)
    m = MedDIFTDense(EngineOptions(**ENGINE))
    assert m.name == "MedDIFT dense (MIND-SSC, weight-free)"
    err = np.linalg.norm(m.map_points(case) - truth.points, axis=1)
    assert err.mean() < 0.5 * np.linalg.norm(lm.points - truth.points, axis=1).mean()
    reg = m.regularity(case)  # the same map from the session's memory; smooth: no folding, a small spread
    assert reg is not None and reg["folding_percent"] < 0.1 and 0 < reg["log_jacobian_std"] < 0.2
    assert {"meddift-dense", "meddift-dense-argmax"} <= set(METHODS)
    variants, _ = ablation_variants(groups=("dense",))
    assert [v.prior for v in variants] == ["dense", "dense"] and variants[1].match.radius_mm == 6.0
    assert [x.prior for x in ablation_methods(variants)] == ["dense", "dense"]


def test_registration_options_reach_the_session_through_the_cli():
    from MedDIFTLib.cli import build_parser
    from MedDIFTLib.cli.register import registration_options

    args = build_parser().parse_args(
        [
            "register",
            "f",
            "m",
            "--out",
            "o",
            "--search",
            "12",
            "--smoothness",
            "0.3",
            "--prealign",
            "none",
            "--iterations",
            "10",
        ]
    )
    assert registration_options(args) == RegistrationOptions(search_mm=12.0, lam=0.3, prealign="none", iterations=10)


@pytest.mark.parametrize(
    "kwargs, interface, text",
    [
        ({"search_mm": -3.0}, "cli", "--search must be positive (mm), got -3"),
        ({"search_mm": -3.0}, "worker", "registration.search_mm must be positive (mm), got -3"),
        ({"lam": float("inf")}, "cli", "--smoothness must be a finite number"),
        ({"spacing_mm": 0.0}, "worker", "registration.spacing_mm must be positive (mm), got 0"),
        ({"iterations": -1}, "cli", "--iterations must be zero or more, got -1"),
        ({"prealign": "wobble"}, "cli", "--prealign must be one of none, rigid, affine"),
        ({"control": 0}, "cli", "registration option control must be a whole number of at least 1"),
        ({"discrete_channels": 2.5}, "neutral", "registration option discrete_channels must be a whole number"),
    ],
)
def test_registration_option_checks_speak_each_interface(kwargs, interface, text):
    """One check per option (RegistrationOptions), rendered as the CLI's flag or the worker's field."""
    from MedDIFTLib.errors import InputError, render
    from MedDIFTLib.registration import RegistrationOptions

    with pytest.raises(InputError) as err:
        RegistrationOptions(**kwargs)
    assert text in render(err.value, interface)
