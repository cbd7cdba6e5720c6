"""MAISI v1 weights as users get them: where they live, how they verify, how they load
(downloading is :mod:`.download`).

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
import importlib
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ...errors import WeightsError, opt
from ...runtime import user_cache_dir
from .networks import MaisiConfig, build_autoencoder, build_unet

HF_REPO_ID = "nvidia/NV-Generate-CT"
AUTOENCODER_FILE = "models/autoencoder_v1.pt"
UNET_FILE = "models/diff_unet_3d_ddpm-ct.pt"
REPO_URL = f"https://huggingface.co/{HF_REPO_ID}"
FILES = {"autoencoder": AUTOENCODER_FILE, "unet": UNET_FILE}
HOW_TO_GET = (f"get them with `meddift weights download --token YOUR_HF_TOKEN` (the repository {REPO_URL} is gated: "
              "log in there and accept its licence first), or point MEDDIFT_WEIGHTS_DIR or " + opt("weights_dir") + " at a folder "
              f"that holds {Path(AUTOENCODER_FILE).name} and {Path(UNET_FILE).name}")
OFFLINE_HINT = ("on a machine without internet, copy the two files from one that has it into a folder and set "
                "MEDDIFT_WEIGHTS_DIR or use " + opt("weights_dir"))


def default_weights_dir() -> Path:
    """``$MEDDIFT_WEIGHTS_DIR``, else the per-user cache (``~/.cache/meddift/weights``, Windows: LOCALAPPDATA)."""
    return user_cache_dir("weights", "MEDDIFT_WEIGHTS_DIR")


@dataclass(frozen=True)
class WeightsPaths:
    autoencoder: Path
    unet: Path


def locate_files(weights_dir=None) -> tuple[Path, dict]:
    """The folder searched and, per file, its path or None (repository layout first, then flat)."""
    folder = Path(weights_dir).expanduser() if weights_dir else default_weights_dir()
    found = {}
    for key, rel in FILES.items():
        found[key] = next((c for c in (folder / rel, folder / Path(rel).name) if c.is_file()), None)
    return folder, found


def find_weights(weights_dir=None) -> WeightsPaths:
    """The two files in ``weights_dir`` (default: :func:`default_weights_dir`), or a WeightsError saying how to get them.

    The text before the first ';' is a short reason (the pipeline shows it alone).
    """
    folder, found = locate_files(weights_dir)
    missing = [Path(FILES[k]).name for k, p in found.items() if p is None]
    if missing:
        raise WeightsError(f"MAISI weights not found in {folder} (missing {', '.join(missing)}); {HOW_TO_GET}")
    return WeightsPaths(found["autoencoder"], found["unet"])


# --- hashing ---------------------------------------------------------------------

def file_sha256(path, memo: Optional[dict] = None) -> str:
    """SHA-256 of a file. With ``memo`` (a dict the caller owns, such as a session's), remembered per
    (path, size, mtime), so a 700 MB file is hashed once for as long as the owner lives."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if memo is not None and key in memo:
        return memo[key]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    if memo is not None:
        memo[key] = h.hexdigest()
    return h.hexdigest()


def weights_identity(paths: WeightsPaths, memo: Optional[dict] = None) -> dict:
    """File names, sizes and digests: what makes features from these weights reproducible (feature cache key)."""
    return {"files": {Path(p).name: {"size": Path(p).stat().st_size, "sha256": file_sha256(p, memo)}
                      for p in (paths.autoencoder, paths.unet)}}


# --- reading checkpoints -------------------------------------------------------------

# Globals that a checkpoint may hold besides tensors and containers (a numpy loss or epoch, the
# training arguments). Unpickling them runs no code, so they are allowed; anything else is refused.
_HARMLESS_GLOBALS = {
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.ndarray", "numpy.dtype", "argparse.Namespace",
}


def _is_harmless(name: str) -> bool:
    return name in _HARMLESS_GLOBALS or (name.startswith("numpy.dtypes.") and name.endswith("DType"))


def _resolve(name: str):
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _damaged(path: Path, what: str) -> WeightsError:
    size = path.stat().st_size
    return WeightsError(f"{path}: the file is truncated or corrupt ({size:,} bytes; {what}); delete it and download "
                        "it again with `meddift weights download --force`")


def _refused(path: Path, names: list) -> WeightsError:
    return WeightsError(f"{path}: holds Python objects other than tensors ({', '.join(names[:5])}); MedDIFT does not "
                        "unpickle them because that can run arbitrary code. This is not a released MAISI v1 file: "
                        f"{HOW_TO_GET}")


def _read_checkpoint(path: Path):
    """``torch.load`` with ``weights_only=True``, and a plain sentence for every way it can fail.

    The reference code loads the diffusion file with ``weights_only=False``, which would run any
    code pickled into it. The released files are tensors in dicts, which ``weights_only=True``
    reads (``scale_factor`` is a tensor); should a file also carry a numpy number or the
    training arguments, those few harmless types are allowed explicitly and nothing else is.
    """
    if not path.is_file():
        raise WeightsError(f"{path}: file not found; {HOW_TO_GET}")
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        raise WeightsError(f"{path}: the file is empty (0 bytes); delete it and download it again with "
                           "`meddift weights download --force`")
    if head.startswith(b"version https://git-lfs"):
        raise WeightsError(f"{path}: this is a Git LFS pointer, not the weights (the repository was cloned without "
                           "LFS); run `git lfs pull` in that clone, or use `meddift weights download`")
    if head.lstrip().lower().startswith((b"<!doctype", b"<html", b"{\"error")):
        raise WeightsError(f"{path}: this is a web page or an error message saved in place of the file (a browser "
                           f"download without login?); delete it and use `meddift weights download --token ...`")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise _damaged(path, f"{type(exc).__name__}: {first_line(exc)}") from exc
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # not even a readable archive
            raise _damaged(path, f"{type(exc).__name__}: not a readable PyTorch archive") from exc
        if not names:
            raise _damaged(path, "unreadable pickle data") from exc
        unsafe = [n for n in names if not _is_harmless(n)]
        if unsafe:
            raise _refused(path, unsafe) from exc
        allowed = [_resolve(n) for n in names]
        if any(n.startswith("numpy.") for n in names):  # dtype classes, which the scan does not list
            import numpy.dtypes

            allowed += [getattr(numpy.dtypes, n) for n in dir(numpy.dtypes) if n.endswith("DType")]
        try:
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc2:
            if "Weights only load failed" in str(exc2):
                found = re.search(r"got <class '([^']+)'>", str(exc2))
                raise _refused(path, [found.group(1) if found else "unknown"]) from exc2
            raise _damaged(path, f"{type(exc2).__name__}: {first_line(exc2)}") from exc2
        except Exception as exc2:
            raise _damaged(path, f"{type(exc2).__name__}: {first_line(exc2)}") from exc2
    except Exception as exc:  # zip errors of a truncated file, EOF, ...
        raise _damaged(path, f"{type(exc).__name__}: {first_line(exc)}") from exc


def first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:limit] if text else type(exc).__name__)


