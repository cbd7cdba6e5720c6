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
import importlib
import os
import pickle
import re
import threading
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
FILES = {"autoencoder": AUTOENCODER_FILE, "unet": UNET_FILE}
HOW_TO_GET = (f"get them with `meddift weights download --token YOUR_HF_TOKEN` (the repository {REPO_URL} is gated: "
              "log in there and accept its licence first), or point MEDDIFT_WEIGHTS_DIR / --weights-dir at a folder "
              f"that holds {Path(AUTOENCODER_FILE).name} and {Path(UNET_FILE).name}")
OFFLINE_HINT = ("on a machine without internet, copy the two files from one that has it into a folder and set "
                "MEDDIFT_WEIGHTS_DIR or pass --weights-dir")


def default_weights_dir() -> Path:
    """``$MEDDIFT_WEIGHTS_DIR``, else the per-user cache (``~/.cache/meddift/weights``, Windows: LOCALAPPDATA)."""
    env = os.environ.get("MEDDIFT_WEIGHTS_DIR")
    if env:
        return Path(env).expanduser()
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "meddift" / "weights"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "meddift" / "weights"


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

_SHA_CACHE: dict = {}
_SHA_CACHE_MAX = 64
_SHA_LOCK = threading.Lock()


def file_sha256(path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) so a 700 MB file is hashed once per process."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    with _SHA_LOCK:
        if key in _SHA_CACHE:
            return _SHA_CACHE[key]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    with _SHA_LOCK:
        if len(_SHA_CACHE) >= _SHA_CACHE_MAX:
            _SHA_CACHE.pop(next(iter(_SHA_CACHE)))
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def weights_identity(paths: WeightsPaths) -> dict:
    """File names, sizes and digests: what makes features from these weights reproducible (feature cache key)."""
    return {"files": {Path(p).name: {"size": Path(p).stat().st_size, "sha256": file_sha256(p)}
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
            raise _damaged(path, f"{type(exc).__name__}: {_first_line(exc)}") from exc
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
            raise _damaged(path, f"{type(exc2).__name__}: {_first_line(exc2)}") from exc2
        except Exception as exc2:
            raise _damaged(path, f"{type(exc2).__name__}: {_first_line(exc2)}") from exc2
    except Exception as exc:  # zip errors of a truncated file, EOF, ...
        raise _damaged(path, f"{type(exc).__name__}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException, limit: int = 160) -> str:
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
            entry["error"] = f"{path}: {type(err).__name__}: {_first_line(err)}"
        report[key] = entry
    return report


# --- downloading -------------------------------------------------------------------


def _hub_error_classes() -> dict:
    """huggingface_hub's exception classes by name (names differ across versions; absent ones match nothing)."""
    from huggingface_hub import utils as hfu

    names = ("GatedRepoError", "RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError",
             "LocalEntryNotFoundError", "OfflineModeIsEnabled", "HfHubHTTPError", "DisabledRepoError")
    classes = {n: getattr(hfu, n, None) for n in names}
    try:
        from huggingface_hub import errors as hfe

        for n in names:
            classes[n] = classes[n] or getattr(hfe, n, None)
    except ImportError:  # pragma: no cover - old huggingface_hub
        pass
    return {n: c or type(f"_Absent{n}", (Exception,), {}) for n, c in classes.items()}


def _network_error_classes() -> tuple:
    """Transport errors of whichever HTTP client huggingface_hub uses (httpx2, httpx or requests)."""
    out = []
    for mod, attr in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                      ("requests.exceptions", "ConnectionError"), ("requests.exceptions", "Timeout")):
        try:
            out.append(getattr(importlib.import_module(mod), attr))
        except (ImportError, AttributeError):
            pass
    return tuple(out)


def _silent_tqdm():
    """huggingface_hub's tqdm, always disabled: ``progress=False`` without touching global settings."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class SilentTqdm(hf_tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return SilentTqdm


def _explain_download_error(exc: BaseException, filename: str, endpoint: Optional[str]) -> WeightsError:
    """One plain sentence per way a Hub download fails, saying what to do."""
    from huggingface_hub import constants

    E = _hub_error_classes()
    host = endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    server_says = getattr(getattr(exc, "response", None), "headers", {}).get("X-Error-Message", "") if status else ""
    if isinstance(exc, E["GatedRepoError"]):
        if status == 403:
            return WeightsError(
                f"access to {REPO_URL} was refused: the token was accepted, but its account has not been granted "
                f"access to this gated repository. Open {REPO_URL} logged in as that user, accept the licence, wait "
                "until access is granted, then run the download again")
        return WeightsError(
            f"access to {REPO_URL} was refused: the repository is gated and no token was sent. Log in on Hugging "
            "Face, accept the MAISI licence on the repository page, create an access token (Settings > Access "
            "Tokens, 'read'), then pass it with --token or set HF_TOKEN")
    if isinstance(exc, E["HfHubHTTPError"]) and status == 401 and not isinstance(exc, E["RepositoryNotFoundError"]):
        return WeightsError(f"the Hugging Face token was rejected ({server_says or '401 Unauthorized'}): it is "
                            "invalid, expired or revoked. Create a new 'read' token at "
                            "https://huggingface.co/settings/tokens and pass it with --token or set HF_TOKEN")
    if isinstance(exc, E["HfHubHTTPError"]) and status == 403 and not isinstance(exc, E["RepositoryNotFoundError"]):
        return WeightsError(f"the Hugging Face token may not read {REPO_URL} ({server_says or '403 Forbidden'}); a "
                            "fine-grained token needs 'read access to contents of all public gated repos', or use a "
                            "'read' token")
    if isinstance(exc, E["RevisionNotFoundError"]):
        return WeightsError(f"the requested revision of {HF_REPO_ID} was not found at {host}")
    if isinstance(exc, E["RepositoryNotFoundError"]) or isinstance(exc, E["DisabledRepoError"]):
        return WeightsError(f"repository {HF_REPO_ID} not found at {host} (or not visible with this token); check "
                            "the token, and the endpoint if HF_ENDPOINT is set")
    if isinstance(exc, E["EntryNotFoundError"]) and not isinstance(exc, E["LocalEntryNotFoundError"]):
        return WeightsError(f"{filename} not found in {HF_REPO_ID} at {host}; the repository's layout may have "
                            f"changed: download {Path(filename).name} by hand and set MEDDIFT_WEIGHTS_DIR")
    if isinstance(exc, E["OfflineModeIsEnabled"]) or getattr(constants, "HF_HUB_OFFLINE", False):
        return WeightsError(f"cannot download {filename}: huggingface_hub is in offline mode (HF_HUB_OFFLINE is "
                            f"set), so there is no connection to {host}. Unset it to download, or {OFFLINE_HINT}")
    if isinstance(exc, E["LocalEntryNotFoundError"]) or isinstance(exc, _network_error_classes()):
        cause = exc if isinstance(exc, _network_error_classes()) else (exc.__cause__ or exc.__context__ or exc)
        return WeightsError(f"cannot download {filename}: the connection to {host} failed or was lost "
                            f"({type(cause).__name__}: {_first_line(cause)}). Check the network or proxy and run "
                            f"the download again, or {OFFLINE_HINT}")
    if isinstance(exc, E["HfHubHTTPError"]):
        return WeightsError(f"download of {filename} from {host} failed: {_first_line(exc)}")
    return WeightsError(f"download of {filename} failed: {type(exc).__name__}: {_first_line(exc)}")


def download_weights(dest=None, token: Optional[str] = None, endpoint: Optional[str] = None,
                     progress: bool = True, verify: bool = True, cfg: Optional[MaisiConfig] = None,
                     force: bool = False) -> WeightsPaths:
    """Fetch both files from the gated repository into ``dest`` (repository layout), then verify them.

    ``token=None`` lets huggingface_hub use ``HF_TOKEN`` or a saved login. It downloads to a
    uniquely named ``.incomplete`` file and renames it only when complete (a failed download
    deletes it), so an interrupted download never leaves a half file at the final path; files
    already present and up to date are not downloaded again unless ``force``.
    """
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise WeightsError("huggingface_hub is not installed: pip install huggingface_hub") from exc
    dest = Path(dest).expanduser() if dest else default_weights_dir()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"cannot create the weights folder {dest}: {exc}") from exc
    import inspect

    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    kwargs, toggle = {}, False
    if not progress:
        if "tqdm_class" in inspect.signature(hf_hub_download).parameters:
            kwargs["tqdm_class"] = _silent_tqdm()
        else:  # older huggingface_hub: switch its bars off for these calls only
            toggle = not are_progress_bars_disabled()
    try:
        if toggle:
            disable_progress_bars()
        for filename in (AUTOENCODER_FILE, UNET_FILE):
            try:
                hf_hub_download(HF_REPO_ID, filename, local_dir=dest, token=token or None, endpoint=endpoint,
                                force_download=force, **kwargs)
            except Exception as exc:
                raise _explain_download_error(exc, filename, endpoint) from exc
    finally:
        if toggle:
            enable_progress_bars()
    paths = find_weights(dest)
    if verify:
        rep = verify_weights(paths, cfg)
        bad = [v["error"] for v in rep.values() if not v["ok"]]
        if bad:
            raise WeightsError("the downloaded files do not verify: " + " | ".join(bad))
    return paths
