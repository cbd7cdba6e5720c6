"""Checkpoint variants the released MAISI files might be, loaded as NVIDIA's inference code accepts them.

Each variant is made here from a tiny checkpoint in the released format (tiny_maisi.py: real MONAI
networks, random weights) and must either load, with an exact report that the CLI, the worker and
the backbone identity carry, or be refused with the keys named. Nothing here is pretrained.
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import replace

import numpy as np
import pytest
import torch

from MedDIFTLib.cli import main as cli_main
from MedDIFTLib.data.geometry import Volume
from MedDIFTLib.errors import WeightsError
from MedDIFTLib.features.maisi import networks, weights
from MedDIFTLib.features.maisi.backbone import MaisiBackbone
from MedDIFTLib.features.maisi.networks import MaisiConfig
from tiny_maisi import AUTOENCODER_FILE, TINY_CONFIG, UNET_FILE, write_tiny_checkpoints


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_variants")
    write_tiny_checkpoints(folder, seed=4, scale_factor=0.5)
    return folder


@pytest.fixture
def as_released(monkeypatch):
    """The tiny configuration wherever MedDIFT builds 'MAISI v1' (the CLI and the worker build no other)."""
    monkeypatch.setattr(MaisiConfig, "v1", classmethod(lambda cls, **kw: replace(TINY_CONFIG, **kw)))


def _ckpts(tiny):
    vae = torch.load(tiny / AUTOENCODER_FILE, weights_only=True)
    unet = torch.load(tiny / UNET_FILE, weights_only=True)
    return vae, unet


def _variant(tmp_path, tiny, vae=None, unet=None):
    """A weights folder holding the tiny files, with one of them replaced by a variant."""
    folder = tmp_path / "variant"
    (folder / "models").mkdir(parents=True)
    base_vae, base_unet = _ckpts(tiny)
    torch.save(base_vae if vae is None else vae, folder / AUTOENCODER_FILE)
    torch.save(base_unet if unet is None else unet, folder / UNET_FILE)
    return folder


def _same_weights(net, sd):
    own = net.state_dict()
    return all(torch.equal(own[k], v) for k, v in sd.items() if k in own)


@pytest.mark.parametrize("wrapper", ["unet_state_dict", "state_dict", "model"])
def test_wrapped_autoencoder_is_unwrapped_and_reported(tiny, tmp_path, wrapper):
    vae_sd, _ = _ckpts(tiny)
    folder = _variant(tmp_path, tiny, vae={wrapper: vae_sd, "epoch": 12})
    vae, rep = weights.load_autoencoder_reported(folder / AUTOENCODER_FILE, TINY_CONFIG)
    assert _same_weights(vae, vae_sd) and set(vae.state_dict()) == set(vae_sd)
    assert rep.strict and rep.unwrapped == wrapper and rep.ignored == ["epoch"] and not rep.clean
    ident = weights.weights_identity(weights.find_weights(folder), cfg=TINY_CONFIG)
    assert ident["load"]["autoencoder_v1.pt"]["unwrapped"] == wrapper and "diff_unet_3d_ddpm-ct.pt" not in ident["load"]


def test_a_real_unet_under_the_wrapper_is_still_called_swapped(tiny, tmp_path):
    folder = _variant(tmp_path, tiny, vae=_ckpts(tiny)[1])
    with pytest.raises(WeightsError, match=r"diffusion UNet checkpoint, given where the autoencoder .* swapped"):
        weights.load_autoencoder(folder / AUTOENCODER_FILE, TINY_CONFIG)


def test_unet_with_extra_keys_numpy_scalars_and_optimiser_state_loads_and_lists_them(tiny, tmp_path):
    _, ckpt = _ckpts(tiny)
    sd = dict(ckpt["unet_state_dict"], **{"ema.decay": torch.tensor(0.999), "extra_head.weight": torch.ones(3)})
    optim = {
        "state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.zeros(4)}},
        "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0]}],
    }
    folder = _variant(
        tmp_path,
        tiny,
        unet={
            "unet_state_dict": sd,
            "scale_factor": ckpt["scale_factor"],
            "epoch": np.int64(250),
            "loss": np.float32(0.01),
            "optimizer": optim,
            "args": argparse.Namespace(lr=1e-4),
        },
    )
    unet, scale, rep = weights.load_unet_reported(folder / UNET_FILE, TINY_CONFIG)
    assert scale == 0.5 and _same_weights(unet, ckpt["unet_state_dict"])
    assert not rep.strict and rep.missing == [] and rep.unexpected == ["ema.decay", "extra_head.weight"]
    assert rep.ignored == ["args", "epoch", "loss", "optimizer"]
    assert "2 unexpected key(s) ignored [ema.decay, extra_head.weight]" in rep.summary()
    load = weights.weights_identity(weights.find_weights(folder), cfg=TINY_CONFIG)["load"]
    assert load == {"diff_unet_3d_ddpm-ct.pt": rep.to_dict()}


def test_missing_output_head_and_buffer_are_harmless(tiny, tmp_path, monkeypatch):
    """The output head runs after the last up-block (never in the features); a buffer a newer MONAI
    might add keeps the value it is built with. Both load, listed as missing."""
    real_build = networks.build_unet

    def build_with_buffer(cfg, device="cpu"):  # stands for a MONAI version that registers a constant
        net = real_build(cfg, device)
        net.up_blocks[0].register_buffer("position_scale", torch.ones(2))
        return net

    monkeypatch.setattr(weights, "build_unet", build_with_buffer)
    _, ckpt = _ckpts(tiny)
    sd = {k: v for k, v in ckpt["unet_state_dict"].items() if not k.startswith("out.")}
    folder = _variant(tmp_path, tiny, unet=dict(ckpt, unet_state_dict=sd))
    unet, _, rep = weights.load_unet_reported(folder / UNET_FILE, TINY_CONFIG)
    out_keys = sorted(k for k in ckpt["unet_state_dict"] if k.startswith("out."))
    assert len(out_keys) == 4 and sorted(rep.missing) == sorted(out_keys + ["up_blocks.0.position_scale"])
    assert rep.unexpected == [] and _same_weights(unet, sd)
    assert torch.equal(unet.up_blocks[0].position_scale, torch.ones(2))


def test_missing_up_block_weight_is_refused_and_named(tiny, tmp_path):
    _, ckpt = _ckpts(tiny)
    gone = "up_blocks.2.resnets.1.conv1.conv.weight"
    sd = {k: v for k, v in ckpt["unet_state_dict"].items() if k != gone}
    folder = _variant(tmp_path, tiny, unet=dict(ckpt, unet_state_dict=sd, extra=torch.zeros(1)))
    with pytest.raises(WeightsError) as err:
        weights.load_unet(folder / UNET_FILE, TINY_CONFIG)
    assert str(err.value) == (
        f"{folder / UNET_FILE}: does not match the maisi-v1-ddpm-tiny-test UNet: 1 tensor(s) "
        f"the features depend on are missing: [{gone}]; 1 missing keys [{gone}], "
        "0 unexpected keys []"
    )
    with pytest.raises(WeightsError, match="the features depend on are missing"):  # the identity refuses too
        weights.weights_identity(weights.find_weights(folder), cfg=TINY_CONFIG)


def test_module_prefixed_files_load_with_the_prefix_removed(tiny, tmp_path):
    vae_sd, ckpt = _ckpts(tiny)
    folder = _variant(
        tmp_path,
        tiny,
        vae={f"module.{k}": v for k, v in vae_sd.items()},
        unet=dict(ckpt, unet_state_dict={f"module.{k}": v for k, v in ckpt["unet_state_dict"].items()}),
    )
    vae, vrep = weights.load_autoencoder_reported(folder / AUTOENCODER_FILE, TINY_CONFIG)
    unet, _, urep = weights.load_unet_reported(folder / UNET_FILE, TINY_CONFIG)
    assert _same_weights(vae, vae_sd) and _same_weights(unet, ckpt["unet_state_dict"])
    assert vrep.prefix == urep.prefix == "module." and vrep.strict and urep.strict
    load = weights.weights_identity(weights.find_weights(folder), cfg=TINY_CONFIG)["load"]
    assert set(load) == {"autoencoder_v1.pt", "diff_unet_3d_ddpm-ct.pt"}


def test_clean_files_add_no_load_entry_to_the_identity(tiny):
    assert "load" not in weights.weights_identity(weights.find_weights(tiny), cfg=TINY_CONFIG)


def test_a_tolerated_file_gives_the_same_features_under_another_identity(tiny, tmp_path):
    vae_sd, ckpt = _ckpts(tiny)
    folder = _variant(
        tmp_path,
        tiny,
        vae={"unet_state_dict": vae_sd},
        unet=dict(ckpt, unet_state_dict=dict(ckpt["unet_state_dict"], extra=torch.ones(1))),
    )
    arr = np.random.default_rng(0).normal(-500, 200, (40, 40, 40)).astype(np.float32)
    vol = Volume(arr, np.diag([2.0, 2.0, 2.0, 1.0]), "ct")
    a = MaisiBackbone(weights_dir=tiny, device="cpu", config=TINY_CONFIG, levels=("up1",))
    b = MaisiBackbone(weights_dir=folder, device="cpu", config=TINY_CONFIG, levels=("up1",))
    pa, pb = a.extract(vol), b.extract(vol)
    assert torch.equal(pa.levels[0].features, pb.levels[0].features)
    assert "load" not in pa.identity["weights"] and set(pb.identity["weights"]["load"]) == {
        "autoencoder_v1.pt",
        "diff_unet_3d_ddpm-ct.pt",
    }
    assert not a.notices and len(b.notices) == 2 and "unwrapped from 'unet_state_dict'" in b.notices[0]


def test_known_digest_of_the_released_unet():
    name = "diff_unet_3d_ddpm-ct.pt"
    sha = "b32be13118f9d6a077d42dd250c09c5e41673b48dbf2f35f2c587a7a9ebe5686"
    assert weights.known_digest(name, 685_298_858, sha) == "match"
    assert weights.known_digest(name, 685_298_858, "0" * 64) == "differs"
    assert weights.known_digest("autoencoder_v1.pt", 1, "0" * 64) == "unknown"


def test_cli_info_reports_each_difference_in_full(tiny, tmp_path, capsys, as_released):
    vae_sd, ckpt = _ckpts(tiny)
    sd = {k: v for k, v in ckpt["unet_state_dict"].items() if k != "out.2.conv.bias"}
    folder = _variant(
        tmp_path,
        tiny,
        vae={"state_dict": vae_sd},
        unet=dict(ckpt, unet_state_dict=dict(sd, stray=torch.ones(1)), epoch=3),
    )
    assert cli_main(["weights", "info", "--weights-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    sha = hashlib.sha256((folder / UNET_FILE).read_bytes()).hexdigest()
    assert f"  size {(folder / UNET_FILE).stat().st_size:,} bytes, sha256 {sha}" in out
    assert "  digest: differs from the released diff_unet_3d_ddpm-ct.pt (685,298,858 bytes, sha256 b32be1" in out
    assert "  digest: no published digest is known for this file" in out  # the autoencoder
    assert "verifies against the maisi-v1-ddpm-tiny-test configuration (loaded strictly)" in out
    assert "    state dict found under 'state_dict' (unwrapped, as NVIDIA's inference code does)" in out
    assert "(loaded WITHOUT strict key matching), scale_factor 0.5" in out
    assert "    1 key(s) missing from the file, kept as built: out.2.conv.bias" in out
    assert "    1 key(s) unexpected in the file, ignored: stray" in out
    assert "    entries that are not weights, ignored: epoch" in out
    assert out.rstrip().endswith("status: ready, with the load differences listed above (none is used by the features)")
    assert cli_main(["weights", "info", "--weights-dir", str(tiny)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("status: ready")


def test_worker_and_cli_note_say_how_the_weights_loaded(tiny, tmp_path, as_released, monkeypatch):
    from MedDIFTLib.service.worker import Worker

    _, ckpt = _ckpts(tiny)
    folder = _variant(
        tmp_path, tiny, unet=dict(ckpt, unet_state_dict=dict(ckpt["unet_state_dict"], stray=torch.ones(1)))
    )
    monkeypatch.setenv("MEDDIFT_CACHE_DIR", str(tmp_path / "cache"))
    replies = []
    Worker(replies.append).handle(
        {"id": 1, "cmd": "configure", "engine": {"backbone": "auto", "weights_dir": str(folder), "device": "cpu"}}
    )
    assert replies[-1]["ok"], replies[-1]
    note = replies[-1]["result"]["note"]
    assert note.startswith(
        "MAISI v1 diffusion features (MedDIFT) (weights: diff_unet_3d_ddpm-ct.pt: loaded without "
        "strict key matching: 0 missing key(s) kept as built [], 1 unexpected key(s) ignored [stray]"
    )
    broken = {k: v for k, v in ckpt["unet_state_dict"].items() if not k.startswith("middle_block.")}
    folder2 = _variant(tmp_path / "b", tiny, unet=dict(ckpt, unet_state_dict=broken))
    Worker(replies.append).handle(
        {"id": 2, "cmd": "configure", "engine": {"backbone": "maisi", "weights_dir": str(folder2), "device": "cpu"}}
    )
    assert replies[-1]["ok"] and replies[-1]["result"]["note"] == "MAISI v1 diffusion features (MedDIFT)"
