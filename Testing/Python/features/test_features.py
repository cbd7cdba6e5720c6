"""Feature pyramids: level geometry, sampling semantics, persistence, the cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from MedDIFTLib.data import digest
from MedDIFTLib.data.digest import volume_digest
from MedDIFTLib.data.geometry import (
    Grid,
    Volume,
    apply_affine,
    ijk_to_ras_from_itk,
    reorient_to_ras,
    resized_grid,
)
from MedDIFTLib.errors import InputError
from MedDIFTLib.features.base import Backbone
from MedDIFTLib.features.cache import FeatureCache, cache_key, extract_cached
from MedDIFTLib.features.preprocess import prepare, target_shape
from MedDIFTLib.features.pyramid import (
    FeatureLevel,
    FeaturePyramid,
    level_matrix,
)


def _oblique_grid(shape=(45, 38, 30)):
    a = np.deg2rad(25.0)
    d = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ np.diag([-1.0, 1.0, 1.0])
    return Grid(shape, ijk_to_ras_from_itk((0.8, 1.4, 3.0), (12.0, -7.0, 40.0), d))


def test_level_matrix_agrees_with_encoder_stride_geometry():
    """A 1/4 level voxel u covers input voxels 4u..4u+3 of the resized image: centre 4u+1.5."""
    grid = _oblique_grid()
    input_grid = resized_grid(grid, (128, 128, 128))
    lvl = level_matrix(grid, (32, 32, 32))
    for u in [(0, 0, 0), (5, 17, 31), (31, 0, 12)]:
        via_stride = apply_affine(input_grid.ijk_to_ras, 4 * np.array(u) + 1.5)
        np.testing.assert_allclose(apply_affine(lvl, u), via_stride, atol=1e-9)
    # 1/16 level: centre of a 16-voxel block
    lvl16 = level_matrix(grid, (8, 8, 8))
    np.testing.assert_allclose(
        apply_affine(lvl16, [2, 3, 4]), apply_affine(input_grid.ijk_to_ras, 16 * np.array([2, 3, 4]) + 7.5), atol=1e-9
    )


def test_level_covers_the_volume_field_of_view_exactly():
    grid = _oblique_grid()
    lvl = Grid((8, 8, 8), level_matrix(grid, (8, 8, 8)))
    for a, b in zip(grid.bounds_ras(), lvl.bounds_ras()):
        np.testing.assert_allclose(a, b, atol=1e-9)


def test_hand_computed_level_position():
    # axis-aligned 60 voxels of 1.5 mm from x=0: an 8-voxel level has 11.25 mm voxels,
    # its voxel 0 centred at volume index (0.5*60/8 - 0.5) = 3.25 -> x = 4.875 mm
    grid = Grid((60, 60, 60), np.diag([1.5, 1.5, 1.5, 1.0]))
    m = level_matrix(grid, (8, 8, 8))
    np.testing.assert_allclose(apply_affine(m, [0, 0, 0])[0], [4.875] * 3)
    np.testing.assert_allclose(np.diag(m)[:3], [11.25] * 3)


def test_trilinear_sample_equals_torch_upsampling():
    """Sampling a level at full-grid voxel centres is exactly F.interpolate(align_corners=False)."""
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(5, 4, 6, 3, generator=g)
    grid = Grid((13, 17, 11), np.diag([0.7, 1.1, 2.0, 1.0]))
    level = FeatureLevel("x", feats, level_matrix(grid, feats.shape[1:]))
    up = F.interpolate(feats[None], size=grid.shape, mode="trilinear", align_corners=False)[0]
    ijk = np.indices(grid.shape).reshape(3, -1).T
    sampled = level.sample(apply_affine(grid.ijk_to_ras, ijk))
    np.testing.assert_allclose(sampled.numpy(), up.reshape(5, -1).T.numpy(), atol=1e-5)


def test_sampling_at_a_level_voxel_centre_returns_that_voxel():
    grid = _oblique_grid()
    feats = torch.randn(3, 8, 8, 8)
    level = FeatureLevel("x", feats, level_matrix(grid, (8, 8, 8)))
    ras = apply_affine(level.ijk_to_ras, [[2, 5, 7], [0, 0, 0], [7, 7, 7]])
    np.testing.assert_allclose(
        level.sample(ras).numpy(), feats[:, [2, 0, 7], [5, 0, 7], [7, 0, 7]].T.numpy(), atol=1e-5
    )


def test_sample_between_voxels_is_the_average():
    feats = torch.zeros(1, 2, 1, 1)
    feats[0, 1] = 4.0
    level = FeatureLevel("x", feats, np.diag([2.0, 2.0, 2.0, 1.0]))
    assert level.sample([[1.0, 0, 0]]).item() == pytest.approx(2.0)
    assert level.sample([[0.5, 0, 0]]).item() == pytest.approx(1.0)
    assert level.sample([[-10.0, 0, 0]]).item() == pytest.approx(0.0)  # border-clamped


def test_pyramid_save_load_round_trip(tmp_path):
    grid = _oblique_grid()
    levels = [
        FeatureLevel(n, torch.randn(c, s, s, s), level_matrix(grid, (s, s, s)))
        for n, c, s in [("a", 4, 4), ("b", 2, 8)]
    ]
    p = FeaturePyramid(levels, grid, {"backbone": "test", "n": 1})
    path = p.save(tmp_path / "sub" / "p.pt")
    q = FeaturePyramid.load(path)
    assert q.names == ["a", "b"] and q.identity == p.identity and q.grid.shape == grid.shape
    for a, b in zip(p.levels, q.levels):
        torch.testing.assert_close(a.features, b.features)
        np.testing.assert_array_equal(a.ijk_to_ras, b.ijk_to_ras)
    assert p.select(["b"]).names == ["b"]
    with pytest.raises(InputError, match="no feature level 'c'"):
        p.level("c")


def test_corrupt_pyramid_file_is_reported(tmp_path):
    bad = tmp_path / "p.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"p\.pt: feature pyramid file is unreadable or corrupt"):
        FeaturePyramid.load(bad)


# --- preprocessing -------------------------------------------------------------------


@pytest.mark.parametrize("n,expected", [(30, 128), (191, 128), (192, 256), (208, 256), (330, 384), (512, 512)])
def test_paper_size_policy_is_nearest_multiple_of_128(n, expected):
    assert target_shape((n, n, n), (1, 1, 1), "paper") == (expected,) * 3


def test_spacing_size_policy():
    assert target_shape((192, 192, 208), (1.75, 1.25, 1.75), "spacing", 1.5) == (224, 160, 256)
    with pytest.raises(InputError, match="unknown size policy"):
        target_shape((10, 10, 10), (1, 1, 1), "bogus")


def test_prepare_windows_hu_and_keeps_the_reoriented_field_of_view():
    arr = np.full((40, 30, 20), -2000.0, np.float32)
    arr[20:] = 3000.0
    m = ijk_to_ras_from_itk((1.0, 1.5, 2.0), (0, 0, 0), np.eye(3))  # LPS axes: i->L, j->P
    vol = Volume(arr, m)
    prep = prepare(vol)
    assert prep.tensor.shape == (1, 1, 128, 128, 128)
    assert prep.tensor.min() == 0.0 and prep.tensor.max() == 1.0
    assert prep.grid.shape == reorient_to_ras(vol).shape
    for a, b in zip(prep.grid.bounds_ras(), prep.input_grid.bounds_ras()):
        np.testing.assert_allclose(a, b, atol=1e-9)
    # after RAS reorientation the high-HU half (old i >= 20, towards L) is at low i (towards R is +)
    assert prep.tensor[0, 0, :60].mean() > 0.99 and prep.tensor[0, 0, 68:].mean() < 0.01


def test_prepare_refuses_nan_and_tiny_volumes():
    arr = np.zeros((16, 16, 16), np.float32)
    arr[3, 3, 3] = np.nan
    with pytest.raises(InputError, match="NaN or infinite"):
        prepare(Volume(arr, np.eye(4)))
    with pytest.raises(InputError, match="too small"):
        prepare(Volume(np.zeros((4, 16, 16)), np.eye(4)))


# --- the cache -----------------------------------------------------------------------


class CountingBackbone(Backbone):
    """A deterministic toy backbone (mean-pooled intensities) that counts its calls."""

    name = "counting"

    def __init__(self, option=1):
        self.option, self.calls = option, 0

    def identity(self):
        return {"backbone": self.name, "option": self.option}

    def extract(self, volume, progress=None, cancel=None):
        self.calls += 1
        t = torch.from_numpy(np.asarray(volume.array, np.float32))[None, None]
        feats = F.avg_pool3d(t, 2)[0] * self.option
        grid = volume.grid
        return FeaturePyramid(
            [FeatureLevel("avg", feats, level_matrix(grid, feats.shape[1:]))],
            grid,
            {**self.identity(), "volume_sha256": volume_digest(volume)},
        )


def test_cache_extracts_once_and_rebuilds_stale_files(tmp_path):
    vol = Volume(np.random.default_rng(1).normal(size=(8, 8, 8)).astype(np.float32), np.eye(4))
    bb, cache = CountingBackbone(), FeatureCache(tmp_path)
    a = extract_cached(bb, vol, cache)
    b = extract_cached(bb, vol, cache)
    assert bb.calls == 1
    torch.testing.assert_close(a.levels[0].features, b.levels[0].features)
    # another option -> another key -> extracted again
    assert extract_cached(CountingBackbone(option=2), vol, cache).levels[0].features.sum() != 0
    assert len(list(tmp_path.glob("*.pt"))) == 2
    # a corrupt cache file is detected and rebuilt
    key = cache_key(volume_digest(vol), bb.identity())
    cache.path_for(key).write_bytes(b"truncated")
    extract_cached(bb, vol, cache)
    assert bb.calls == 2
    assert FeaturePyramid.load(cache.path_for(key)).identity["cache_key"] == key


def test_changed_voxels_change_the_key():
    vol = Volume(np.zeros((4, 4, 4), np.float32), np.eye(4))
    other = vol.with_array(vol.array.copy())
    other.array[1, 1, 1] = 1
    shift = np.eye(4)
    shift[0, 3] = 5.0
    moved = Volume(vol.array, shift)
    digests = {volume_digest(v) for v in (vol, other, moved)}
    assert len(digests) == 3


def test_digest_is_remembered_while_the_volume_holds_the_same_array():
    vol = Volume(np.zeros((4, 4, 4), np.float32), np.eye(4))
    first = volume_digest(vol)
    assert vol.__dict__[digest._MEMO][2] == first and volume_digest(vol) == first
    vol.array = np.ones((4, 4, 4), np.float32)  # a new array object: hashed again
    assert volume_digest(vol) != first
    vol.ijk_to_ras = np.diag([2.0, 2.0, 2.0, 1.0])  # a new matrix object: hashed again
    assert volume_digest(vol) != volume_digest(Volume(np.ones((4, 4, 4), np.float32), np.eye(4)))
