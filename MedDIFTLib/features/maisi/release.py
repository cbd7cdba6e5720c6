"""Where the MAISI v1 weights are released and how a user gets them: names and words only (no torch), so
that the checkpoint reader and the weight loader both say the same thing without importing each other."""

from __future__ import annotations

from pathlib import Path

from ...errors import opt

HF_REPO_ID = "nvidia/NV-Generate-CT"
AUTOENCODER_FILE = "models/autoencoder_v1.pt"
UNET_FILE = "models/diff_unet_3d_ddpm-ct.pt"
REPO_URL = f"https://huggingface.co/{HF_REPO_ID}"
FILES = {"autoencoder": AUTOENCODER_FILE, "unet": UNET_FILE}
HOW_TO_GET = (
    f"get them with `meddift weights download --token YOUR_HF_TOKEN` (the repository {REPO_URL} is gated: "
    "log in there and accept its licence first), or point MEDDIFT_WEIGHTS_DIR or "
    + opt("weights_dir")
    + " at a folder "
    f"that holds {Path(AUTOENCODER_FILE).name} and {Path(UNET_FILE).name}"
)
OFFLINE_HINT = (
    "on a machine without internet, copy the two files from one that has it into a folder and set "
    "MEDDIFT_WEIGHTS_DIR or use " + opt("weights_dir")
)

__all__ = ["HF_REPO_ID", "AUTOENCODER_FILE", "UNET_FILE", "REPO_URL", "FILES", "HOW_TO_GET", "OFFLINE_HINT"]
