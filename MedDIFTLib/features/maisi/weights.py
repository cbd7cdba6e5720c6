"""MAISI v1 weights as users get them: where they live, how they verify, how they load
(downloading is :mod:`.download`).

The released files are in NVIDIA's *gated* Hugging Face repository
``nvidia/NV-Generate-CT``: accept the licence there, create an access token,
then ``meddift weights download --token ...`` (or set ``HF_TOKEN``). Offline
machines point ``MEDDIFT_WEIGHTS_DIR`` (or ``--weights-dir``) at a folder
holding the two files, either in the repository's layout (``models/...``) or
side by side.

Loading accepts what NVIDIA's own inference code accepts, and says so: an
autoencoder state dict wrapped under ``unet_state_dict`` (or ``state_dict``,
``model``), a ``module.`` prefix, and a UNet file whose keys differ outside the
feature path (loaded without strict matching, every difference listed in a
:class:`~.checkpoint.LoadReport`). Anything the features depend on must match,
or the load is refused with the list. Each failure says what is wrong and
what to do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...data import digest
from ...errors import WeightsError
from ...runtime import user_cache_dir
from .checkpoint import (
    UNET_PREFIXES,
    VAE_PREFIXES,
    WRAPPER_KEYS,
    LoadReport,
    first_line,
    looks_like,
    plan_load,
    read_checkpoint,
    tensor_entries,
    unet_required,
)
from .networks import MaisiConfig, build_autoencoder, build_unet

# the release's names, also read from here by the CLI and the downloader
from .release import AUTOENCODER_FILE, FILES, HF_REPO_ID, HOW_TO_GET, OFFLINE_HINT, REPO_URL, UNET_FILE  # noqa: F401

log = logging.getLogger(__name__)


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


def file_sha256(path, memo: dict | None = None) -> str:
    """SHA-256 of a file. With ``memo`` (a dict the caller owns, such as a session's), remembered per
    (path, size, mtime), so a 700 MB file is hashed once for as long as the owner lives."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if memo is not None and key in memo:
        return memo[key]
    sha = digest.file_sha256(p)
    if memo is not None:
        memo[key] = sha
    return sha


# Digests of the released files, from public Git LFS pointers of NV-Generate-CT copies. A file that
# differs is reported, never refused (a re-export can be equally good); one not listed is "unknown".
KNOWN_RELEASES = {
    Path(UNET_FILE).name: {
        "size": 685_298_858,
        "sha256": "b32be13118f9d6a077d42dd250c09c5e41673b48dbf2f35f2c587a7a9ebe5686",
    },
}


def known_digest(name: str, size: int, sha256: str) -> str:
    """Whether a file is byte for byte the released one: ``match``, ``differs`` or ``unknown``."""
    known = KNOWN_RELEASES.get(name)
    if known is None:
        return "unknown"
    return "match" if (size, sha256) == (known["size"], known["sha256"]) else "differs"


def weights_identity(paths: WeightsPaths, memo: dict | None = None, cfg: MaisiConfig | None = None) -> dict:
    """File names, sizes and digests: what makes features from these weights reproducible (feature cache key).

    A load other than a clean strict one (unwrapped, prefix removed, keys tolerated) adds its
    report under ``load``, so that cached features say which load they came from; a clean load adds
    nothing, so that features cached before reports existed stay valid. Without ``cfg`` (MAISI v1)
    the files are inspected against the released configuration.
    """
    ident = {
        "files": {
            Path(p).name: {"size": Path(p).stat().st_size, "sha256": file_sha256(p, memo)}
            for p in (paths.autoencoder, paths.unet)
        }
    }
    unclean = {r.file: r.to_dict() for r in inspect_weights(paths, cfg, memo).values() if not r.clean}
    if unclean:
        ident["load"] = unclean
    return ident


# --- loading ---------------------------------------------------------------------


def _meta_shapes(build, cfg: MaisiConfig) -> tuple[dict, set]:
    """Key shapes and parameter names of a network built on the meta device (no memory, no weights)."""
    with torch.device("meta"):
        net = build(cfg, "cpu")
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}, {k for k, _ in net.named_parameters()}


