"""Every option and choice of the engine, typed, in one module that imports neither torch nor numpy.

The Slicer module, the CLI, the worker protocol and the server all build these dataclasses; they
become JSON only at the wire (:meth:`Options.to_dict`, :meth:`Options.from_dict`, which refuses
an unknown key in words). The names a user can choose (backbones, feature levels, priors, the
registration's pre-alignment, the server's job states) are spelled here once, as enums whose
values are the strings the dicts and the command line have always used.

The fields hold those plain strings, not enum members, so that ``to_dict`` gives exactly the
dicts that older clients send and ``==`` with a string keeps working.
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import InputError, opt


class Choice(str, enum.Enum):
    """A named choice whose value is its spelling on the command line and in every dict."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """The spellings, in declaration order (argparse ``choices``, messages)."""
        return tuple(m.value for m in cls)


class BackboneName(Choice):
    """``auto``: MAISI when its weights are found, else the weight-free MIND-SSC descriptor."""

    AUTO = "auto"
    MAISI = "maisi"
    MIND_SSC = "mind-ssc"


class MaisiLevel(Choice):
    """MAISI v1's decoder levels whose features are kept (finest first)."""

    UP0 = "up0"
    UP1 = "up1"
    UP2 = "up2"
    UP3 = "up3"


class MindLevel(Choice):
    """MIND-SSC's levels: the descriptor at 1, 2 and 4 times the scan's voxel size."""

    MIND1 = "mind1"
    MIND2 = "mind2"
    MIND4 = "mind4"


class PriorKind(Choice):
    """Where a local search looks; a prior that is none of these names is a transform file."""

    IDENTITY = "identity"  # the same world point
    COARSE = "coarse"  # a global match on the coarsest level first
    DENSE = "dense"  # the session's dense registration (the default)
    NONE = "none"  # the paper's plain argmax: global, or within the radius of the same world point


class Prealign(Choice):
    NONE = "none"
    RIGID = "rigid"
    AFFINE = "affine"


class Strategy(Choice):
    """How the exact similarity is computed (see :mod:`MedDIFTLib.matching.strategy`)."""

    AUTO = "auto"
    NATIVE = "native"
    UPSAMPLED = "upsampled"