# --- loading ---------------------------------------------------------------------


def _state_prefixes(sd: dict, prefixes: tuple) -> bool:
    return any(isinstance(k, str) and k.startswith(prefixes) for k in sd)


_UNET_PREFIXES = ("time_embed.", "up_blocks.", "down_blocks.", "middle_block.")
_VAE_PREFIXES = ("encoder.", "decoder.", "quant_conv_mu.", "quant_conv_log_sigma.")


def _check_other_checkpoint(ckpt, path: Path, expected: str) -> None:
    """Recognise the other MAISI files (swapped, ControlNet) so the message names them."""
    if not isinstance(ckpt, dict):
        return
    if "controlnet_state_dict" in ckpt:
        raise WeightsError(f"{path}: this is a MAISI ControlNet checkpoint, given where the {expected} is expected")
    if expected.startswith("autoencoder") and ("unet_state_dict" in ckpt or _state_prefixes(ckpt, _UNET_PREFIXES)):
        raise WeightsError(f"{path}: this is a diffusion UNet checkpoint, given where the {expected} is expected "
                           "(are the two files swapped?)")
    if expected.startswith("diffusion UNet") and "unet_state_dict" not in ckpt and _state_prefixes(ckpt, _VAE_PREFIXES):
        raise WeightsError(f"{path}: this is an autoencoder checkpoint, given where the {expected} is expected "
                           "(are the two files swapped?)")


