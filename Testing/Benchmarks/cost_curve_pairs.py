"""The pairs of the cost curve (``bench_cost_curve.py``): one per size, each with a known motion.

A real CT is resampled to every size over the same box and deformed by the same known smooth
field (:mod:`MedDIFTLib.evaluation.warped`), so the sizes differ in voxels only, not in anatomy or
motion; the landmarks are chosen once on the native scan and are the same world points at every
size. Without a CT, the phantom is rendered at each size over the same 336 mm box.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from MedDIFTLib.data.geometry import Volume, apply_affine, resized_grid
from MedDIFTLib.data.image_io import read_volume, write_volume
from MedDIFTLib.errors import InputError

CHUNK_VOXELS = 2_000_000  # the pair is built slab by slab so that a 512x512x300 one fits in memory
DEFAULT_CT = Path(__file__).resolve().parents[3] / "shared" / "data" / "ct" / "totalsegmentator" / "abdomen_3mm.nii.gz"
PHANTOM_BOX_MM = 336.0  # the phantom's default 96 voxels x 3.5 mm


def _sample(native: Volume, ras: np.ndarray) -> np.ndarray:
    """Trilinear HU of ``native`` at RAS points, air outside it."""
    from scipy import ndimage

    ijk = native.world_to_ijk(ras)
    arr = np.asarray(native.array, dtype=np.float32)
    return ndimage.map_coordinates(arr, ijk.T, order=1, mode="constant", cval=-1000.0, prefilter=False)


def ct_pair(native: Volume, motion, shape, noise_hu: float = 10.0) -> tuple[Volume, Volume]:
    """The native CT resampled to ``shape`` over the same box (fixed), and the same at phi^-1 (moving).

    Both are sampled from the native scan (not the moving from the resampled fixed), slab by slab.

    Args:
        native: the CT as read.
        motion: fixed -> moving map (``moving_to_fixed`` is used).
        shape: voxels of the pair.
        noise_hu: seeded Gaussian noise on the moving scan.
    """
    grid = resized_grid(native.grid, shape)
    fixed = np.empty(shape, np.float32)
    moving = np.empty(shape, np.float32)
    step = max(1, CHUNK_VOXELS // (shape[0] * shape[1]))
    rng = np.random.default_rng(0)
    for k0 in range(0, shape[2], step):
        ks = np.arange(k0, min(shape[2], k0 + step))
        ijk = np.stack(np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), ks, indexing="ij"), -1).reshape(-1, 3)
        ras = apply_affine(grid.ijk_to_ras, ijk.astype(np.float64))
        sub = (shape[0], shape[1], len(ks))
        fixed[:, :, ks] = _sample(native, ras).reshape(sub)
        hu = _sample(native, motion.moving_to_fixed(ras)) + rng.normal(0.0, noise_hu, len(ras))
        moving[:, :, ks] = hu.reshape(sub)
    return Volume(fixed, grid.ijk_to_ras.copy(), "ct fixed"), Volume(moving, grid.ijk_to_ras.copy(), "ct moving")


def ct_source(path: Path):
    """The native CT, its smooth motion (8 mm, seed 0) and landmarks on it, the same for every size."""
    from MedDIFTLib.evaluation.warped import sample_landmarks, warp_motion

    native = read_volume(path)
    motion = warp_motion(native, amplitude_mm=8.0, seed=0)
    lm = sample_landmarks(native, motion, n=20, amplitude_mm=8.0)
    return native, motion, lm.points


def prepare_pair(source, shape, folder: Path) -> dict:
    """Write ``fixed.nii``, ``moving.nii`` and ``landmarks.json`` (fixed points, truth) for one size.

    Args:
        source: ``ct_source``'s triple, or None for the phantom.
        shape: voxels of the pair.
        folder: where to write.
    """
    if source is None:
        from MedDIFTLib.evaluation.motion import BreathingMotion
        from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks

        spacing = tuple(PHANTOM_BOX_MM / s for s in shape)
        pair = make_pair(shape, spacing, seed=0, motion=BreathingMotion(amplitude_mm=15.0))
        fixed, moving, motion = pair.fixed, pair.moving, pair.motion
        points = sample_landmarks(pair, n=20, seed=0).points
    else:
        native, motion, points = source
        fixed, moving = ct_pair(native, motion, shape)
    folder.mkdir(parents=True, exist_ok=True)
    write_volume(fixed, folder / "fixed.nii", compress=False)
    write_volume(moving, folder / "moving.nii", compress=False)
    truth = motion.fixed_to_moving(points)
    (folder / "landmarks.json").write_text(json.dumps({"fixed": points.tolist(), "truth": truth.tolist()}))
    return {"spacing_mm": "x".join(f"{s:.3g}" for s in fixed.spacing)}


def pair_source(spec: str):
    """``auto`` (the shared CT when present, else the phantom), ``phantom``, or a CT file."""
    if spec == "phantom" or (spec == "auto" and not DEFAULT_CT.is_file()):
        why = "" if spec == "phantom" else f" ({DEFAULT_CT} is absent)"
        return None, f"the thorax phantom{why}, breathing 15 mm, over a 336 mm box at every size"
    path = DEFAULT_CT if spec == "auto" else Path(spec)
    if not path.is_file():
        raise InputError(f"--pair-source: {path} is not a file")
    return ct_source(path), f"real CT {path.name} resampled to each size, warped by a known smooth 8 mm field"
