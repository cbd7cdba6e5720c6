"""Each registration baseline maps fixed landmarks into the moving scan on an exactly known rigid
transform; optional ones are skipped, with the reason, where their package is not installed."""

from __future__ import annotations

import numpy as np
import pytest

from known_transform import known_rigid_case, rigid_matrix
from MedDIFTLib.errors import InputError
from MedDIFTLib.evaluation import methods as em


@pytest.fixture(scope="module")
def case():
    return known_rigid_case()


def _accepts(mapped, case) -> bool:
    """Mean error under a fifth of the mean displacement, and no landmark off by half the smallest one."""
    before = np.linalg.norm(case.fixed_points.points - case.moving_points.points, axis=1)
    err = np.linalg.norm(np.asarray(mapped) - case.moving_points.points, axis=1)
    return bool(err.mean() < 0.2 * before.mean() and err.max() < 0.5 * before.min())


def test_the_criterion_rejects_a_backwards_transform_and_an_lps_slip(case):
    """The convention test below can fail: the inverse mapping and an LPS/RAS mix-up are refused."""
    inv = np.linalg.inv(rigid_matrix())
    backwards = case.fixed_points.points @ inv[:3, :3].T + inv[:3, 3]
    m = rigid_matrix()
    lps_slip = (case.fixed_points.points * [-1, -1, 1]) @ m[:3, :3].T + m[:3, 3]
    lps_slip *= [-1, -1, 1]
    assert not _accepts(backwards, case)
    assert not _accepts(lps_slip, case)
    assert not _accepts(case.fixed_points.points, case)
    assert _accepts(case.moving_points.points, case)


def _need(method_cls):
    reason = method_cls.unavailable_reason()
    if reason:
        pytest.skip(reason)


def test_simpleitk_bspline_convention(case):
    mapped = em.SimpleITKBSpline(mesh_mm=60.0, iterations=30, shrink=(2, 1), sigmas=(1.0, 0.0)).map_points(case)
    assert _accepts(mapped, case)


@pytest.mark.slow
def test_elastix_convention(case):
    _need(em.ElastixBSpline)
    assert _accepts(em.ElastixBSpline(iterations=100, resolutions=2).map_points(case), case)


def test_ants_syn_convention(case):
    _need(em.AntsSyN)
    assert _accepts(em.AntsSyN(iterations=(20, 10, 0)).map_points(case), case)


def test_convexadam_convention(case):
    _need(em.ConvexAdam)
    assert _accepts(em.ConvexAdam().map_points(case), case)


def test_meddift_method_convention(case, monkeypatch, tmp_path):
    monkeypatch.setenv("MEDDIFT_WEIGHTS_DIR", str(tmp_path / "none"))
    m = em.MedDIFTMethod(radius_mm=25.0)
    assert m.name.startswith("MIND-SSC")
    mapped = m.map_points(case)
    err = np.linalg.norm(mapped - case.moving_points.points, axis=1)
    before = np.linalg.norm(case.fixed_points.points - case.moving_points.points, axis=1)
    # The anatomy is rotated 6 degrees in the world and the rotated scan is resampled onto RAS axes,
    # so the voxel-wise descriptor sees a real rotation: measured median 4.3 mm against 14.4 mm before.
    # A convention slip (transform backwards, LPS for RAS) would land about twice the displacement away.
    assert np.median(err) < 0.4 * np.median(before)


def test_unigradicon_without_weights_is_skipped_with_the_reason(monkeypatch, tmp_path):
    monkeypatch.delenv(em.UNIGRADICON_WEIGHTS_ENV, raising=False)
    reason = em.UniGradICON.unavailable_reason()
    assert reason.startswith("uniGradICON: skipped, ")
    assert "not installed" in reason or em.UNIGRADICON_WEIGHTS_ENV in reason
    monkeypatch.setenv(em.UNIGRADICON_WEIGHTS_ENV, str(tmp_path / "Step_2_final.trch"))
    reason = em.UniGradICON.unavailable_reason()
    assert "not installed" in reason or "is not a file" in reason


def test_all_lists_skipped_methods_and_naming_one_that_cannot_run_is_an_error(monkeypatch):
    monkeypatch.delenv(em.UNIGRADICON_WEIGHTS_ENV, raising=False)
    logged = []
    methods = em.resolve_methods("all", log=logged.append)
    names = [m.name for m in methods]
    assert names[:5] == [
        "identity",
        names[1],
        "MedDIFT dense (MIND-SSC, weight-free)",
        "MedDIFT dense + argmax 6 mm (MIND-SSC, weight-free)",
        "SimpleITK B-spline",
    ]
    assert any(msg.startswith("uniGradICON: skipped") for msg in logged)
    assert len(names) + len(logged) == len(em.METHODS)
    with pytest.raises(InputError, match="uniGradICON: cannot run"):
        em.resolve_methods("identity,unigradicon")
    with pytest.raises(InputError, match=r"unknown methods \['bspline'\]; available: all, identity"):
        em.resolve_methods("identity,bspline")


def test_a_missing_package_is_named_with_the_install_command(monkeypatch):
    class Needs(em.Method):
        name = "needs"
        requires = ("no_such_module_meddift",)

    assert Needs.unavailable_reason() == (
        'needs: skipped, no_such_module_meddift not installed (pip install "meddift[baselines]")'
    )
