"""Feature pyramids with known correspondences, for matching tests and benchmarks.

Level features are smooth random functions of *world* position (random
Fourier features), sampled at each level's voxel centres. A moving pyramid
built with ``shift_mm`` holds the same function moved by that vector, so the
true match of a fixed point ``p`` is exactly ``p + shift_mm``.
"""

from __future__ import annotations

import numpy as np
import torch

from MedDIFTLib.data.geometry import Grid, apply_affine
from MedDIFTLib.features.pyramid import FeatureLevel, FeaturePyramid, level_matrix

MAISI_LAYOUT = (("up0", 512, 16), ("up1", 256, 8), ("up2", 128, 4), ("up3", 64, 4))
"""(name, channels, stride) of MAISI's decoder levels relative to a 128-multiple input."""


def world_feature_pyramid(
    grid: Grid,
    seed: int = 0,
    shift_mm=(0.0, 0.0, 0.0),
    layout=None,
    input_shape=None,
    wavelength_mm=(12.0, 40.0),
    noise: float = 0.0,
    dtype=torch.float32,
) -> FeaturePyramid:
    """A pyramid over ``grid`` whose level ``l`` holds f_l(x - shift) at its voxel centres.

    ``layout`` lists (name, channels, stride); strides are relative to
    ``input_shape`` (default: the grid's shape), like MAISI's levels relative
    to its resized input.
    """
    layout = layout or (("up0", 32, 16), ("up1", 16, 8), ("up2", 8, 4), ("up3", 8, 4))
    input_shape = np.asarray(input_shape or grid.shape)
    rng = np.random.default_rng(seed)
    noise_rng = np.random.default_rng(seed + 1000)
    shift = np.asarray(shift_mm, dtype=np.float64)
    levels = []
    for name, channels, stride in layout:
        shape = tuple(int(max(2, s // stride)) for s in input_shape)
        m = level_matrix(grid, shape)
        ijk = np.indices(shape).reshape(3, -1).T
        x = apply_affine(m, ijk) - shift
        # lower levels vary faster: wavelengths between the two bounds, scaled by stride
        lam = rng.uniform(*wavelength_mm, size=channels) * (stride / 4.0) ** 0.5
        k = rng.normal(size=(channels, 3))
        k = k / np.linalg.norm(k, axis=1, keepdims=True) * (2 * np.pi / lam)[:, None]
        phase = rng.uniform(0, 2 * np.pi, size=channels)
        f = np.cos(x @ k.T + phase).T.reshape(channels, *shape)
        if noise:
            f = f + noise * noise_rng.normal(size=f.shape)
        levels.append(FeatureLevel(name, torch.from_numpy(f.astype(np.float32)).to(dtype), m))
    return FeaturePyramid(levels, grid, {"synthetic": seed, "shift_mm": shift.tolist()})
