"""One type for a resolved prior, and the device of ``auto`` asked of the backbone (not of its name)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from MedDIFTLib.errors import InputError
from MedDIFTLib.features.base import Backbone
from MedDIFTLib.features.maisi.backbone import MaisiBackbone
from MedDIFTLib.features.mind_ssc import MindSSCBackbone
from MedDIFTLib.features.options import resolve_device
from MedDIFTLib.matching.priors import GLOBAL, TRANSFORM, Prior, resolve_prior

PTS = np.array([[1.0, 2.0, 3.0], [-4.0, 5.0, 6.5]])


@pytest.mark.parametrize(
    "spec, radius, kind, needs_radius",
    [
        (None, None, GLOBAL, False),
        ("", 25.0, "identity", False),  # a radius without a prior: the same world point
        ("identity", None, "identity", True),
        ("coarse", None, "coarse", True),
        ("dense", None, "dense", False),  # the dense prior places points itself
        (lambda p: p + 1.0, 10.0, TRANSFORM, True),
        ([[1, 0, 0, 2.0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], 10.0, TRANSFORM, True),
    ],
)
def test_every_prior_spec_resolves_to_a_prior(spec, radius, kind, needs_radius):
    prior = resolve_prior(spec, radius)
    assert type(prior) is Prior and prior.kind == kind and prior.needs_radius is needs_radius
    assert resolve_prior(prior, radius) is prior  # a resolved prior passes through as is


def test_a_prior_maps_points_only_where_it_has_a_map():
    np.testing.assert_allclose(resolve_prior("identity")(PTS), PTS)
    shifted = resolve_prior([[1, 0, 0, 2.0], [0, 1, 0, 0], [0, 0, 1, -1.0], [0, 0, 0, 1]])(PTS)
    np.testing.assert_allclose(shifted, PTS + [2.0, 0.0, -1.0])
    with pytest.raises(InputError, match="the coarse prior does not map points by itself"):
        resolve_prior("coarse")(PTS)
    with pytest.raises(InputError, match="prior transform file not found"):
        resolve_prior("no/such/file.tfm")


def test_backbones_say_whether_they_want_an_accelerator():
    assert Backbone.wants_accelerator is False
    assert MindSSCBackbone.wants_accelerator is False and MaisiBackbone.wants_accelerator is True
    # auto: the CPU for a backbone that wants none, whatever this machine has
    assert resolve_device("auto", accelerator=False) == torch.device("cpu")
    assert MindSSCBackbone(device="auto").device == torch.device("cpu")
    expected = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto", accelerator=True) == expected