def _check_other_checkpoint(ckpt, path: Path, expected: str) -> None:
    """Recognise the other MAISI files (swapped, ControlNet) so the message names them."""
    if not isinstance(ckpt, dict):
        return
    if "controlnet_state_dict" in ckpt:
        raise WeightsError(f"{path}: this is a MAISI ControlNet checkpoint, given where the {expected} is expected")
    if expected.startswith("autoencoder") and ("unet_state_dict" in ckpt or looks_like(ckpt, UNET_PREFIXES)):
        raise WeightsError(
            f"{path}: this is a diffusion UNet checkpoint, given where the {expected} is expected "
            "(are the two files swapped?)"
        )
    if expected.startswith("diffusion UNet") and "unet_state_dict" not in ckpt and looks_like(ckpt, VAE_PREFIXES):
        raise WeightsError(
            f"{path}: this is an autoencoder checkpoint, given where the {expected} is expected "
            "(are the two files swapped?)"
        )


def _autoencoder_plan(path: Path, cfg: MaisiConfig, ckpt) -> tuple[dict, LoadReport]:
    """The autoencoder's state dict (unwrapped where NVIDIA's code unwraps it) and its report.

    Keys must match strictly: the encoder is entirely in the feature path.
    """
    report = LoadReport(path.name, "autoencoder")
    if isinstance(ckpt, dict) and not looks_like(ckpt, VAE_PREFIXES):
        for key in WRAPPER_KEYS:
            inner = ckpt.get(key)
            if looks_like(inner, VAE_PREFIXES) and not looks_like(inner, UNET_PREFIXES):
                report.ignored += sorted(str(k) for k in ckpt if k != key)  # epoch, optimiser, ...
                ckpt, report.unwrapped = inner, key
                break
    _check_other_checkpoint(ckpt, path, f"autoencoder ({Path(AUTOENCODER_FILE).name})")
    sd = tensor_entries(ckpt, path, "autoencoder", report)
    shapes, _ = _meta_shapes(build_autoencoder, cfg)
    return plan_load(sd, shapes, lambda k: True, path, "autoencoder", cfg.name, report, tolerant=False), report


def _unet_plan(path: Path, cfg: MaisiConfig, ckpt) -> tuple[dict, float, LoadReport]:
    """The UNet's state dict to load, the latent scale factor, and the report."""
    if not isinstance(ckpt, dict):
        raise WeightsError(
            f"{path}: not a MAISI diffusion checkpoint (expected a dict with unet_state_dict and "
            f"scale_factor, found {type(ckpt).__name__})"
        )
    _check_other_checkpoint(ckpt, path, f"diffusion UNet ({Path(UNET_FILE).name})")
    if "unet_state_dict" not in ckpt:
        raise WeightsError(
            f"{path}: no 'unet_state_dict' in the checkpoint (keys: {sorted(map(str, ckpt))[:5]}); "
            f"expected the MAISI v1 file {Path(UNET_FILE).name}"
        )
    if "scale_factor" not in ckpt:
        raise WeightsError(
            f"{path}: no 'scale_factor' in the checkpoint; the released {Path(UNET_FILE).name} "
            "carries the latent scale, so this file is not it"
        )
    sf = ckpt["scale_factor"]
    try:
        scale = float(torch.as_tensor(sf).reshape(()).item())
    except (TypeError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path}: scale_factor is not a single number ({sf!r:.80})") from exc
    if not 0 < scale < 100:  # also refuses NaN
        raise WeightsError(f"{path}: implausible scale_factor {scale}")
    report = LoadReport(path.name, "UNet")
    report.ignored += sorted(str(k) for k in ckpt if k not in ("unet_state_dict", "scale_factor"))
    sd = tensor_entries(ckpt["unet_state_dict"], path, "UNet", report)
    shapes, params = _meta_shapes(build_unet, cfg)
    if any(k.startswith("class_embedding.") for k in sd if k not in shapes) or any(
        k.startswith(("top_region_index_layer.", "bottom_region_index_layer.")) for k in shapes if k not in sd
    ):
        raise WeightsError(
            f"{path}: this looks like a MAISI v2 (rectified-flow) UNet checkpoint (it has a class "
            "embedding and no body-region layers); MedDIFT needs the MAISI v1 DDPM file "
            f"{Path(UNET_FILE).name}; {HOW_TO_GET}"
        )
    sd = plan_load(sd, shapes, unet_required(params), path, "UNet", cfg.name, report, tolerant=True)
    return sd, scale, report


