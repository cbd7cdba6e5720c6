"""The weight-free MIND-SSC backbone: descriptor, level geometry, equivariance, cancel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from MedDIFTLib.data.geometry import (
    Volume,
    apply_affine,
    covering_grid,
    ijk_to_ras_from_itk,
    make_ijk_to_ras,
)
from MedDIFTLib.errors import CancelledError, InputError
from MedDIFTLib.features import create_backbone
from MedDIFTLib.features.mind_ssc import SSC_PAIRS, MindSSCBackbone, mind_ssc


def _texture(shape, seed=0):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    return (ndimage.gaussian_filter(rng.normal(size=shape), 1.5) * 3000).astype(np.float32)


def test_twelve_ssc_pairs_of_orthogonal_neighbours():
    assert len(SSC_PAIRS) == 12


def test_descriptor_values_and_shape():
    img = torch.rand(1, 1, 20, 18, 16)
    d = mind_ssc(img)
    assert d.shape == (1, 12, 20, 18, 16)
    assert torch.all(d > 0) and torch.allclose(d.amax(dim=1), torch.ones(1, 20, 18, 16))
    # a constant image has no structure: every channel equal (1 after normalisation)
    assert torch.allclose(mind_ssc(torch.full((1, 1, 12, 12, 12), 0.3)), torch.ones(1, 12, 12, 12, 12))


def test_levels_have_exact_geometry_on_an_oblique_anisotropic_volume():
    a = np.deg2rad(25.0)
    d = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    m = ijk_to_ras_from_itk((1.2, 0.8, 2.0), (30.0, -10.0, 5.0), d @ np.diag([-1.0, 1.0, 1.0]))
    arr = np.full((41, 50, 23), -800.0, np.float32)
    arr[18:23, 22:28, 9:14] = 600.0  # a bright blob
    vol = Volume(arr, m)
    blob = vol.ijk_to_world([[20.0, 24.5, 11.0]])[0]
    pyr = MindSSCBackbone().extract(vol)
    assert pyr.names == ["mind2", "mind4"]
    for lv in pyr.levels:
        assert lv.channels == 12
        # levels are on RAS axes (the oblique scan is resampled) and span the box covering the scan
        d = lv.ijk_to_ras[:3, :3] / np.linalg.norm(lv.ijk_to_ras[:3, :3], axis=0)
        np.testing.assert_allclose(d, np.eye(3), atol=1e-12)
        for x, y in zip(lv.grid.bounds_ras(), covering_grid(vol.grid).bounds_ras()):
            np.testing.assert_allclose(x, y, atol=1e-9)
        # the level voxel nearest the blob maps back to within one level voxel of it
        ijk = np.round(apply_affine(np.linalg.inv(lv.ijk_to_ras), blob)[0])
        spacing = np.linalg.norm(lv.ijk_to_ras[:3, :3], axis=0)
        assert np.linalg.norm(apply_affine(lv.ijk_to_ras, ijk)[0] - blob) <= np.linalg.norm(spacing) / 2 + 1e-9
        # and the descriptor there differs from the flat background far away
        far = vol.ijk_to_world([[3.0, 3.0, 3.0]])[0]
        assert (lv.sample([blob]) - lv.sample([far])).abs().max() > 0.2


def test_shift_by_whole_level_voxels_gives_the_same_descriptors_at_the_same_world_points():
    """Descriptors are local: a crop shifted by whole level voxels agrees away from its borders
    (farther than blur + dilation + patch, about 20 voxels at the coarsest level)."""
    big = _texture((96, 64, 64))
    step = 16  # voxels: four mind4 voxels, eight mind2 voxels
    a = Volume(big[:80], make_ijk_to_ras((1.5, 1.5, 2.0), (0.0, 0.0, 0.0)))
    b = Volume(big[step:], make_ijk_to_ras((1.5, 1.5, 2.0), (step * 1.5, 0.0, 0.0)))
    bb = MindSSCBackbone()
    pa, pb = bb.extract(a), bb.extract(b)
    pts = a.ijk_to_world(np.array([[40, 30, 30], [45, 25, 33], [50, 40, 28], [55, 32, 31.5]], float))
    for la, lb in zip(pa.levels, pb.levels):
        torch.testing.assert_close(la.sample(pts), lb.sample(pts), atol=2e-3, rtol=0)


def test_descriptor_is_discriminative_on_texture():
    vol = Volume(_texture((48, 48, 48), seed=3), make_ijk_to_ras((2.0, 2.0, 2.0), (0, 0, 0)))
    lv = MindSSCBackbone(levels=("mind2",)).extract(vol).levels[0]
    feats = lv.features.reshape(12, -1).T
    feats = feats / feats.norm(dim=1, keepdim=True)
    rng = np.random.default_rng(0)
    idx = rng.integers(4, 20, size=(30, 3))
    q = lv.sample(apply_affine(lv.ijk_to_ras, idx))
    q = q / q.norm(dim=1, keepdim=True)
    best = (q @ feats.T).argmax(dim=1).numpy()
    found = np.stack(np.unravel_index(best, lv.shape), 1)
    assert (np.abs(found - idx).max(axis=1) <= 1).mean() >= 0.9


def test_cancel_options_identity_and_determinism():
    vol = Volume(_texture((32, 32, 32)), np.eye(4))
    bb = MindSSCBackbone()
    with pytest.raises(CancelledError):
        bb.extract(vol, cancel=lambda: True)
    a, b = bb.extract(vol), bb.extract(vol)
    torch.testing.assert_close(a.levels[0].features, b.levels[0].features, rtol=0, atol=0)
    assert MindSSCBackbone(dilation=3).identity() != bb.identity()
    assert a.identity["volume_sha256"] and a.identity["backbone"] == "mind-ssc"
    assert isinstance(create_backbone("mind-ssc"), MindSSCBackbone)
    with pytest.raises(InputError, match="unknown feature levels"):
        MindSSCBackbone(levels=("up0",))
    with pytest.raises(InputError, match="too small"):
        bb.extract(Volume(np.zeros((4, 32, 32), np.float32), np.eye(4)))
