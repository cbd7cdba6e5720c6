"""Matching computes on the device it is given (``meddift match --device``), and says so in words when
that device cannot be used.

There is no GPU here. The stand-in for "another device" is torch's *default* device set to ``meta`` (a
device that holds no data): every tensor the search makes must follow the matcher's device argument (here
the CPU, passed explicitly as the session passes ``--device``); one made on the default device instead
fails or comes back without values, so these tests fail if any creation forgets its device.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from MedDIFTLib.data.geometry import Grid, apply_affine, ijk_to_ras_from_itk
from MedDIFTLib.errors import InputError
from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
from MedDIFTLib.matching.search import Matcher, MatchOptions
from MedDIFTLib.matching.strategy import NATIVE, UPSAMPLED
from MedDIFTLib.session import EngineOptions, MatchSession
from synthetic_pyramids import world_feature_pyramid


@pytest.fixture(scope="module")
def pyramids():
    a = np.deg2rad(10.0)
    d = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    grid = Grid((40, 36, 30), ijk_to_ras_from_itk((1.5, 1.25, 2.0), (4.0, -3.0, 1.0), d))
    fixed = world_feature_pyramid(grid, seed=6, layout=(("mind2", 12, 2), ("mind4", 12, 4)))
    moving = world_feature_pyramid(
        grid, seed=6, layout=(("mind2", 12, 2), ("mind4", 12, 4)), shift_mm=(2.0, -1.5, 3.0), noise=0.4
    )
    pts = apply_affine(grid.ijk_to_ras, np.random.default_rng(6).uniform(0, np.asarray(grid.shape) - 1, (12, 3)))
    mask = np.zeros(grid.shape, bool)
    mask[:, ::2] = True
    mask[:12] = True
    return fixed, moving, pts, mask


def _identical(a, b):
    """Same computation (the same code on the same CPU, summing in the same order): bit for bit."""
    np.testing.assert_array_equal(a.voxel, b.voxel)
    for name in ("points", "similarity", "margin", "fb_error_mm"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("strategy", [NATIVE, UPSAMPLED])
@pytest.mark.parametrize("local", [False, True])
def test_matching_computes_on_the_given_device_not_on_torch_s_default(pyramids, strategy, local):
    fixed, moving, pts, mask = pyramids
    opts = MatchOptions(strategy=strategy, radius_mm=8.0 if local else None)
    ref = Matcher(fixed, moving, opts).match(pts, mask=mask)  # on the pyramids' own device
    ref_map = Matcher(fixed, moving, opts).heatmap(pts[0])
    with torch.device("meta"):
        m = Matcher(fixed, moving, opts, device="cpu")
        got = m.match(pts, mask=mask)
        got_map = m.heatmap(pts[0])
    assert got.extra["strategy"] == strategy and m.target.levels[0].feats.device == torch.device("cpu")
    _identical(ref, got)
    # the same computation on the same CPU in the same summation order ("same computation", Testing/Python/parity.py): bit for bit
    np.testing.assert_array_equal(ref_map.array, got_map.array)


def test_the_device_argument_in_every_form_gives_identical_matches(pyramids):
    fixed, moving, pts, mask = pyramids
    ref = Matcher(fixed, moving).match(pts)
    forms = ["cpu", torch.device("cpu")] + ([] if torch.cuda.is_available() else ["auto"])
    for dev in forms:
        m = Matcher(fixed, moving, device=dev)
        assert m.device == torch.device("cpu") and m.backward().device == torch.device("cpu")
        _identical(ref, m.match(pts))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_in_words_before_any_work(pyramids):
    fixed, moving, _, _ = pyramids
    for dev in ("cuda", "cuda:1", torch.device("cuda")):
        with pytest.raises(
            InputError,
            match=r"asked for, but this torch has no CUDA device \(a CPU build, or no GPU "
            r"visible\): use device = cpu",
        ):
            Matcher(fixed, moving, device=dev)
    with pytest.raises(InputError, match="unknown device 'tpu'"):
        Matcher(fixed, moving, device="tpu")
    # the weight-free backbone never needs the GPU for its features: the session still refuses at once
    with pytest.raises(InputError, match="no CUDA device"):
        MatchSession(EngineOptions(backbone="mind-ssc", device="cuda", use_cache=False))


def test_the_session_matches_on_its_engine_device():
    """``--device`` reaches matching: the session's matchers (and their forward-backward and coarse-prior
    matchers) compute on the engine's device, with the same results as a matcher given it directly."""
    pair = make_pair(shape=(48, 48, 48), spacing=(6.0, 6.0, 6.0), seed=3)
    points = sample_landmarks(pair, n=6, seed=3)
    session = MatchSession(EngineOptions(backbone="mind-ssc", device="cpu", use_cache=False), MatchOptions())
    assert session.match_device == torch.device("cpu")
    report = session.match(pair.fixed, pair.moving, points, prior="none")  # point matching: the matchers
    m = session.matcher(pair.fixed, pair.moving)
    assert m.device == session.match_device and m.backward().device == session.match_device
    direct = Matcher(session.features(pair.fixed), session.features(pair.moving), MatchOptions(), device="cpu")
    # one matcher's code on both sides, same CPU, same summation order ("same computation", Testing/Python/parity.py): bit for bit
    np.testing.assert_array_equal(report.points.points, direct.match(points.points).points)