def _into(net: torch.nn.Module, sd: dict, report: LoadReport, device) -> torch.nn.Module:
    result = net.load_state_dict(sd, strict=report.strict)
    if not report.strict:  # the plan and torch agree, or the plan was wrong: never load silently otherwise
        assert sorted(result.missing_keys) == sorted(report.missing + [m[0] for m in report.mismatched]), result
        assert not result.unexpected_keys, result
    return net.eval().requires_grad_(False).to(device)


def load_autoencoder_reported(path, cfg: MaisiConfig, device="cpu") -> tuple[torch.nn.Module, LoadReport]:
    """``AutoencoderKlMaisi`` with the file's weights (frozen, eval mode) and how they loaded."""
    path = Path(path)
    sd, report = _autoencoder_plan(path, cfg, read_checkpoint(path))
    return _into(build_autoencoder(cfg, device), sd, report, device), report


def load_unet_reported(path, cfg: MaisiConfig, device="cpu") -> tuple[torch.nn.Module, float, LoadReport]:
    """``DiffusionModelUNetMaisi`` (frozen, eval mode), the latent ``scale_factor``, and how it loaded."""
    path = Path(path)
    sd, scale, report = _unet_plan(path, cfg, read_checkpoint(path))
    return _into(build_unet(cfg, device), sd, report, device), scale, report


def load_autoencoder(path, cfg: MaisiConfig, device="cpu") -> torch.nn.Module:
    """``AutoencoderKlMaisi`` with the released weights, frozen, in eval mode."""
    return load_autoencoder_reported(path, cfg, device)[0]


def load_unet(path, cfg: MaisiConfig, device="cpu") -> tuple[torch.nn.Module, float]:
    """``DiffusionModelUNetMaisi`` (frozen, eval mode) and the checkpoint's latent ``scale_factor``."""
    unet, scale, _ = load_unet_reported(path, cfg, device)
    return unet, scale


def inspect_weights(
    paths: WeightsPaths, cfg: MaisiConfig | None = None, memo: dict | None = None
) -> dict[str, LoadReport]:
    """How each file would load (its :class:`LoadReport`), without building the real networks;
    a WeightsError when one would be refused. Remembered in ``memo`` per file version and config."""
    cfg = cfg or MaisiConfig.v1()
    out = {}
    for key, path in (("autoencoder", Path(paths.autoencoder)), ("unet", Path(paths.unet))):
        st = path.stat()
        mkey = ("load-report", str(path.resolve()), st.st_size, st.st_mtime_ns, repr(cfg), key)
        if memo is not None and mkey in memo:
            out[key] = memo[mkey]
            continue
        ckpt = read_checkpoint(path)
        out[key] = _autoencoder_plan(path, cfg, ckpt)[1] if key == "autoencoder" else _unet_plan(path, cfg, ckpt)[2]
        del ckpt
        if memo is not None:
            memo[mkey] = out[key]
    return out


def verify_weights(paths: WeightsPaths, cfg: MaisiConfig | None = None) -> dict:
    """Per file: path, size, sha256, whether that digest is the released file's (``known``), whether
    it loads into ``cfg``'s network (and why not), how it loaded (``load``, a LoadReport as a dict),
    and the UNet's scale factor."""
    cfg = cfg or MaisiConfig.v1()
    report = {}
    for key, path, loader in (
        ("autoencoder", paths.autoencoder, load_autoencoder_reported),
        ("unet", paths.unet, load_unet_reported),
    ):
        path = Path(path)
        entry: dict[str, Any] = {
            "path": str(path),
            "size": path.stat().st_size,
            "sha256": file_sha256(path),
            "config": cfg.name,
            "ok": False,
            "error": None,
            "load": None,
        }
        entry["known"] = known_digest(path.name, entry["size"], entry["sha256"])
        try:
            out = loader(path, cfg)
            entry["ok"] = True
            entry["load"] = out[-1].to_dict()
            if key == "unet":
                entry["scale_factor"] = out[1]
            del out
        except WeightsError as err:
            entry["error"] = str(err)
        except Exception as err:  # e.g. out of memory while building the networks
            entry["error"] = f"{path}: {type(err).__name__}: {first_line(err)}"
        report[key] = entry
    return report
