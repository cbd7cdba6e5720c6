"""MAISI v1 weights as users get them: where they live, how they download, how they load.

The released files are in NVIDIA's *gated* Hugging Face repository
``nvidia/NV-Generate-CT``: accept the licence there, create an access token,
then ``meddift weights download --token ...`` (or set ``HF_TOKEN``). Offline
machines point ``MEDDIFT_WEIGHTS_DIR`` (or ``--weights-dir``) at a folder
holding the two files, either in the repository's layout (``models/...``) or
side by side.

Loading is strict: every key and shape must match the v1 configuration, and
each failure says what is wrong and what to do.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .errors import WeightsError
from .maisi_networks import MaisiConfig, build_autoencoder, build_unet

HF_REPO_ID = "nvidia/NV-Generate-CT"
AUTOENCODER_FILE = "models/autoencoder_v1.pt"
UNET_FILE = "models/diff_unet_3d_ddpm-ct.pt"
REPO_URL = f"https://huggingface.co/{HF_REPO_ID}"
HOW_TO_GET = (f"get them with `meddift weights download --token YOUR_HF_TOKEN` (the repository {REPO_URL} is gated: "
              "accept its licence there first), or point MEDDIFT_WEIGHTS_DIR / --weights-dir at a folder that holds "
              f"{Path(AUTOENCODER_FILE).name} and {Path(UNET_FILE).name}")


def default_weights_dir() -> Path:
    """``$MEDDIFT_WEIGHTS_DIR``, else the per-user cache (``~/.cache/meddift/weights``, Windows: LOCALAPPDATA)."""
    env = os.environ.get("MEDDIFT_WEIGHTS_DIR")
    if env:
        return Path(env)
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "meddift" / "weights"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "meddift" / "weights"


@dataclass(frozen=True)
class WeightsPaths:
    autoencoder: Path
    unet: Path


def find_weights(weights_dir=None) -> WeightsPaths:
    """The two files in ``weights_dir`` (default: :func:`default_weights_dir`), repo or flat layout."""
    folder = Path(weights_dir) if weights_dir else default_weights_dir()
    found = {}
    for key, rel in (("autoencoder", AUTOENCODER_FILE), ("unet", UNET_FILE)):
        for cand in (folder / rel, folder / Path(rel).name):
            if cand.is_file():
                found[key] = cand
                break
    if len(found) < 2:
        missing = [Path(r).name for k, r in (("autoencoder", AUTOENCODER_FILE), ("unet", UNET_FILE)) if k not in found]
        raise WeightsError(f"MAISI weights not found in {folder} (missing {', '.join(missing)}); {HOW_TO_GET}")
    return WeightsPaths(found["autoencoder"], found["unet"])


# --- hashing ---------------------------------------------------------------------

_SHA_CACHE: dict = {}


def file_sha256(path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) so large files are hashed once."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def weights_identity(paths: WeightsPaths) -> dict:
    """File names, sizes and digests: what makes features from these weights reproducible."""
    return {"files": {Path(p).name: {"size": Path(p).stat().st_size, "sha256": file_sha256(p)}
                      for p in (paths.autoencoder, paths.unet)}}


# --- loading ---------------------------------------------------------------------


def _read_checkpoint(path: Path):
    try:
        # weights_only=True: plain tensors and dicts only (the released files are such; the
        # reference code's weights_only=False would also run arbitrary pickled code)
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise WeightsError(f"{path}: file not found; {HOW_TO_GET}") from exc
    except Exception as exc:  # zip/pickle errors, an HTML error page saved as the file, ...
        size = path.stat().st_size if path.exists() else 0
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise WeightsError(f"{path}: the file is truncated or corrupt, or not a PyTorch checkpoint "
                           f"({size / 1e6:.1f} MB; {type(exc).__name__}: {first}); delete it and download it again "
                           "with `meddift weights download`") from exc


def _is_unet_state(sd: dict) -> bool:
    return any(k.startswith(("time_embed.", "up_blocks.", "down_blocks.")) for k in sd)


def _is_vae_state(sd: dict) -> bool:
    return any(k.startswith(("encoder.", "decoder.", "quant_conv_mu")) for k in sd)


def _strict_load(module: torch.nn.Module, sd: dict, path: Path, what: str, cfg: MaisiConfig) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if what == "UNet" and (any("class_embedding" in k for k in unexpected)
                           or any(k.startswith(("top_region_index_layer", "bottom_region_index_layer")) for k in missing)):
        raise WeightsError(f"{path}: this looks like a MAISI v2 (rectified-flow) UNet checkpoint (it has a class "
                           "embedding and no body-region layers); MedDIFT uses the v1 DDPM file "
                           f"{Path(UNET_FILE).name}; {HOW_TO_GET}")
    if missing or unexpected:
        raise WeightsError(f"{path}: does not match the {cfg.name} {what}: {len(missing)} missing keys (e.g. "
                           f"{missing[:3]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
    bad = [(k, tuple(sd[k].shape), tuple(v.shape)) for k, v in own.items() if tuple(sd[k].shape) != tuple(v.shape)]
    if bad:
        shown = "; ".join(f"{k}: file {a}, expected {b}" for k, a, b in bad[:3])
        raise WeightsError(f"{path}: tensor shapes do not match the {cfg.name} {what} ({len(bad)} differ: {shown})")
    module.load_state_dict(sd, strict=True)


def load_autoencoder(path, cfg: MaisiConfig, device="cpu") -> torch.nn.Module:
    """``AutoencoderKlMaisi`` with the released weights (a plain state dict file)."""
    path = Path(path)
    sd = _read_checkpoint(path)
    if not isinstance(sd, dict) or not sd:
        raise WeightsError(f"{path}: not a state dict; expected the MAISI autoencoder file {Path(AUTOENCODER_FILE).name}")
    if "unet_state_dict" in sd or _is_unet_state(sd):
        raise WeightsError(f"{path}: this is a diffusion UNet checkpoint, given where the autoencoder "
                           f"({Path(AUTOENCODER_FILE).name}) is expected")
    vae = build_autoencoder(cfg, device)
    _strict_load(vae, sd, path, "autoencoder", cfg)
    return vae.eval().requires_grad_(False)


def load_unet(path, cfg: MaisiConfig, device="cpu") -> tuple[torch.nn.Module, float]:
    """``DiffusionModelUNetMaisi`` and the checkpoint's latent ``scale_factor``."""
    path = Path(path)
    ckpt = _read_checkpoint(path)
    if not isinstance(ckpt, dict):
        raise WeightsError(f"{path}: not a MAISI diffusion checkpoint (expected a dict with unet_state_dict and scale_factor)")
    if "unet_state_dict" not in ckpt:
        if _is_vae_state(ckpt):
            raise WeightsError(f"{path}: this is an autoencoder checkpoint, given where the diffusion UNet "
                               f"({Path(UNET_FILE).name}) is expected")
        raise WeightsError(f"{path}: no 'unet_state_dict' in the checkpoint; expected {Path(UNET_FILE).name}")
    if "scale_factor" not in ckpt:
        raise WeightsError(f"{path}: no 'scale_factor' in the checkpoint; the latent scale is part of the released file")
    unet = build_unet(cfg, device)
    _strict_load(unet, ckpt["unet_state_dict"], path, "UNet", cfg)
    sf = ckpt["scale_factor"]
    scale = float(sf.item() if torch.is_tensor(sf) else sf)
    if not (scale > 0 and scale < 100):
        raise WeightsError(f"{path}: implausible scale_factor {scale}")
    return unet.eval().requires_grad_(False), scale


