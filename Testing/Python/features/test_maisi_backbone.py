"""The MAISI backbone end to end on CPU with tiny checkpoints in the released format.

The tiny networks have random weights: these tests check the method's
plumbing (conditioning, noise, hooks, geometry, determinism), not accuracy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from MedDIFTLib.data.geometry import Volume, covering_grid, ijk_to_ras_from_itk
from MedDIFTLib.errors import CancelledError, InputError
from MedDIFTLib.features import create_backbone
from MedDIFTLib.features.maisi.backbone import LEVEL_NAMES, MaisiBackbone
from MedDIFTLib.features.maisi.networks import MaisiConfig, build_scheduler
from tiny_maisi import TINY_CONFIG, write_tiny_checkpoints


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("maisi_weights")
    write_tiny_checkpoints(folder, seed=3, scale_factor=1.25)
    return folder


def _oblique_ct(shape=(70, 60, 40), seed=0):
    rng = np.random.default_rng(seed)
    arr = rng.normal(-600, 250, shape).astype(np.float32)
    arr[20:40, 20:40, 10:30] = 300.0
    a = np.deg2rad(20.0)
    d = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ np.diag([1.0, -1.0, 1.0])
    return Volume(arr, ijk_to_ras_from_itk((1.3, 0.9, 2.5), (5.0, 10.0, -30.0), d), "ct")


def _backbone(weights_dir, **kw):
    return MaisiBackbone(weights_dir=weights_dir, device="cpu", config=TINY_CONFIG, **kw)


def test_scheduler_is_maisi_v1_scaled_linear():
    """alpha_bar(t) from MAISI's schedule: betas = linspace(sqrt(0.0015), sqrt(0.0195), 1000)^2."""
    sched = build_scheduler(MaisiConfig.v1())
    betas = np.linspace(math.sqrt(0.0015), math.sqrt(0.0195), 1000) ** 2
    abar = np.cumprod(1 - betas)
    np.testing.assert_allclose(sched.alphas_cumprod.numpy(), abar, rtol=1e-5)
    assert sched.alphas_cumprod[20].item() == pytest.approx(abar[20], rel=1e-6)


def test_extraction_with_checkpoints_gives_four_levels_with_exact_geometry(weights_dir):
    vol = _oblique_ct()
    pyr = _backbone(weights_dir).extract(vol)
    assert pyr.names == list(LEVEL_NAMES)
    # input 128^3 (paper policy): levels at 1/16, 1/8, 1/4, 1/4 with the UNet's channels deepest first
    assert [lv.shape for lv in pyr.levels] == [(8, 8, 8), (16, 16, 16), (32, 32, 32), (32, 32, 32)]
    assert [lv.channels for lv in pyr.levels] == list(TINY_CONFIG.level_channels) == [64, 32, 16, 8]
    assert all(lv.features.dtype == torch.float32 and torch.isfinite(lv.features).all() for lv in pyr.levels)
    for lv in pyr.levels:  # every level spans the RAS box covering the (oblique) volume, on RAS axes
        for a, b in zip(lv.grid.bounds_ras(), covering_grid(vol.grid).bounds_ras()):
            np.testing.assert_allclose(a, b, atol=1e-6)
        d = lv.ijk_to_ras[:3, :3] / np.linalg.norm(lv.ijk_to_ras[:3, :3], axis=0)
        np.testing.assert_allclose(d, np.eye(3), atol=1e-12)
    assert set(pyr.identity["weights"]["files"]) == {"autoencoder_v1.pt", "diff_unet_3d_ddpm-ct.pt"}
    assert pyr.identity["timestep"] == 20 and pyr.identity["region"] == ["thorax", "thorax"]


