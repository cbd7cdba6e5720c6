"""Reading MAISI checkpoints safely, and deciding exactly how a state dict loads into a network.

Why a separate module: the released files have never been seen here, and NVIDIA's own inference
code (NV-Generate-CT ``scripts/inference.py``) is more lenient than a strict load in two places:
it unwraps an autoencoder saved as ``{"unet_state_dict": ...}``, and it loads the diffusion UNet
with ``strict=False``. This module reproduces that leniency *with an exact report*: every key that
was missing, unexpected, mismatched, unwrapped or renamed is listed in a :class:`LoadReport`, which
``meddift weights info``, the logs and the backbone identity carry, so that a lenient load is never
silent and cached features say which load they came from.

The decision (:func:`plan_load`) needs only the network's key names and shapes, so it runs against
a network built on the ``meta`` device: the identity of a backbone is known without allocating or
loading the real networks (a feature-cache hit stays cheap).
"""

from __future__ import annotations

import importlib
import pickle
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ...errors import WeightsError
from .release import HOW_TO_GET

# Globals that a checkpoint may hold besides tensors and containers (a numpy loss or epoch, the
# training arguments). Unpickling them runs no code, so they are allowed; anything else is refused.
_HARMLESS_GLOBALS = {
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
    "argparse.Namespace",
}

UNET_PREFIXES = ("time_embed.", "up_blocks.", "down_blocks.", "middle_block.")
VAE_PREFIXES = ("encoder.", "decoder.", "quant_conv_mu.", "quant_conv_log_sigma.")
WRAPPER_KEYS = ("unet_state_dict", "state_dict", "model")  # what NVIDIA's code and common trainers wrap with
DATA_PARALLEL_PREFIX = "module."
# The UNet's output head runs after the last up-block, whose output is the deepest feature we keep:
# the head never reaches the features, so its weights may be missing. Everything else is required.
UNET_NOT_IN_FEATURE_PATH = ("out.",)
SHOWN = 20  # names listed in a refusal before "... and N more"


def first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


# --- reading ---------------------------------------------------------------------------------------


def _is_harmless(name: str) -> bool:
    return name in _HARMLESS_GLOBALS or (name.startswith("numpy.dtypes.") and name.endswith("DType"))


def _resolve(name: str):
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _damaged(path: Path, what: str) -> WeightsError:
    size = path.stat().st_size
    return WeightsError(
        f"{path}: the file is truncated or corrupt ({size:,} bytes; {what}); delete it and download "
        "it again with `meddift weights download --force`"
    )


def _refused(path: Path, names: list) -> WeightsError:
    return WeightsError(
        f"{path}: holds Python objects other than tensors ({', '.join(names[:5])}); MedDIFT does not "
        "unpickle them because that can run arbitrary code. This is not a released MAISI v1 file: "
        f"{HOW_TO_GET}"
    )


def _torch_load(path: Path):
    """``weights_only=True`` always; memory-mapped when the archive allows it (a 700 MB file is then
    not read into memory just to list its keys), plainly otherwise (legacy, non-zip files)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint(path: Path):
    """``torch.load`` with ``weights_only=True``, and a plain sentence for every way it can fail.

    The reference code loads the diffusion file with ``weights_only=False``, which would run any
    code pickled into it. The released files are tensors in dicts, which ``weights_only=True``
    reads (``scale_factor`` is a tensor); should a file also carry a numpy number, an optimiser
    state or the training arguments, those few harmless types are allowed explicitly and nothing
    else is.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: file not found; {HOW_TO_GET}")
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        raise WeightsError(
            f"{path}: the file is empty (0 bytes); delete it and download it again with "
            "`meddift weights download --force`"
        )
    if head.startswith(b"version https://git-lfs"):
        raise WeightsError(
            f"{path}: this is a Git LFS pointer, not the weights (the repository was cloned without "
            "LFS); run `git lfs pull` in that clone, or use `meddift weights download`"
        )
    if head.lstrip().lower().startswith((b"<!doctype", b"<html", b'{"error')):
        raise WeightsError(
            f"{path}: this is a web page or an error message saved in place of the file (a browser "
            f"download without login?); delete it and use `meddift weights download --token ...`"
        )
    try:
        return _torch_load(path)
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
                return _torch_load(path)
        except pickle.UnpicklingError as exc2:
            if "Weights only load failed" in str(exc2):
                found = re.search(r"got <class '([^']+)'>", str(exc2))
                raise _refused(path, [found.group(1) if found else "unknown"]) from exc2
            raise _damaged(path, f"{type(exc2).__name__}: {first_line(exc2)}") from exc2
        except Exception as exc2:
            raise _damaged(path, f"{type(exc2).__name__}: {first_line(exc2)}") from exc2
    except Exception as exc:  # zip errors of a truncated file, EOF, ...
        raise _damaged(path, f"{type(exc).__name__}: {first_line(exc)}") from exc


# --- what a load did -------------------------------------------------------------------------------


