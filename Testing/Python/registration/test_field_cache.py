"""Dense fields cached on disk: a reopened pair is not registered again, a changed scan or option
never reuses a stale field, and the dense match extracts each scan once. A small phantom pair
(40^3 at 6 mm, weight-free MIND-SSC) keeps the registrations to seconds."""

from __future__ import annotations

import numpy as np
import pytest

from MedDIFTLib.data.digest import volume_digest
from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
from MedDIFTLib.features.cache import FeatureCache
from MedDIFTLib.registration import RegistrationOptions
from MedDIFTLib.registration import volumes as reg_volumes
from MedDIFTLib.registration.field_cache import field_key, load_field, save_field
from MedDIFTLib.session import EngineOptions, MatchSession


@pytest.fixture(scope="module")
def pair():
    return make_pair(shape=(40, 40, 40), spacing=(6.0, 6.0, 6.0), seed=2)


@pytest.fixture
def counted(monkeypatch):
    """Counts the registrations actually computed (the real function runs)."""
    calls = []
    real = reg_volumes.register_volumes

    def spy(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(reg_volumes, "register_volumes", spy)
    return calls


def _session(cache_dir, **reg):
    return MatchSession(
        EngineOptions(backbone="mind-ssc", device="cpu", cache_dir=str(cache_dir)),
        registration=RegistrationOptions(iterations=20, **reg) if reg else None,
    )


def test_a_reopened_pair_takes_its_field_from_the_cache(pair, tmp_path, counted):
    opts = RegistrationOptions(iterations=20)
    first = _session(tmp_path).register(pair.fixed, pair.moving, opts)
    stages = []
    again = _session(tmp_path).register(pair.fixed, pair.moving, opts, progress=lambda s, f: stages.append(s))
    assert len(counted) == 1 and stages == ["registration (cached)"]
    np.testing.assert_array_equal(again.u, first.u)  # the same numbers, read back (npz keeps float64 exactly)
    np.testing.assert_array_equal(again.prealign, first.prealign)
    assert again.grid.shape == first.grid.shape and again.info == first.info
    assert len(FeatureCache(tmp_path).entries("field")) == 1


def test_one_changed_voxel_or_option_registers_again(pair, tmp_path, counted):
    opts = RegistrationOptions(iterations=20)
    _session(tmp_path).register(pair.fixed, pair.moving, opts)
    arr = np.array(pair.moving.array, copy=True)
    arr[20, 20, 20] += 1.0
    _session(tmp_path).register(pair.fixed, pair.moving.with_array(arr), opts)
    _session(tmp_path).register(pair.fixed, pair.moving, RegistrationOptions(iterations=21))
    _session(tmp_path).register(pair.fixed, pair.moving, opts, initial=np.eye(4))
    assert len(counted) == 4
    assert len(FeatureCache(tmp_path).entries("field")) == 4


def test_the_key_names_every_input():
    opts = RegistrationOptions()
    base = field_key("f", "m", {"backbone": "mind-ssc", "levels": ["mind1"]}, opts)
    others = [
        field_key("f2", "m", {"backbone": "mind-ssc", "levels": ["mind1"]}, opts),
        field_key("f", "m2", {"backbone": "mind-ssc", "levels": ["mind1"]}, opts),
        field_key("m", "f", {"backbone": "mind-ssc", "levels": ["mind1"]}, opts),  # the direction counts
        field_key("f", "m", {"backbone": "mind-ssc", "levels": ["mind2"]}, opts),
        field_key("f", "m", {"backbone": "mind-ssc", "levels": ["mind1"]}, RegistrationOptions(lam=0.6)),
        field_key("f", "m", {"backbone": "mind-ssc", "levels": ["mind1"]}, opts, initial=np.eye(4)),
    ]
    assert len({base, *others}) == 7
    assert base == field_key("f", "m", {"levels": ["mind1"], "backbone": "mind-ssc"}, RegistrationOptions())


def test_a_corrupt_or_foreign_field_file_is_not_used(pair, tmp_path, counted):
    opts = RegistrationOptions(iterations=20)
    first = _session(tmp_path).register(pair.fixed, pair.moving, opts)
    (path,) = [p for p, _, _ in FeatureCache(tmp_path).entries("field")]
    path.write_bytes(b"truncated")  # the cache's own entry, damaged: removed and registered again
    again = _session(tmp_path).register(pair.fixed, pair.moving, opts)
    assert len(counted) == 2
    np.testing.assert_allclose(again.u, first.u, atol=1e-6)  # recomputed: the same algorithm on one thread
    # a valid field file of another key under this key's name is refused by its content
    other = tmp_path / "other.field.npz"
    save_field(first, other, "another key")
    with pytest.raises(Exception, match="not the cached field of its key"):
        load_field(other, path.name.split(".")[0])


def test_dense_match_extracts_each_scan_once_and_clicks_reuse_it(pair, tmp_path, monkeypatch):
    from MedDIFTLib.features import mind_ssc

    calls = []
    real = mind_ssc.MindSSCBackbone.extract
    monkeypatch.setattr(
        mind_ssc.MindSSCBackbone,
        "extract",
        lambda self, vol, *a, **k: calls.append(tuple(self.levels)) or real(self, vol, *a, **k),
    )
    session = MatchSession(
        EngineOptions(backbone="mind-ssc", device="cpu", use_cache=False),
        registration=RegistrationOptions(iterations=20),
    )
    lm = sample_landmarks(pair, n=4, seed=2)
    report = session.match(pair.fixed, pair.moving, lm, prior="dense")
    click = session.match(pair.fixed, pair.moving, lm.subset([1]), prior="dense")
    assert calls == [("mind1", "mind2", "mind4")] * 2  # the fixed and the moving scan, once each
    np.testing.assert_allclose(click.points.points[0], report.points.points[1], atol=1e-9)
    # the scores come from the same levels point matching uses, read from the wider pyramid
    plain = session.features(pair.moving)
    assert plain.names == ["mind2", "mind4"] and volume_digest(pair.moving) in session._pyramids


def test_a_second_command_on_the_same_pair_reuses_the_field_of_the_first(pair, tmp_path):
    """`meddift match` (dense by default) then `meddift register` on the same scans, each its own
    process with the same cache folder: the second reads the field, registers nothing, and writes
    the field the first computed (the points of the first are that field's positions)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import SimpleITK as sitk

    from MedDIFTLib.data.image_io import write_volume
    from MedDIFTLib.data.landmark_io import read_points, write_points

    repo = Path(__file__).resolve().parents[3]
    env = dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1", MEDDIFT_CACHE_DIR=str(tmp_path / "cache"))
    write_volume(pair.fixed, tmp_path / "fixed.nii.gz")
    write_volume(pair.moving, tmp_path / "moving.nii.gz")
    lm = sample_landmarks(pair, n=4, seed=2)
    write_points(lm, tmp_path / "lm.csv")
    scans = [str(tmp_path / "fixed.nii.gz"), str(tmp_path / "moving.nii.gz")]
    common = ["--backbone", "mind-ssc", "--iterations", "20"]

    def meddift(*args):
        res = subprocess.run(
            [sys.executable, "-m", "MedDIFTLib.cli", *args], env=env, capture_output=True, text=True, timeout=600
        )
        assert res.returncode == 0, res.stderr
        return res.stderr

    first = meddift("match", *scans, "--points", str(tmp_path / "lm.csv"), "--out", str(tmp_path / "m.csv"), *common)
    assert "discrete search" in first and "registration (cached)" not in first
    second = meddift("register", *scans, "--out", str(tmp_path / "reg"), "--no-figure", *common)
    assert "registration (cached)" in second and "discrete search" not in second
    tx = sitk.DisplacementFieldTransform(
        sitk.Cast(sitk.ReadImage(str(tmp_path / "reg" / "field.nii.gz")), sitk.sitkVectorFloat64)
    )
    lps = np.array([-1.0, -1.0, 1.0])
    mapped = np.array([tx.TransformPoint(tuple(p * lps)) for p in lm.points]) * lps
    # the field image is the field resampled on the fixed scan's 6 mm grid, then interpolated again by
    # ITK: within 0.25 mm of the engine's own positions (the motion here is several mm)
    np.testing.assert_allclose(read_points(tmp_path / "m.csv").points, mapped, atol=0.25)
    assert np.linalg.norm(mapped - lm.points, axis=1).max() > 1.0


def test_a_mask_means_the_papers_argmax_and_is_refused_with_an_explicit_dense_prior(pair, tmp_path):
    """The dense prior does not search, so a candidate mask cannot narrow it: given without a prior the
    mask selects the paper's argmax (the same matches as asking for it), with ``dense`` it is refused
    before any registration."""
    from MedDIFTLib.errors import InputError
    from MedDIFTLib.matching.search import MatchOptions

    session = MatchSession(
        EngineOptions(backbone="mind-ssc", device="cpu", use_cache=False), MatchOptions(radius_mm=25.0)
    )
    lm = sample_landmarks(pair, n=3, seed=2)
    mask = pair.moving.with_array((np.asarray(pair.moving.array) > -500).astype(np.uint8))
    with pytest.raises(InputError, match="a candidate mask restricts the point search, and the dense prior does not"):
        session.match(pair.fixed, pair.moving, lm, prior="dense", mask=mask)
    assert not session._fields  # refused before any registration
    default = session.match(pair.fixed, pair.moving, lm, mask=mask).points
    plain = session.match(pair.fixed, pair.moving, lm, prior="none", mask=mask).points
    np.testing.assert_array_equal(default.points, plain.points)
    assert "argmax_gap_mm" not in default.values and not session._fields