def verify_weights(paths: WeightsPaths, cfg: Optional[MaisiConfig] = None) -> dict:
    """Per file: size, sha256, whether it loads strictly (and why not), the scale factor."""
    cfg = cfg or MaisiConfig.v1()
    report = {}
    for key, path, loader in (("autoencoder", paths.autoencoder, load_autoencoder), ("unet", paths.unet, load_unet)):
        entry = {"path": str(path), "size": path.stat().st_size, "sha256": file_sha256(path)}
        try:
            out = loader(path, cfg)
            entry["ok"] = True
            if key == "unet":
                entry["scale_factor"] = out[1]
        except WeightsError as err:
            entry["ok"], entry["error"] = False, str(err)
        report[key] = entry
    return report


# --- downloading -------------------------------------------------------------------


def download_weights(dest=None, token: Optional[str] = None, endpoint: Optional[str] = None,
                     progress: bool = True, verify: bool = True, cfg: Optional[MaisiConfig] = None) -> WeightsPaths:
    """Fetch both files from the gated repository into ``dest`` (repo layout), then verify them.

    huggingface_hub downloads to a temporary ``.incomplete`` file and renames it
    when complete, so an interrupted download never leaves a half file in place.
    """
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            RemoteEntryNotFoundError,
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
        )
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise WeightsError("huggingface_hub is not installed: pip install huggingface_hub") from exc
    dest = Path(dest) if dest else default_weights_dir()
    dest.mkdir(parents=True, exist_ok=True)
    if not progress:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    for filename in (AUTOENCODER_FILE, UNET_FILE):
        try:
            hf_hub_download(HF_REPO_ID, filename, local_dir=dest, token=token, endpoint=endpoint)
        except GatedRepoError as exc:
            raise WeightsError(f"access to {REPO_URL} was refused: the repository is gated. Log in on Hugging Face, "
                               "accept the MAISI licence on the repository page, create an access token and pass it "
                               "with --token (or set HF_TOKEN)" + (" — the token given was not accepted"
                                                                    if token or os.environ.get("HF_TOKEN")
                                                                    else " — no token was given")) from exc
        except (OfflineModeIsEnabled, LocalEntryNotFoundError) as exc:
            raise WeightsError(f"cannot download {filename}: no connection to {endpoint or 'huggingface.co'} "
                               f"(offline). Copy the files to a folder and set MEDDIFT_WEIGHTS_DIR or pass "
                               f"--weights-dir; {HOW_TO_GET}") from exc
        except RepositoryNotFoundError as exc:
            raise WeightsError(f"repository {HF_REPO_ID} not found (or not visible with this token) at "
                               f"{endpoint or 'huggingface.co'}") from exc
        except RemoteEntryNotFoundError as exc:
            raise WeightsError(f"{filename} not found in {HF_REPO_ID}; the repository layout may have changed") from exc
        except HfHubHTTPError as exc:
            raise WeightsError(f"download of {filename} failed: {str(exc).splitlines()[0]}") from exc
        except OSError as exc:  # connection errors, full disk
            raise WeightsError(f"download of {filename} failed: {exc}") from exc
    paths = find_weights(dest)
    if verify:
        rep = verify_weights(paths, cfg)
        bad = [f"{k}: {v['error']}" for k, v in rep.items() if not v["ok"]]
        if bad:
            raise WeightsError("downloaded files do not verify: " + " | ".join(bad))
    return paths