@dataclass
class LoadReport:
    """Exactly how one file's state dict went into its network.

    ``strict``: every key and shape matched. Otherwise ``missing`` keys kept the values the
    network is built with (only allowed outside the feature path), ``unexpected`` keys were
    ignored, ``mismatched`` ones (outside the feature path) were not loaded. ``unwrapped`` names the
    dict key the state dict was found under where none was expected, ``prefix`` a stripped
    DataParallel prefix, ``ignored`` entries that are not tensors (epoch, optimiser state, ...).
    """

    file: str
    network: str
    strict: bool = True
    unwrapped: str | None = None
    prefix: str | None = None
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)  # [key, shape in file, shape expected]
    ignored: list = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """A strict load of the state dict where it was expected, under its own names."""
        return self.strict and self.unwrapped is None and self.prefix is None

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One sentence for the logs, the CLI and Slicer."""
        if self.clean:
            return f"{self.file}: loaded strictly"
        parts = []
        if self.unwrapped:
            parts.append(f"state dict unwrapped from '{self.unwrapped}'")
        if self.prefix:
            parts.append(f"'{self.prefix}' prefix removed from every key")
        if not self.strict:
            parts.append(
                f"loaded without strict key matching: {len(self.missing)} missing key(s) kept as built "
                f"{_names(self.missing, 5)}, {len(self.unexpected)} unexpected key(s) ignored "
                f"{_names(self.unexpected, 5)}, {len(self.mismatched)} of other shape not loaded "
                f"{_names([m[0] for m in self.mismatched], 5)}; none of them is used by the features"
            )
        return f"{self.file}: " + "; ".join(parts)


def _names(keys: list, limit: int = SHOWN) -> str:
    if not keys:
        return "[]"
    shown = ", ".join(keys[:limit])
    return f"[{shown}{f', ... and {len(keys) - limit} more' if len(keys) > limit else ''}]"


def tensor_entries(sd: dict, path: Path, network: str, report: LoadReport) -> dict:
    """The tensors of a state dict under their own names; other entries are ignored (and reported)."""
    if not isinstance(sd, dict) or not any(torch.is_tensor(v) for v in sd.values()):
        raise WeightsError(f"{path}: does not hold a {network} state dict (a mapping of names to tensors)")
    report.ignored += sorted(str(k) for k, v in sd.items() if not torch.is_tensor(v))
    sd = {k: v for k, v in sd.items() if torch.is_tensor(v)}
    if len(sd) > 1 and all(isinstance(k, str) and k.startswith(DATA_PARALLEL_PREFIX) for k in sd):
        report.prefix = DATA_PARALLEL_PREFIX  # saved from a DataParallel/DDP wrapper: same weights, other names
        sd = {k[len(DATA_PARALLEL_PREFIX) :]: v for k, v in sd.items()}
    return sd


def looks_like(sd, prefixes: tuple) -> bool:
    """Whether a mapping's keys (DataParallel prefix or not) start like a given network's."""
    return isinstance(sd, dict) and any(
        isinstance(k, str) and (k.startswith(prefixes) or k[len(DATA_PARALLEL_PREFIX) :].startswith(prefixes))
        for k in sd
    )


def plan_load(
    sd: dict,
    shapes: dict,
    required: Callable[[str], bool],
    path: Path,
    network: str,
    cfg_name: str,
    report: LoadReport,
    tolerant: bool,
) -> dict:
    """The part of ``sd`` to load into a network whose keys have ``shapes``; fills ``report``.

    Strict when every key and shape match. Otherwise (``tolerant`` only) the intersection, when no
    key that ``required`` names is missing or of another shape; else a WeightsError listing them.
    """
    missing = [k for k in shapes if k not in sd]
    unexpected = [k for k in sd if k not in shapes]
    bad = [(k, list(sd[k].shape), list(s)) for k, s in shapes.items() if k in sd and tuple(sd[k].shape) != tuple(s)]
    if not missing and not unexpected and not bad:
        return sd
    bad_required = [b for b in bad if required(b[0]) or not tolerant]
    if bad_required:  # another configuration (or a different network): no partial load makes sense
        shown = "; ".join(f"{k}: file {tuple(a)}, expected {tuple(b)}" for k, a, b in bad_required[:3])
        raise WeightsError(
            f"{path}: tensor shapes do not match the {cfg_name} {network} configuration "
            f"({len(bad)} of {len(shapes)} tensors differ: {shown})"
        )
    missing_required = [k for k in missing if required(k)]
    if not tolerant or missing_required:
        what = (
            f"{len(missing_required)} tensor(s) the features depend on are missing: {_names(missing_required)}; "
            if tolerant
            else ""
        )
        raise WeightsError(
            f"{path}: does not match the {cfg_name} {network}: {what}{len(missing)} missing keys "
            f"{_names(missing, 3)}, {len(unexpected)} unexpected keys {_names(unexpected, 3)}"
        )
    report.strict = False
    report.missing, report.unexpected, report.mismatched = missing, unexpected, [list(b) for b in bad]
    skip = {b[0] for b in bad}
    return {k: v for k, v in sd.items() if k in shapes and k not in skip}


def unet_required(parameters: set) -> Callable[[str], bool]:
    """The feature path: every *parameter* of the embeddings, conditioning layers and all down,
    middle and up blocks. A missing buffer keeps the value the class builds it with (a constant)."""
    return lambda key: key in parameters and not key.startswith(UNET_NOT_IN_FEATURE_PATH)


__all__ = [
    "LoadReport",
    "read_checkpoint",
    "plan_load",
    "tensor_entries",
    "looks_like",
    "unet_required",
    "first_line",
    "UNET_PREFIXES",
    "VAE_PREFIXES",
    "WRAPPER_KEYS",
]
