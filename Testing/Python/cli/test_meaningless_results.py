"""No meaningless result with exit code 0: each case through the real ``meddift`` command (subprocesses)
and the worker over its pipe. The checks are in the engine, so every front end refuses alike
(policy: :mod:`MedDIFTLib.evidence`).

Phantom pair of 40^3 voxels at 6 mm (MIND-SSC), five landmarks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cli_runner import run_meddift  # Testing/Python, on sys.path
from MedDIFTLib.data.image_io import write_volume
from MedDIFTLib.data.landmark_io import write_points
from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks

REPO = Path(__file__).resolve().parents[3]
FAST = ["--backbone", "mind-ssc", "--no-cache"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("meaningless")
    pair = make_pair(seed=5, shape=(40, 40, 40), spacing=(6.0, 6.0, 6.0))
    write_volume(pair.fixed, d / "f.nii.gz")
    write_volume(pair.moving, d / "m.nii.gz")
    write_volume(pair.moving.with_array(np.full(pair.moving.shape, -1000.0, np.float32)), d / "air.nii.gz")
    write_points(sample_landmarks(pair, n=5, seed=5), d / "p.csv")
    return d


def meddift(d, *args):
    p = run_meddift(*args, folder=d)
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, p.stderr


def match(d, *args):
    return meddift(d, "match", d / "f.nii.gz", d / "m.nii.gz", "--points", d / "p.csv", *FAST, *args)


def test_a_radius_under_the_grid_resolution_is_refused_and_one_at_it_matches_inside(files, tmp_path):
    rc, err = match(files, "--radius", "2", "--out", tmp_path / "o.csv")
    # 6 mm voxels: half the voxel diagonal is 5.2 mm, the least radius that always holds a voxel
    assert rc == 2 and "under the moving scan's resolution" in err and "--radius 5.2" in err
    assert not (tmp_path / "o.csv").exists()
    rc, err = match(files, "--radius", "5.2", "--out", tmp_path / "o.csv")
    assert rc == 0, err
    text = (tmp_path / "o.csv").read_text()
    assert "inf" not in text and "nan" not in text


def _field(path: Path, origin_lps, n: int = 10, spacing: float = 5.0) -> None:
    """A uniform 3 mm displacement on an ``n``^3 grid of ``spacing`` mm voxels starting at ``origin_lps``."""
    img = sitk.GetImageFromArray(np.full((n, n, n, 3), 3.0), isVector=True)
    img.SetSpacing((spacing,) * 3)
    img.SetOrigin(tuple(float(v) for v in origin_lps))
    sitk.WriteImage(img, str(path))


def test_a_prior_field_covering_none_of_the_points_is_refused(files, tmp_path):
    _field(tmp_path / "far.nii.gz", (5000.0, 5000.0, 5000.0))
    rc, err = match(files, "--radius", "12", "--prior", tmp_path / "far.nii.gz", "--out", tmp_path / "o.csv")
    assert rc == 2 and "covers none of the 5 points" in err and not (tmp_path / "o.csv").exists()


def test_a_prior_field_covering_some_of_the_points_is_warned(files, tmp_path):
    from MedDIFTLib.data.landmark_io import read_points

    first = read_points(files / "p.csv").points[0] * [-1.0, -1.0, 1.0]  # LPS
    _field(tmp_path / "near.nii.gz", first - 3.0, n=4, spacing=2.0)  # a 6 mm cube around the first point
    rc, err = match(files, "--radius", "12", "--prior", tmp_path / "near.nii.gz", "--out", tmp_path / "o.csv")
    assert rc == 0 and "meddift: warning: the prior" in err and "covers 1 of the 5 points" in err, err


def register(d, out, *args, moving="m.nii.gz"):
    return meddift(
        d, "register", d / "f.nii.gz", d / moving, "--out", out, *FAST, "--iterations", "10", "--no-figure", *args
    )


def test_registering_against_a_scan_of_one_value_is_refused(files, tmp_path):
    rc, err = register(files, tmp_path / "reg", moving="air.nii.gz")
    assert rc == 2 and "is -1000 everywhere" in err and not (tmp_path / "reg").exists()


@pytest.mark.parametrize(
    "matrix, expected",
    [
        ("1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0.01 1\n", "is not affine: its bottom row is [0.0, 0.0, 0.01, 1.0]"),
        ("1 0 0 2000\n0 1 0 0\n0 0 1 0\n0 0 0 1\n", "only 0% of the fixed scan lies inside the moving scan"),
    ],
)
def test_an_initial_transform_that_is_not_affine_or_moves_the_scans_apart_is_refused(files, tmp_path, matrix, expected):
    (tmp_path / "m.txt").write_text(matrix)
    rc, err = register(files, tmp_path / "reg", "--initial", tmp_path / "m.txt")
    assert rc == 2 and expected in err and "--initial" in err and not (tmp_path / "reg").exists()


def test_the_registration_report_carries_its_evidence(files, tmp_path):
    rc, err = register(files, tmp_path / "reg")
    assert rc == 0, err
    report = json.loads((tmp_path / "reg" / "registration.json").read_text())
    assert report["overlap_after_prealign"] == 1.0 and report["warnings"] == []  # the same field of view


def test_the_worker_refuses_alike(files, tmp_path):
    from MedDIFTLib.service.client import WorkerClient

    env = dict(os.environ, MEDDIFT_WEIGHTS_DIR=str(tmp_path / "none"), MEDDIFT_CACHE_DIR=str(tmp_path / "cache"))
    client = WorkerClient(env=env)
    client.start(timeout=120)
    try:
        client.request("configure", engine={"backbone": "mind-ssc", "device": "cpu", "use_cache": False})
        for name in ("f", "m", "air"):
            client.request("load_volume", name=name, path=str(files / f"{name}.nii.gz"))
        with pytest.raises(Exception, match="is -1000 everywhere"):
            client.request("register", fixed="f", moving="air", out=str(tmp_path / "a.nrrd"))
        apart = np.eye(4)
        apart[0, 3] = 2000.0
        with pytest.raises(Exception, match="only 0% of the fixed scan"):
            client.request("register", fixed="f", moving="m", out=str(tmp_path / "b.nrrd"), initial=apart.tolist())
        assert not list(tmp_path.glob("*.nrrd"))
    finally:
        client.kill()