class JobState(Choice):
    """A server job's state; the last three are final."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self.value in FINAL_STATES


FINAL_STATES = (JobState.DONE.value, JobState.FAILED.value, JobState.CANCELLED.value)
BACKBONE_NAMES = BackboneName.values()
MAISI_LEVELS = MaisiLevel.values()
MIND_LEVELS = MindLevel.values()
PRIOR_NAMES = PriorKind.values()
PREALIGN_KINDS = Prealign.values()
STRATEGIES = Strategy.values()


def is_named_prior(spec: Any) -> bool:
    """True when ``spec`` is one of :class:`PriorKind` (a string that is not names a file)."""
    return isinstance(spec, str) and spec in PRIOR_NAMES


class UnknownOptionsError(InputError):
    """Keys that name no option of the dataclass (a typo, or a client of another release)."""


class Options:
    """``to_dict``/``from_dict`` for the option dataclasses below: plain JSON-able dicts with the
    field names as keys; an unknown key is refused in words, naming the known ones."""

    what = "options"

    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict | None):
        """An instance from ``d`` (None: the defaults); every value checked by the class itself.

        Args:
            d: the field names and values (a subset; the rest keep their defaults).
        """
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise InputError(f"{cls.what} must be an object of named values, got {type(d).__name__}")
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise UnknownOptionsError(f"unknown {cls.what} {unknown}; known: {sorted(names)}")
        return cls(**d)


@dataclass
class EngineOptions(Options):
    """What computes the features (everything that changes them); checked, for the backbone actually
    used, by :func:`MedDIFTLib.features.options.check_engine_options`."""

    what = "engine options"

    backbone: str = BackboneName.AUTO.value  # maisi | mind-ssc | auto (MAISI when its weights are found)
    weights_dir: str | None = None
    device: str = "auto"
    timestep: int = 20
    levels: list | None = None
    ensemble: int = 1
    latent: str = "sample"
    region: str = "thorax"
    seed: int = 0
    size_policy: str = "paper"
    cache_dir: str | None = None
    use_cache: bool = True
    # (an HU offset is not an engine option: it belongs to one scan, see data.image_io.with_hu_offset)
    random_init: bool = False  # MAISI only: random weights, an explicit control (ablations), never the default


SERVER_OWNED_ENGINE_KEYS = ("weights_dir", "cache_dir", "use_cache", "device")
"""Engine options a server decides (its folders and its device); a client never sends them."""


def search_radius(radius_mm: Any) -> float | None:
    """The one rule for a search radius, wherever it is given (CLI, worker, Slicer panel, demo,
    evaluation): ``None`` or 0 is a global search; otherwise a finite positive number of mm.

    Args:
        radius_mm: the radius as given (a number, a numeric string, None).
    """
    if radius_mm is None:
        return None
    try:
        r = float(radius_mm)
    except (TypeError, ValueError):
        r = float("nan")
    if r == 0.0:
        return None
    if not math.isfinite(r) or r < 0:
        raise InputError(
            f"the search radius must be a positive number of mm (0 or none: search the whole moving "
            f"volume), got {radius_mm!r} ({opt('radius')})"
        )
    return r


@dataclass
class MatchOptions(Options):
    """How to search. Defaults reproduce the global argmax of the paper."""

    what = "matching options"

    levels: list | None = None  # feature levels used (None: all in the pyramids)
    radius_mm: float | None = None  # local search: only within this distance of the prior
    coarse_stride: int | None = None  # coarse lattice step in target voxels; None: auto (see Matcher.stride)
    top_k: int = 8  # coarse local maxima refined at full resolution
    refine_radius: int = 1  # hill-climbing window half-size, voxels (climbs until a local maximum)
    subvoxel: bool = True  # parabola fit of the peak
    margin_radius_mm: float = 8.0  # "outside a small radius" for the margin
    forward_backward: bool = True
    memory_budget_mb: float = 64.0  # working memory for a batch of queries (sets the batch size)
    strategy: str = Strategy.AUTO.value  # native | upsampled | auto (the cheaper estimate): see matching.strategy
    upsampled_budget_mb: float = 1024.0  # memory the upsampled strategy may keep per moving pyramid

    def __post_init__(self):
        self.radius_mm = search_radius(self.radius_mm)  # 0 or None: global
        for name, key in (("memory_budget_mb", "memory_budget"), ("upsampled_budget_mb", "upsampled_budget")):
            if not 0 < float(getattr(self, name)) < float("inf"):
                what = "the memory budget" if key == "memory_budget" else "the upsampled strategy's budget"
                raise InputError(f"{what} must be a positive number of MB, got {getattr(self, name)} ({opt(key)})")
        if self.strategy not in STRATEGIES:
            raise InputError(
                f"unknown matching strategy {self.strategy!r}: choose one of {', '.join(STRATEGIES)} "
                f"({opt('match_strategy')})"
            )
        for name in ("coarse_stride", "top_k"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                shown = opt(name) if name == "coarse_stride" else name
                raise InputError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)} ({shown})")


@dataclass
class RegistrationOptions(Options):
    """How to register. Distances in mm; ``control`` and ``step`` in registration-grid voxels.

    The discrete stage only has to place each control cell within one search step, so its
    cost volume (the largest array, one SSD per cell and shift) sees the descriptors'
    leading 12 principal components, MIND-SSC's own channel count and what ConvexAdam's
    discrete stage uses; the continuous stage, which sets the sub-voxel answer, sees up to
    ``max_channels``. On the phantom suite 12 channels in the cost volume are as accurate as
    all of them, at a fraction of its cost (``Testing/Benchmarks/bench_registration.py``).
    The continuous stage runs coarse to fine: ``iterations`` on cells of ``adam_pool`` grid
    voxels, then ``fine_iterations`` on the grid itself. The fine level keeps every channel
    by default: what it adds is the finest descriptor level's detail, which lies in the minor
    principal components that a projection drops (docs/evaluation/dense-round2.md).
    """

    what = "registration options"

    spacing_mm: float | None = None  # registration grid; None: the fixed scan's voxel size, within max_voxels
    max_voxels: int = 2_000_000  # bounds memory and time on large scans (coarser grid when exceeded)
    search_mm: float = 30.0  # discrete search range around the pre-aligned position
    control: int = 4  # grid voxels per control cell of the discrete stage
    step: int = 2  # grid voxels between tested displacements
    prealign: str = Prealign.RIGID.value  # none | rigid | affine
    prealign_spacing_mm: float | None = None  # coarse cells of the global matching; None: one control cell
    inverse_consistent: bool = True
    lam: float = (
        0.5  # diffusion weight; ConvexAdam uses 1.25 for raw MIND, whose SSD is larger than that of unit descriptors
    )
    iterations: int = 80  # Adam steps on cells of adam_pool grid voxels
    adam_pool: int = 2  # the continuous stage's coarse level works on grid voxels pooled by this
    fine_iterations: int = 30  # then Adam steps on the registration grid itself (0: none)
    fine_channels: int | None = None  # channels (leading components) of that fine level; None: max_channels
    body_mask: bool = True  # weight the data term by the fixed scan's body (HU > -500), not air and table
    max_channels: int = 64  # more descriptor channels are projected on their principal components
    discrete_channels: int | None = 12  # cost-volume channels (leading components); None: max_channels
    levels: list | None = None

    def __post_init__(self):
        """Every check once, in neutral option names: the CLI shows its flags, the worker its fields."""
        if self.prealign not in PREALIGN_KINDS:
            raise InputError(f"{opt('prealign')} must be one of {', '.join(PREALIGN_KINDS)}, got {self.prealign!r}")
        public = {
            "search_mm": ("search", "positive (mm)"),
            "lam": ("smoothness", "zero or positive"),
            "spacing_mm": ("grid_spacing", "positive (mm)"),
            "iterations": ("iterations", "zero or more"),
        }
        for field, (name, rule) in public.items():
            v = getattr(self, field)
            if v is None and field == "spacing_mm":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InputError(f"{opt(name)} must be a finite number, got {v!r}")
            if v < 0 or (v == 0 and rule.startswith("positive")):
                raise InputError(f"{opt(name)} must be {rule}, got {v:g}")
        fi = self.fine_iterations
        if isinstance(fi, bool) or not isinstance(fi, (int, float)) or not float(fi).is_integer() or fi < 0:
            raise InputError(f"registration option fine_iterations must be zero or more, got {self.fine_iterations!r}")
        for name in (
            "max_voxels",
            "control",
            "step",
            "adam_pool",
            "max_channels",
            "discrete_channels",
            "fine_channels",
        ):
            v = getattr(self, name)
            if v is None and name in ("discrete_channels", "fine_channels"):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v).is_integer() or v < 1:
                raise InputError(f"registration option {name} must be a whole number of at least 1, got {v!r}")


__all__ = [
    "Choice",
    "BackboneName",
    "MaisiLevel",
    "MindLevel",
    "PriorKind",
    "Prealign",
    "Strategy",
    "JobState",
    "FINAL_STATES",
    "BACKBONE_NAMES",
    "MAISI_LEVELS",
    "MIND_LEVELS",
    "PRIOR_NAMES",
    "PREALIGN_KINDS",
    "STRATEGIES",
    "is_named_prior",
    "Options",
    "UnknownOptionsError",
    "EngineOptions",
    "MatchOptions",
    "RegistrationOptions",
    "SERVER_OWNED_ENGINE_KEYS",
    "search_radius",
]
