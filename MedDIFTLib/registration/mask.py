"""Where a CT scan holds anatomy: the body, from the scan's own intensities in HU.

Air outside the patient and the table carry no anatomy: their descriptors are noise
(MIND-SSC normalises whatever variation there is) and the table does not move with the
patient. Registration weights its data term by this mask so that only the body pulls the
field; the field outside follows from the regulariser. The same mask, without the
largest-component step, places the warped real-CT suite's landmarks in the body.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from ..data.geometry import Volume

BODY_HU = -500.0  # halfway between air (-1000 HU) and fat (-100 HU): tissue of any kind is above it
MASK_VOXELS = 4_000_000  # body_weights masks larger scans on every n-th voxel
SKIN_MARGIN_MM = 5.0  # the body's outline is itself a feature: keep a few millimetres of air around it


def body_mask(
    volume: Volume, threshold_hu: float = BODY_HU, largest: bool = False, margin_mm: float = 0.0
) -> np.ndarray:
    """Inside the body: above ``threshold_hu``, enclosed air (lungs, bowel gas) filled slice by slice.

    Args:
        volume: a CT scan in HU.
        threshold_hu: tissue is above it.
        largest: keep only the largest connected part (drops the table and other objects apart from
            the patient) and fill each slice with its convex hull, not only its holes (lungs that reach
            the edge of a cropped field of view are not enclosed).
        margin_mm: grow the mask by this distance (mm, the scan's own voxel sizes) after filling.

    Returns:
        A boolean array of the volume's shape. A scan that is not in HU (no voxel below the
        threshold, as in MR) comes back all inside: nothing is excluded on a guess.
    """
    m = np.asarray(volume.array) > threshold_hu
    if m.all() or not m.any():
        return np.ones(m.shape, dtype=bool)
    if largest:
        labels, n = ndimage.label(m)
        if n > 1:
            sizes = np.bincount(labels.ravel())
            sizes[0] = 0
            m = labels == int(np.argmax(sizes))
    axis = int(np.argmax(np.abs(volume.ijk_to_ras[2, :3]) / volume.spacing))  # the voxel axis closest to S
    m = np.moveaxis(m, axis, -1)
    for k in range(m.shape[-1]):
        m[..., k] = _convex_fill(m[..., k]) if largest else ndimage.binary_fill_holes(m[..., k])
    m = np.moveaxis(m, -1, axis)
    if margin_mm > 0:
        m = ndimage.distance_transform_edt(~m, sampling=volume.spacing) <= margin_mm
    return m


def _convex_fill(m: np.ndarray) -> np.ndarray:
    """A slice's mask and its convex hull. Filling holes is not enough for registration: in a crop
    whose lungs reach the edge of the field of view, the lungs are not enclosed, and they are anatomy."""
    pts = np.argwhere(m)
    if len(pts) < 3:
        return m
    try:
        eq = ConvexHull(pts).equations  # (facets, 3): inside where a . p + b <= 0 for every facet
    except QhullError:  # all points on a line: no area to fill
        return m
    ii, jj = np.indices(m.shape)
    grid = np.stack([ii.ravel(), jj.ravel()], 1).astype(np.float64)
    inside = np.all(grid @ eq[:, :2].T + eq[:, 2] <= 1e-9, axis=1).reshape(m.shape)
    return m | inside


def body_weights(volume: Volume) -> Volume:
    """The registration's data-term weights on the fixed scan's grid: the body (largest part) and
    :data:`SKIN_MARGIN_MM` around it, as a float volume of 0 and 1.

    The registration reads these weights on its own grid, which holds at most a few million voxels, so a
    larger scan is masked on every n-th voxel (at most :data:`MASK_VOXELS`): the labelling and the
    distance transform then cost the same on a 512^3 scan as on a small one.

    Args:
        volume: the fixed CT scan in HU.
    """
    stride = max(1, int(np.ceil(np.cbrt(np.prod(volume.shape) / MASK_VOXELS))))
    if stride > 1:  # every stride-th voxel, its matrix scaled to match: bounded time and memory
        ijk_to_ras = volume.ijk_to_ras.copy()
        ijk_to_ras[:3, :3] *= stride
        volume = Volume(np.asarray(volume.array)[::stride, ::stride, ::stride], ijk_to_ras, volume.name)
    m = body_mask(volume, largest=True, margin_mm=SKIN_MARGIN_MM)
    return volume.with_array(m.astype(np.float32), f"{volume.name or 'scan'} body")


__all__ = ["BODY_HU", "SKIN_MARGIN_MM", "body_mask", "body_weights"]
