"""Every feature option checked before any work, for the backbone actually used.

Values out of range are an error whichever backbone runs (``--timestep -1``
is a mistake even where it would be ignored); MAISI-only options set away from
their default while the weight-free MIND-SSC backbone runs are a warning (they
change nothing), never silently ignored. Messages name options with
:func:`~MedDIFTLib.errors.opt`, so each interface shows its own name for them.
"""

from __future__ import annotations

import math

from ..errors import InputError, opt
from ..options import BACKBONE_NAMES, MAISI_LEVELS, MIND_LEVELS, BackboneName

BODY_REGIONS = ("head", "thorax", "abdomen", "pelvis")  # MAISI's body-region condition (networks.BODY_REGIONS)
NUM_TRAIN_TIMESTEPS = 1000  # MAISI v1's DDPM schedule (networks.MaisiConfig.num_train_timesteps)
# MAISI-only options and their defaults: set otherwise with MIND-SSC, they are reported as ignored
MAISI_ONLY = {"timestep": 20, "ensemble": 1, "latent": "sample", "region": "thorax", "seed": 0, "size_policy": "paper"}


def resolve_device(device: str = "auto", accelerator: bool = True):
    """``auto``, ``cpu``, or ``cuda[:N]``, as a torch device; anything else, or CUDA on a torch without
    it, refused in words.

    Args:
        device: the device asked for.
        accelerator: whether the work gains from a GPU (a backbone's ``wants_accelerator``): ``auto``
            is CUDA when there is one and this is true, the CPU otherwise.
    """
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda" if accelerator and torch.cuda.is_available() else "cpu")
    text = str(device).strip().lower()
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise InputError(f"unknown device {device!r}: use auto, cpu or cuda[:N] ({opt('device')})")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"device {device!r} asked for, but this torch has no CUDA device (a CPU build, or no "
                f"GPU visible): use {opt('device', 'cpu')} or {opt('device', 'auto')}"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(
                f"device {device!r} asked for, but there are {torch.cuda.device_count()} CUDA "
                f"device(s): use {opt('device', 'cuda:0')}"
            )
    return dev


def check_maisi_values(
    timestep=20, ensemble=1, latent="sample", region="thorax", seed=0, size_policy="paper", levels=None
) -> None:
    """The MAISI options' ranges (one owner: the MAISI backbone calls this too)."""
    if not _is_int(timestep) or not 0 <= int(timestep) < NUM_TRAIN_TIMESTEPS:
        raise InputError(
            f"the timestep must be a whole number in 0..{NUM_TRAIN_TIMESTEPS - 1} (the paper uses 20), "
            f"got {timestep} ({opt('timestep')})"
        )
    if not _is_int(ensemble) or int(ensemble) < 1:
        raise InputError(f"the ensemble must be at least 1 noise draw, got {ensemble} ({opt('ensemble')})")
    if latent not in ("sample", "mean"):
        raise InputError(f"the latent must be sample or mean, got {latent!r} ({opt('latent')})")
    if region not in BODY_REGIONS:
        raise InputError(f"unknown body region {region!r}: choose one of {', '.join(BODY_REGIONS)} ({opt('region')})")
    if not _is_int(seed):
        raise InputError(f"the seed must be a whole number, got {seed!r} ({opt('seed')})")
    if size_policy not in ("paper", "spacing"):
        raise InputError(f"the size policy must be paper or spacing, got {size_policy!r} ({opt('size_policy')})")
    _check_levels(levels, MAISI_LEVELS)


def _check_levels(levels, known) -> None:
    if levels is None:
        return
    unknown = [lv for lv in levels if lv not in known]
    if unknown or not levels:
        raise InputError(
            f"unknown feature levels {', '.join(map(str, unknown)) or '(none given)'} for this backbone: "
            f"choose from {', '.join(known)} ({opt('levels')})"
        )


def _is_int(v) -> bool:
    try:
        return float(v) == int(v) and not isinstance(v, bool)
    except (TypeError, ValueError, OverflowError):
        return False


def check_engine_options(opts, backbone: str) -> list:
    """Refuse bad values of ``opts`` (an :class:`~MedDIFTLib.session.EngineOptions`) and return warnings
    about options that do not apply to ``backbone`` (the one actually used: ``maisi`` or ``mind-ssc``)."""
    if opts.backbone not in BACKBONE_NAMES:
        raise InputError(
            f"unknown backbone {opts.backbone!r}: choose one of {', '.join(BACKBONE_NAMES)} ({opt('backbone')})"
        )
    resolve_device(opts.device)
    values = {k: getattr(opts, k) for k in MAISI_ONLY}
    if backbone == BackboneName.MAISI:
        check_maisi_values(levels=opts.levels, **values)
        return []
    check_maisi_values(**values)
    _check_levels(opts.levels, MIND_LEVELS)
    changed = [k for k, default in MAISI_ONLY.items() if values[k] != default]
    if not changed:
        return []
    shown = ", ".join(f"{opt(k)}" for k in changed)
    return [
        f"{shown}: MAISI option(s) that the weight-free MIND-SSC backbone does not use; they are ignored in this run"
    ]


def finite_number(value, what: str, name: str, minimum: float | None = None) -> float:
    """``value`` as a finite float (at least ``minimum``), or the error naming the option ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v) or (minimum is not None and v < minimum):
        bound = "" if minimum is None else f" of at least {minimum:g}"
        raise InputError(f"{what} must be a finite number{bound}, got {value!r} ({opt(name)})")
    return v
