"""Image preparation for the MAISI backbone: orientation, HU window, size policy.

The paper's recipe: RAS orientation (an oblique scan is resampled onto RAS
axes, so that two scans' descriptors share directions), HU clipped to [-1000, 1000] and scaled
to [0, 1], each axis resized (trilinear, voxel edges kept) to the nearest
multiple of 128. The resize is a change of sampling only; the field of view
is unchanged, which is what keeps every feature level's geometry exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from ..data.checks import require_finite, require_min_size
from ..data.geometry import Grid, Volume, axis_aligned_ras, resized_grid
from ..errors import InputError

HU_MIN, HU_MAX = -1000.0, 1000.0
SIZE_POLICIES = ("paper", "spacing")
NETWORK_MULTIPLE = 32  # VAE /4 then UNet /8: image sizes must divide by 32
# Part of every backbone's identity (and so of the feature-cache key): bumped whenever the
# preparation changes what a volume's features are. 2: oblique scans resampled to RAS axes.
PREPROCESS_VERSION = 2


def hu_to_unit(array: np.ndarray) -> np.ndarray:
    """Clip HU to [-1000, 1000] and scale to [0, 1] (float32)."""
    a = np.asarray(array, dtype=np.float32)
    require_finite(a, "the volume")
    return (np.clip(a, HU_MIN, HU_MAX) - HU_MIN) / (HU_MAX - HU_MIN)


def target_shape(
    shape, spacing, policy: str = "paper", target_spacing_mm: float = 1.5, max_size: int = 512
) -> tuple[int, int, int]:
    """Network input size per axis.

    ``paper``: nearest multiple of 128 (at least 128), as MedDIFT does.
    ``spacing``: the multiple of 32 nearest to the size that would give
    ``target_spacing_mm`` voxels, so that thin and thick slices end up at a
    similar physical resolution (at least 64, at most ``max_size``).
    """
    shape = np.asarray(shape, dtype=np.float64)
    if policy == "paper":
        out = np.maximum(128, np.rint(shape / 128.0) * 128)
    elif policy == "spacing":
        extent = shape * np.asarray(spacing, dtype=np.float64)
        out = np.clip(np.rint(extent / target_spacing_mm / NETWORK_MULTIPLE) * NETWORK_MULTIPLE, 64, max_size)
    else:
        raise InputError(f"unknown size policy {policy!r}; choose one of {', '.join(SIZE_POLICIES)}")
    return cast("tuple[int, int, int]", tuple(int(s) for s in out))  # one size per axis of a 3D shape


@dataclass
class PreparedImage:
    """The network input and the grids that tie it to the world."""

    tensor: torch.Tensor  # (1, 1, I, J, K) in [0, 1] on the resized grid
    grid: Grid  # the reoriented volume's grid (what the features describe)
    input_grid: Grid  # the resized grid the network sees

    @property
    def input_spacing(self) -> np.ndarray:
        return np.linalg.norm(self.input_grid.ijk_to_ras[:3, :3], axis=0)


def prepare(volume: Volume, policy: str = "paper", target_spacing_mm: float = 1.5) -> PreparedImage:
    """Reorient to RAS (resampling an oblique scan onto RAS axes), window HU to [0, 1], resize by
    the size policy."""
    require_min_size(volume.shape, f"volume {volume.name!r}")
    ras = axis_aligned_ras(volume)
    unit = torch.from_numpy(hu_to_unit(ras.array))[None, None]
    size = target_shape(ras.shape, ras.spacing, policy, target_spacing_mm)
    if tuple(size) != ras.shape:
        unit = F.interpolate(unit, size=size, mode="trilinear", align_corners=False)
    return PreparedImage(unit.contiguous(), ras.grid, resized_grid(ras.grid, size))
