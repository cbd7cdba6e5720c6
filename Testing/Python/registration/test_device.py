"""Dense registration computes on the device it is given (``--device``), as matching does.

There is no GPU here. The stand-in for "another device" is torch's *default* device set to
``meta`` (a device without data), as in ``matching/test_match_device.py``: every tensor the
registration makes must follow the device argument (here the CPU, passed explicitly as the
session passes ``--device``); one created on the default device instead fails or comes back
without values, so this test fails if any creation forgets its device. The real CUDA run is
``Testing/Benchmarks/bench_device.py --device cuda`` (its ``register`` rows).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from MedDIFTLib.evaluation.motion import BreathingMotion
from MedDIFTLib.evaluation.phantom import make_pair
from MedDIFTLib.features import create_backbone
from MedDIFTLib.registration import RegistrationOptions, register


@pytest.fixture(scope="module")
def pyramids():
    pair = make_pair(shape=(40, 40, 40), spacing=(6.0, 6.0, 6.0), seed=5, motion=BreathingMotion(amplitude_mm=12.0))
    bb = create_backbone("mind-ssc", levels=("mind1", "mind2", "mind4"))
    return bb.extract(pair.fixed), bb.extract(pair.moving)


@pytest.mark.parametrize("prealign", ["none", "rigid"])
def test_registration_computes_on_the_given_device_not_on_torch_s_default(pyramids, prealign):
    pf, pm = pyramids
    opts = RegistrationOptions(prealign=prealign, iterations=10)
    ref = register(pf, pm, opts)  # on the pyramids' own device
    with torch.device("meta"):
        got = register(pf, pm, opts, device="cpu")
    np.testing.assert_array_equal(got.prealign, ref.prealign)
    np.testing.assert_allclose(got.u, ref.u, atol=1e-6)
    assert np.abs(ref.u).max() > 0.5  # a real displacement was found, not zeros on both sides