def test_unet_gets_noised_scaled_latent_and_conditioning(weights_dir):
    """The UNet input is sqrt(abar_t) * z * scale_factor + sqrt(1 - abar_t) * eps, with thorax and spacing x100."""
    vol = _oblique_ct()
    bb = _backbone(weights_dir, latent="mean", seed=11, timestep=20)
    vae, unet, scale_factor = bb.load()
    assert scale_factor == pytest.approx(1.25)
    seen = {}

    def pre_hook(_m, args, kwargs):
        seen["x"] = args[0].clone() if args else kwargs["x"].clone()
        seen.update({k: v.clone() for k, v in kwargs.items() if torch.is_tensor(v)})

    handle = unet.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        bb.extract(vol)
    finally:
        handle.remove()
    from MedDIFTLib.features.preprocess import prepare

    prep = prepare(vol)
    with torch.no_grad():
        z_mu, _ = vae.encode(prep.tensor)
    gen = torch.Generator().manual_seed(11)
    torch.randn(z_mu.shape, generator=gen)  # the latent-sample draw (unused with latent="mean")
    eps = torch.randn(z_mu.shape, generator=gen)
    abar = build_scheduler(TINY_CONFIG).alphas_cumprod[20]
    expected = abar.sqrt() * z_mu * 1.25 + (1 - abar).sqrt() * eps
    torch.testing.assert_close(seen["x"], expected, atol=1e-5, rtol=1e-5)
    assert seen["timesteps"].tolist() == [20]
    assert seen["top_region_index_tensor"].tolist() == [[0.0, 100.0, 0.0, 0.0]]
    assert seen["bottom_region_index_tensor"].tolist() == [[0.0, 100.0, 0.0, 0.0]]
    # spacing of the 128^3 network input in mm x 100 (RAS axis order after reorientation)
    np.testing.assert_allclose(seen["spacing_tensor"][0].numpy(), prep.input_spacing * 100, rtol=1e-6)


def test_hooks_are_removed_and_results_are_deterministic(weights_dir):
    vol = _oblique_ct()
    bb = _backbone(weights_dir, levels=("up1", "up3"))
    a = bb.extract(vol)
    b = bb.extract(vol)
    unet = bb.load()[1]
    assert all(len(block._forward_hooks) == 0 for block in unet.up_blocks)
    assert a.names == ["up1", "up3"]
    for x, y in zip(a.levels, b.levels):
        torch.testing.assert_close(x.features, y.features, rtol=0, atol=0)
    other = _backbone(weights_dir, levels=("up1", "up3"), seed=1).extract(vol)
    assert not torch.allclose(other.levels[1].features, a.levels[1].features)


def test_ensemble_and_latent_mean_change_the_features(weights_dir):
    vol = _oblique_ct()
    single = _backbone(weights_dir, levels=("up3",)).extract(vol).levels[0].features
    ens = _backbone(weights_dir, levels=("up3",), ensemble=3).extract(vol).levels[0].features
    mean = _backbone(weights_dir, levels=("up3",), latent="mean").extract(vol).levels[0].features
    assert not torch.allclose(single, ens) and not torch.allclose(single, mean)
    # averaging 3 noise draws brings features closer to the noise-free (t=0, mean latent) ones
    clean = _backbone(weights_dir, levels=("up3",), latent="mean", timestep=0).extract(vol).levels[0].features
    assert (ens - clean).norm() < (single - clean).norm()


def test_cancel_stops_between_stages(weights_dir):
    stages = []

    def progress(stage, fraction):
        stages.append(stage)

    with pytest.raises(CancelledError):
        _backbone(weights_dir).extract(_oblique_ct(), progress, cancel=lambda: "vae encode" in stages)
    assert "unet" not in stages


def test_random_init_control_is_labelled_as_such():
    bb = MaisiBackbone(device="cpu", config=TINY_CONFIG, random_init=True, levels=("up0",))
    ident = bb.identity()
    assert ident["weights"] == {"random_init": True, "seed": 0}


def test_identity_is_known_without_building_the_networks(weights_dir):
    """The identity is part of every feature-cache key: a cache hit must not pay for loading the model."""
    bb = _backbone(weights_dir)
    ident = bb.identity()
    assert bb._nets is None and set(ident["weights"]["files"]) == {"autoencoder_v1.pt", "diff_unet_3d_ddpm-ct.pt"}


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"timestep": 1000}, "timestep must be a whole number in 0..999"),
        ({"levels": ("up7",)}, "unknown feature levels"),
        ({"region": "knee"}, "unknown body region 'knee'"),
        ({"latent": "mode"}, "latent must be sample or mean"),
        ({"ensemble": 0}, "ensemble must be at least 1"),
        ({"device": "tpu"}, "device 'tpu'"),
    ],
)
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(InputError, match=message):
        MaisiBackbone(config=TINY_CONFIG, random_init=True, **{"device": "cpu", **kwargs})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(InputError, match=r"no CUDA device \(a CPU build, or no GPU visible\): use device = cpu"):
        MaisiBackbone(config=TINY_CONFIG, random_init=True, device="cuda")


def test_create_backbone_by_name(weights_dir):
    assert isinstance(
        create_backbone("maisi", weights_dir=weights_dir, device="cpu", config=TINY_CONFIG), MaisiBackbone
    )
    with pytest.raises(InputError, match="unknown backbone 'dino'"):
        create_backbone("dino")
