"""One exception family for everything a user can get wrong, and the options its messages name.

Every error names the input (file, node, point) and says what to do. When what
to do is "set this option", the message names the option neutrally with
:func:`opt` (``{opt:radius=MM}``) and each interface renders it in its own
words with :func:`render`: the CLI as its flag (``--radius MM``), the worker
protocol as its request field (``matching.radius_mm = MM``), the Slicer module
as its panel field (``Advanced > Search radius = MM``). ``str(err)`` is the
neutral rendering; :attr:`MedDIFTError.hints` lists the options structurally.
Warnings (plain strings) use the same markers.
"""

from __future__ import annotations

import re

_MARK = re.compile(r"\{opt:(\w+)(?:=([^{}]*))?\}")

# neutral name -> (CLI flag, worker protocol field, Slicer panel field); None: the interface has no such option
OPTIONS = {
    "radius": ("--radius", "matching.radius_mm", "Advanced > Search radius"),
    "prior": ("--prior", "match.prior", None),
    "mask": ("--mask", None, None),
    "device": ("--device", "engine.device", "Advanced > Device"),
    "backbone": ("--backbone", "engine.backbone", "Advanced > Backbone"),
    "weights_dir": ("--weights-dir", "engine.weights_dir", "Advanced > Weights folder"),
    "timestep": ("--timestep", "engine.timestep", "Advanced > Timestep"),
    "levels": ("--levels", "engine.levels", "Advanced > Levels"),
    "ensemble": ("--ensemble", "engine.ensemble", None),
    "latent": ("--latent", "engine.latent", None),
    "region": ("--region", "engine.region", None),
    "seed": ("--seed", "engine.seed", None),
    "size_policy": ("--size-policy", "engine.size_policy", None),
    "fixed_hu_offset": ("--fixed-hu-offset", "load_volume.hu_offset (of the fixed volume)", None),
    "moving_hu_offset": ("--moving-hu-offset", "load_volume.hu_offset (of the moving volume)", None),
    "points_format": ("--points-format", None, None),
    "coarse_stride": ("--coarse-stride", "matching.coarse_stride", None),
    "memory_budget": ("--memory-budget", "matching.memory_budget_mb", None),
    "match_strategy": ("--match-strategy", "matching.strategy", None),
    "upsampled_budget": ("--upsampled-budget", "matching.upsampled_budget_mb", None),
    "force": ("--force", "heatmap.force = true", "confirm the replacement"),
    "out": ("--out", None, "Outputs > Matched landmarks"),
    "heatmap": ("--heatmap", "heatmap.out", None),
    "heatmap_for": ("--heatmap-for", "heatmap.point", "Outputs > Heatmap for"),
    "skip_outside": ("--skip-outside", None, None),
    # dense registration (RegistrationOptions): register, match --prior dense
    "prealign": ("--prealign", "registration.prealign", None),
    "search": ("--search", "registration.search_mm", None),
    "grid_spacing": ("--grid-spacing", "registration.spacing_mm", None),
    "smoothness": ("--smoothness", "registration.lam", None),
    "iterations": ("--iterations", "registration.iterations", None),
    "initial": ("--initial", "register.initial", None),
}
INTERFACES = ("cli", "worker", "slicer")

# what the Slicer panel says for options it does not have
_SLICER_INSTEAD = {
    "fixed_hu_offset": "add {v} to the fixed volume's voxels (for example with Simple Filters > ShiftScale)",
    "moving_hu_offset": "add {v} to the moving volume's voxels (for example with Simple Filters > ShiftScale)",
    "size_policy": "crop the volumes or resample them to coarser voxels",
}


def opt(name: str, value=None) -> str:
    """An option named neutrally inside a message (``value``: what to set it to, if one is advised)."""
    if name not in OPTIONS:
        raise KeyError(f"unknown option name {name!r}")
    return f"{{opt:{name}}}" if value is None else f"{{opt:{name}={value}}}"


def _one(name: str, value, interface: str) -> str:
    names = OPTIONS.get(name)
    if interface == "neutral" or names is None:
        return name if value is None else f"{name} = {value}"
    field = names[INTERFACES.index(interface)]
    if field is None:
        if interface == "slicer" and name in _SLICER_INSTEAD:
            return _SLICER_INSTEAD[name].format(v=value)
        return f"the option {name}" if value is None else f"the option {name} = {value}"
    if value is None:
        return field
    if interface == "cli":
        return f"{field} {value}" if name != "force" else field
    return f"{field} = {value}"


def render(message, interface: str = "neutral") -> str:
    """``message`` (a string, or an error: its template) with each option in ``interface``'s words:
    ``"cli"``, ``"worker"``, ``"slicer"`` or ``"neutral"``."""
    text = message.template if isinstance(message, MedDIFTError) else str(message)
    return _MARK.sub(lambda m: _one(m.group(1), m.group(2), interface), text)


def hints(message) -> list:
    """The options a message names, as ``[{"option": name, "value": value-or-None}]``."""
    text = message.template if isinstance(message, MedDIFTError) else str(message)
    return [{"option": m.group(1), "value": m.group(2)} for m in _MARK.finditer(text)]


class MedDIFTError(Exception):
    """Base class: an error whose message is meant for the user (options marked with :func:`opt`)."""

    @property
    def template(self) -> str:
        return str(self.args[0]) if self.args else ""

    @property
    def hints(self) -> list:
        return hints(self)

    def __str__(self) -> str:
        return render(self.template, "neutral")


class InputError(MedDIFTError, ValueError):
    """An input (image, landmark file, option) is unusable as given."""


class ImageReadError(InputError):
    """An image file is missing, unreadable, damaged, or not a 3D scalar volume."""


class LandmarkFormatError(InputError):
    """A landmark file is missing, malformed, or in an unknown format."""


class GeometryError(InputError):
    """Points or volumes do not fit together in world space."""


class OutputWriteError(MedDIFTError, OSError):
    """An output could not be written (disk full, no permission, exists); the old file, if any, is intact."""

    def __str__(self) -> str:  # OSError has its own __str__
        return render(self.template, "neutral")


class WeightsError(MedDIFTError):
    """Model weights are missing, corrupt, or not the expected checkpoint."""


class CancelledError(MedDIFTError):
    """The user cancelled a running job."""
