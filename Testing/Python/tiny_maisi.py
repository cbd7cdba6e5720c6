"""Tiny MAISI v1 checkpoints in exactly the released files' format.

Same MONAI classes and the same state-dict keys as the released
``autoencoder_v1.pt`` (a plain state dict) and ``diff_unet_3d_ddpm-ct.pt``
(``{"unet_state_dict": ..., "scale_factor": tensor}``), with fewer channels so
the tests run in seconds. Their weights are random: they test loading and
plumbing, never accuracy.
"""

from __future__ import annotations

from pathlib import Path

import torch

from MedDIFTLib.features.maisi.networks import (
    MaisiConfig,
    build_autoencoder,
    build_unet,
)

TINY_CONFIG = MaisiConfig.v1(
    vae_num_channels=(8, 16, 32),
    vae_norm_num_groups=8,
    unet_num_channels=(8, 16, 32, 64),
    unet_num_head_channels=(0, 0, 8, 8),
    unet_norm_num_groups=8,
    name="maisi-v1-ddpm-tiny-test",
)

AUTOENCODER_FILE = "models/autoencoder_v1.pt"
UNET_FILE = "models/diff_unet_3d_ddpm-ct.pt"


def write_tiny_checkpoints(folder, seed: int = 0, scale_factor: float = 1.25, cfg: MaisiConfig = TINY_CONFIG):
    """Write both files under ``folder/models/`` as the Hugging Face repository lays them out."""
    folder = Path(folder)
    (folder / "models").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vae = build_autoencoder(cfg)
    unet = build_unet(cfg)
    # MONAI zero-initialises some output layers; perturb every weight so the
    # networks are not near-linear and loading mistakes would show.
    with torch.no_grad():
        for p in list(vae.parameters()) + list(unet.parameters()):
            p.add_(0.05 * torch.randn_like(p))
    torch.save(vae.state_dict(), folder / AUTOENCODER_FILE)
    torch.save({"unet_state_dict": unet.state_dict(), "scale_factor": torch.tensor(scale_factor)}, folder / UNET_FILE)
    return folder / AUTOENCODER_FILE, folder / UNET_FILE
