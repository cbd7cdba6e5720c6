"""A weight-free backbone: MIND-SSC, the Modality Independent Neighbourhood Descriptor
with a self-similarity context (Heinrich et al., MICCAI 2013), at several scales.

It runs where no diffusion weights exist (fresh installs, CI, the demo) and is
a classical baseline to compare MedDIFT against. It is *not* the MedDIFT
method; the pipeline says so wherever it is used.

Per level: the RAS-oriented (oblique scans resampled onto RAS axes), HU-windowed image is smoothed (Gaussian, sigma =
stride / 2) and sampled on the level grid (same voxel-edge convention as all
feature levels), then the 12 SSC channels are computed there: for each pair of
the six face neighbours at distance ``dilation`` that are sqrt(2) * dilation
apart, the patch sum of squared differences, turned into exp(-D / V) with V the
per-voxel mean of the 12 distances (floored), and divided by the per-voxel maximum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..data.checks import require_min_size
from ..data.digest import volume_digest
from ..data.geometry import Volume, axis_aligned_ras
from ..errors import InputError
from ..options import MIND_LEVELS, BackboneName
from ..runtime import Cancel, Progress, check_cancel, report
from .base import Backbone
from .options import resolve_device
from .preprocess import PREPROCESS_VERSION, hu_to_unit
from .pyramid import FeatureLevel, FeaturePyramid, level_matrix

SIX = [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]
# the 12 SSC pairs: neighbours whose offsets are orthogonal (the octahedron's edges)
SSC_PAIRS = [(a, b) for a in range(6) for b in range(a + 1, 6) if sum(x * y for x, y in zip(SIX[a], SIX[b])) == 0]
LEVELS = dict(zip(MIND_LEVELS, (1, 2, 4)))  # level name -> its voxel size in scan voxels


class MindSSCBackbone(Backbone):
    """Multi-scale MIND-SSC features (12 channels per level)."""

    name = BackboneName.MIND_SSC.value

    def __init__(
        self, levels: Sequence[str] = ("mind2", "mind4"), radius: int = 1, dilation: int = 2, device: str = "cpu"
    ):
        unknown = [lv for lv in levels if lv not in LEVELS]
        if unknown or not levels:
            raise InputError(f"unknown feature levels {unknown or levels}; choose from {', '.join(LEVELS)}")
        if radius < 0 or dilation < 1:
            raise InputError("MIND-SSC needs radius >= 0 and dilation >= 1")
        self.levels = tuple(levels)
        self.radius, self.dilation = int(radius), int(dilation)
        self.device = resolve_device(device, self.wants_accelerator)

    @property
    def level_names(self) -> list[str]:
        return list(self.levels)

    def identity(self) -> dict:
        return {
            "backbone": self.name,
            "version": 1,
            "levels": list(self.levels),
            "radius": self.radius,
            "dilation": self.dilation,
            "preprocess": PREPROCESS_VERSION,
        }

    def extract(self, volume: Volume, progress: Progress | None = None, cancel: Cancel | None = None) -> FeaturePyramid:
        report(progress, "preprocess", 0.0)
        ras = axis_aligned_ras(volume)
        require_min_size(ras.shape, f"volume {volume.name!r}")
        image = torch.from_numpy(hu_to_unit(ras.array))[None, None].to(self.device)
        report(progress, "preprocess", 1.0)
        out = []
        for i, name in enumerate(self.levels):
            check_cancel(cancel)
            report(progress, "mind-ssc", i / len(self.levels))
            stride = LEVELS[name]
            shape = tuple(max(8, int(math.ceil(n / stride))) for n in ras.shape)
            img = image
            if stride > 1:
                img = gaussian_blur(img, stride / 2.0)
                img = F.interpolate(img, size=shape, mode="trilinear", align_corners=False)
            feats = mind_ssc(img, self.radius, self.dilation)[0].cpu().contiguous()
            out.append(FeatureLevel(name, feats, level_matrix(ras.grid, shape)))
        report(progress, "mind-ssc", 1.0)
        ident = dict(self.identity(), volume_sha256=volume_digest(volume))
        return FeaturePyramid(out, ras.grid, ident)


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a (1, 1, X, Y, Z) image, edges replicated."""
    r = max(1, int(math.ceil(2.5 * sigma)))
    x = torch.arange(-r, r + 1, dtype=img.dtype, device=img.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = -1
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = r
        img = F.conv3d(F.pad(img, pad, mode="replicate"), k.view(shape))
    return img


def _shift(img: torch.Tensor, offset, pad: int) -> torch.Tensor:
    """``img`` read at ``index + offset`` (replicate padding of ``pad`` voxels already applied)."""
    x, y, z = img.shape[2:]
    sx, sy, sz = (pad + o for o in offset)
    return img[:, :, sx : x - 2 * pad + sx, sy : y - 2 * pad + sy, sz : z - 2 * pad + sz]


def mind_ssc(img: torch.Tensor, radius: int = 1, dilation: int = 2) -> torch.Tensor:
    """MIND-SSC of a (1, 1, X, Y, Z) image: (1, 12, X, Y, Z), values in (0, 1], max 1 per voxel."""
    pad = dilation
    padded = F.pad(img, [pad] * 6, mode="replicate")
    shifted = [_shift(padded, tuple(dilation * o for o in off), pad) for off in SIX]
    dist = torch.cat([(shifted[a] - shifted[b]) ** 2 for a, b in SSC_PAIRS], dim=1)
    if radius > 0:
        k = 2 * radius + 1
        dist = F.avg_pool3d(F.pad(dist, [radius] * 6, mode="replicate"), k, stride=1)
    # a fixed floor (about 6 HU of patch noise on the [0, 1] window), not one relative to the
    # volume's mean: that keeps the descriptor local, so a crop gives the same values
    var = dist.mean(dim=1, keepdim=True).clamp_min(1e-5)
    mind = torch.exp(-dist / var)
    return mind / mind.amax(dim=1, keepdim=True)
