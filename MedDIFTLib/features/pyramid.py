"""Feature pyramids that know where they are in the world.

A backbone turns a volume into a few *levels* of voxel descriptors, each at its
own (coarser) resolution. A level is never upsampled here: it carries the
exact 4x4 matrix from its own voxel indices to RAS millimetres, so sampling it
at a world point needs no knowledge of how it was made.

Convention: a level of ``m`` voxels along an axis covers the same field of
view as the ``n`` voxels of the volume it describes (voxel edges kept, like
``torch.nn.functional.interpolate(..., align_corners=False)``), so level index
``u`` sits at volume index ``(u + 0.5) * n / m - 0.5``. See
:func:`MedDIFTLib.data.geometry.resized_grid`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch

from ..atomic import atomic_path
from ..data.geometry import Grid, apply_affine, as_points, resized_grid
from ..errors import InputError

PYRAMID_FORMAT = "meddift-feature-pyramid-1"


@dataclass
class FeatureLevel:
    """One level: descriptors ``features[c, i, j, k]`` and their grid."""

    name: str
    features: torch.Tensor  # (C, I, J, K), float32 or bfloat16/float16 storage
    ijk_to_ras: np.ndarray  # level voxel index -> RAS mm

    @property
    def channels(self) -> int:
        return int(self.features.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        return cast("tuple[int, int, int]", tuple(int(s) for s in self.features.shape[1:]))  # (C, I, J, K)

    @property
    def grid(self) -> Grid:
        return Grid(self.shape, self.ijk_to_ras)

    def sample(self, ras) -> torch.Tensor:
        """Trilinear descriptors at world points: (N, C) float32.

        Points outside the level's voxel centres are clamped to the border
        (the same as the upsampling a dense reference would do).
        """
        ijk = apply_affine(np.linalg.inv(self.ijk_to_ras), as_points(ras))
        return trilinear_sample(self.features, ijk)


def trilinear_sample(features: torch.Tensor, ijk: np.ndarray) -> torch.Tensor:
    """Sample ``features[c, i, j, k]`` at continuous indices (N, 3), border-clamped; on the features' device."""
    shape = np.asarray(features.shape[1:])
    x = np.clip(np.asarray(ijk, dtype=np.float64), 0.0, shape - 1.0)
    lo = np.minimum(np.floor(x).astype(np.int64), np.maximum(shape - 2, 0))
    w = x - lo  # in [0, 1] (can be 1 at the last voxel)
    dev = features.device
    out = torch.zeros((x.shape[0], features.shape[0]), dtype=torch.float32, device=dev)
    for corner in range(8):
        d = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        idx = torch.from_numpy(np.minimum(lo + d, shape - 1)).to(dev)
        wt = np.prod(np.where(d == 1, w, 1.0 - w), axis=1)
        vals = features[:, idx[:, 0], idx[:, 1], idx[:, 2]].T.float()
        out += torch.from_numpy(wt.astype(np.float32)).to(dev)[:, None] * vals
    return out


@dataclass
class FeaturePyramid:
    """The levels describing one volume, and what made them.

    ``grid`` is the grid of the volume the levels describe (after the
    backbone's reorientation; in world space it is the same volume).
    ``identity`` records the backbone, its options and weights, and the
    image content: equal identities mean interchangeable pyramids.
    """

    levels: list[FeatureLevel]
    grid: Grid
    identity: dict = field(default_factory=dict)

    def level(self, name: str) -> FeatureLevel:
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise InputError(f"no feature level {name!r}; levels are {[lv.name for lv in self.levels]}")

    @property
    def names(self) -> list[str]:
        return [lv.name for lv in self.levels]

    def select(self, names) -> FeaturePyramid:
        """A pyramid with only the named levels (in the given order)."""
        if names is None:
            return self
        return FeaturePyramid([self.level(n) for n in names], self.grid, dict(self.identity))

    def nbytes(self) -> int:
        return sum(lv.features.numel() * lv.features.element_size() for lv in self.levels)

    # --- persistence -------------------------------------------------------

    def save(self, path) -> Path:
        """Write to one ``.pt`` file atomically (tensors, matrices, identity as JSON)."""
        path = Path(path)
        payload = {
            "format": PYRAMID_FORMAT,
            "identity_json": json.dumps(self.identity, sort_keys=True),
            "grid_shape": list(self.grid.shape),
            "grid_ijk_to_ras": torch.from_numpy(np.asarray(self.grid.ijk_to_ras, dtype=np.float64)),
            "levels": [
                {"name": lv.name, "features": lv.features.contiguous(), "ijk_to_ras": torch.from_numpy(lv.ijk_to_ras)}
                for lv in self.levels
            ],
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        return path

    @classmethod
    def load(cls, path) -> FeaturePyramid:
        path = Path(path)
        try:
            # memory-mapped where the OS lets a mapped file be replaced later (not Windows)
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=os.name != "nt")
            if payload.get("format") != PYRAMID_FORMAT:
                raise InputError(f"{path}: not a MedDIFT feature pyramid (format {payload.get('format')!r})")
            levels = [
                FeatureLevel(d["name"], d["features"], d["ijk_to_ras"].numpy().astype(np.float64))
                for d in payload["levels"]
            ]
            grid = Grid(tuple(payload["grid_shape"]), payload["grid_ijk_to_ras"].numpy())
            identity = json.loads(payload["identity_json"])
        except InputError:
            raise
        except Exception as exc:
            raise InputError(
                f"{path}: feature pyramid file is unreadable or corrupt ({type(exc).__name__}: {exc})"
            ) from exc
        return cls(levels, grid, identity)


def level_matrix(grid: Grid, level_shape) -> np.ndarray:
    """IJK-to-RAS of a level of ``level_shape`` covering ``grid``'s field of view."""
    return resized_grid(grid, level_shape).ijk_to_ras
