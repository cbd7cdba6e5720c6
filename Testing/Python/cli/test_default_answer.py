"""``meddift match`` with no ``--prior`` gives the dense answer (the same points as ``--prior dense``, the
field taken from the cache by the second command), and ``--prior none`` is the paper's argmax."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cli_runner import run_meddift  # Testing/Python, on sys.path
from MedDIFTLib.data.image_io import write_volume
from MedDIFTLib.data.landmark_io import read_points, write_points
from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks

REPO = Path(__file__).resolve().parents[3]
FAST = ["--backbone", "mind-ssc", "--iterations", "10", "--prealign", "none", "--search", "15", "--grid-spacing", "10"]


def _match(tmp_path, out, *extra):
    t = tmp_path
    args = ["match", t / "fixed.nii.gz", t / "moving.nii.gz", "--points", t / "points.csv", "--out", t / out]
    res = run_meddift(*args, *FAST, *extra, folder=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr
    return read_points(tmp_path / out), res.stderr


def test_no_prior_is_the_dense_answer_and_none_is_the_papers_argmax(tmp_path):
    pair = make_pair(shape=(48, 48, 48), spacing=(5.0, 5.0, 5.0), seed=3)
    write_volume(pair.fixed, tmp_path / "fixed.nii.gz")
    write_volume(pair.moving, tmp_path / "moving.nii.gz")
    write_points(sample_landmarks(pair, n=8, seed=3, margin_mm=10.0), tmp_path / "points.csv")
    default, _ = _match(tmp_path, "default.csv")
    dense, _ = _match(tmp_path, "dense.csv", "--prior", "dense")
    argmax, _ = _match(tmp_path, "argmax.csv", "--prior", "none")
    # the same computation (the second command reads the first one's field from the cache): equal to the
    # written CSV's decimals
    np.testing.assert_allclose(default.points, dense.points, atol=1e-6)
    assert np.abs(argmax.points - dense.points).max() > 1e-3  # the argmax is another answer
    assert "argmax_gap_mm" in default.values and "argmax_gap_mm" not in argmax.values