def _strict_load(module: torch.nn.Module, sd: dict, path: Path, what: str, cfg: MaisiConfig) -> None:
    """``load_state_dict(strict=True)`` after checks that turn its long messages into one plain sentence."""
    if not isinstance(sd, dict) or not sd or not all(torch.is_tensor(v) for v in sd.values()):
        raise WeightsError(f"{path}: does not hold a {what} state dict (a mapping of names to tensors)")
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if what == "UNet" and (any(k.startswith("class_embedding.") for k in unexpected)
                           or any(k.startswith(("top_region_index_layer.", "bottom_region_index_layer."))
                                  for k in missing)):
        raise WeightsError(f"{path}: this looks like a MAISI v2 (rectified-flow) UNet checkpoint (it has a class "
                           "embedding and no body-region layers); MedDIFT needs the MAISI v1 DDPM file "
                           f"{Path(UNET_FILE).name}; {HOW_TO_GET}")
    if missing or unexpected:
        hint = (" (the names start with 'module.': saved from a DataParallel wrapper)"
                if all(k.startswith("module.") for k in sd) else "")
        raise WeightsError(f"{path}: does not match the {cfg.name} {what}: {len(missing)} missing keys (e.g. "
                           f"{missing[:3]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:3]}){hint}")
    bad = [(k, tuple(sd[k].shape), tuple(v.shape)) for k, v in own.items() if tuple(sd[k].shape) != tuple(v.shape)]
    if bad:
        shown = "; ".join(f"{k}: file {a}, expected {b}" for k, a, b in bad[:3])
        raise WeightsError(f"{path}: tensor shapes do not match the {cfg.name} {what} configuration "
                           f"({len(bad)} of {len(own)} tensors differ: {shown})")
    module.load_state_dict(sd, strict=True)


def load_autoencoder(path, cfg: MaisiConfig, device="cpu") -> torch.nn.Module:
    """``AutoencoderKlMaisi`` with the released weights (a plain state dict file), frozen, in eval mode."""
    path = Path(path)
    sd = _read_checkpoint(path)
    _check_other_checkpoint(sd, path, f"autoencoder ({Path(AUTOENCODER_FILE).name})")
    vae = build_autoencoder(cfg, device)
    _strict_load(vae, sd, path, "autoencoder", cfg)
    return vae.eval().requires_grad_(False).to(device)


def load_unet(path, cfg: MaisiConfig, device="cpu") -> tuple[torch.nn.Module, float]:
    """``DiffusionModelUNetMaisi`` (frozen, eval mode) and the checkpoint's latent ``scale_factor``."""
    path = Path(path)
    ckpt = _read_checkpoint(path)
    if not isinstance(ckpt, dict):
        raise WeightsError(f"{path}: not a MAISI diffusion checkpoint (expected a dict with unet_state_dict and "
                           f"scale_factor, found {type(ckpt).__name__})")
    _check_other_checkpoint(ckpt, path, f"diffusion UNet ({Path(UNET_FILE).name})")
    if "unet_state_dict" not in ckpt:
        raise WeightsError(f"{path}: no 'unet_state_dict' in the checkpoint (keys: {sorted(map(str, ckpt))[:5]}); "
                           f"expected the MAISI v1 file {Path(UNET_FILE).name}")
    if "scale_factor" not in ckpt:
        raise WeightsError(f"{path}: no 'scale_factor' in the checkpoint; the released {Path(UNET_FILE).name} "
                           "carries the latent scale, so this file is not it")
    unet = build_unet(cfg, device)
    _strict_load(unet, ckpt["unet_state_dict"], path, "UNet", cfg)
    sf = ckpt["scale_factor"]
    try:
        scale = float(torch.as_tensor(sf).reshape(()).item())
    except (TypeError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path}: scale_factor is not a single number ({sf!r:.80})") from exc
    if not 0 < scale < 100:  # also refuses NaN
        raise WeightsError(f"{path}: implausible scale_factor {scale}")
    return unet.eval().requires_grad_(False).to(device), scale


def verify_weights(paths: WeightsPaths, cfg: Optional[MaisiConfig] = None) -> dict:
    """Per file: path, size, sha256, whether it loads strictly against ``cfg`` (and why not), the scale factor."""
    cfg = cfg or MaisiConfig.v1()
    report = {}
    for key, path, loader in (("autoencoder", paths.autoencoder, load_autoencoder), ("unet", paths.unet, load_unet)):
        path = Path(path)
        entry = {"path": str(path), "size": path.stat().st_size, "sha256": file_sha256(path),
                 "config": cfg.name, "ok": False, "error": None}
        try:
            out = loader(path, cfg)
            entry["ok"] = True
            if key == "unet":
                entry["scale_factor"] = out[1]
            del out
        except WeightsError as err:
            entry["error"] = str(err)
        except Exception as err:  # e.g. out of memory while building the networks
            entry["error"] = f"{path}: {type(err).__name__}: {first_line(err)}"
        report[key] = entry
    return report
