"""The registration result: a fixed -> moving map in RAS millimetres, and every way out of it.

``phi(x) = A (x + u(x))``: ``A`` is the pre-alignment (a 4x4 RAS matrix) and
``u`` a smooth displacement sampled on an axis-aligned grid over the fixed
scan (trilinear between samples, held constant beyond them). ``phi`` maps a
point of the fixed scan to the same anatomy in the moving scan: the ITK
*resampling* convention, which is what ``SimpleITK.DisplacementFieldTransform``
applies to points and what Slicer reads from a transform file as its
"from parent" transform (so a transform node made from it, applied to the
moving volume, lays that volume over the fixed one).

Files are ITK displacement fields: a 3-component vector image on the fixed
scan's own grid (any orientation) whose vectors are ``phi(x) - x`` in LPS
millimetres, ITK's physical space; the flip from RAS happens in
:func:`field_image` and nowhere else (a NIfTI file stores RAS vectors under
intent 1006, NIfTI's convention, which ITK turns into LPS as it reads).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..data.geometry import Grid, Volume, apply_affine, as_points, flip_lps_ras, itk_from_ijk_to_ras
from ..errors import InputError, OutputWriteError
from .descriptors import AxisGrid
from .jacobian import body_mask, field_of_view, jacobian_determinant, regularity

FIELD_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha", ".h5")


@dataclass
class DenseField:
    """``phi(x) = prealign @ (x + u(x))`` with ``u`` (X, Y, Z, 3) in RAS mm on ``grid``."""

    prealign: np.ndarray
    grid: AxisGrid
    u: np.ndarray
    info: dict = field(default_factory=dict)

    # --- points ------------------------------------------------------------

    def displacement_at(self, ras) -> np.ndarray:
        """``u`` at world points (N, 3): trilinear inside the sample grid, edge values beyond."""
        from scipy import ndimage

        pts = as_points(ras)
        idx = (pts - self.grid.origin) / self.grid.spacing
        idx = np.clip(idx, 0.0, np.asarray(self.grid.shape) - 1.0)
        return np.stack([ndimage.map_coordinates(self.u[..., c], idx.T, order=1, mode="nearest") for c in range(3)], 1)

    def map_points(self, ras) -> np.ndarray:
        """Fixed RAS points to moving RAS points."""
        pts = as_points(ras)
        return apply_affine(self.prealign, pts + self.displacement_at(pts))

    def inverse_points(self, ras, iterations: int = 50, tol_mm: float = 1e-4) -> np.ndarray:
        """Moving RAS points to fixed RAS points: solve ``x = A^-1 y - u(x)`` by fixed-point
        iteration (a contraction where the field does not fold, |Du| < 1)."""
        target = apply_affine(np.linalg.inv(self.prealign), as_points(ras))
        x = target.copy()
        for _ in range(iterations):
            nx = target - self.displacement_at(x)
            done = np.max(np.abs(nx - x)) < tol_mm if len(x) else True
            x = nx
            if done:
                break
        return x

    # --- quality -------------------------------------------------------------

    def jacobian(self) -> np.ndarray:
        """det(D phi) at every sample: det(A) * det(I + Du), central differences in mm."""
        return jacobian_determinant(self.u, self.grid.spacing, self.prealign[:3, :3])

    def jacobian_stats(self, fixed: Volume | None = None) -> dict:
        """Folding (share and percent of voxels with det(D phi) <= 0), the standard deviation of the
        log-Jacobian and det's range; with the fixed scan: over its field of view, and under ``"body"``
        the same over its body (see :mod:`.jacobian`); without it: over the whole field grid.

        Args:
            fixed: the fixed scan the field was computed for (None: every sample counts).
        """
        det = self.jacobian()
        region = None if fixed is None else field_of_view(fixed, self.grid.points())
        d = det if region is None or not region.any() else det[region]
        stats = {
            **regularity(d),
            "jacobian_min": float(d.min()),
            "jacobian_max": float(d.max()),
            "jacobian_mean": float(d.mean()),
        }
        if fixed is not None:
            stats["body"] = regularity(det, body_mask(fixed, self.grid.points()))
        return stats

    # --- images on a scan's grid ---------------------------------------------

    def displacement_on(self, grid: Grid) -> np.ndarray:
        """``phi(x) - x`` (RAS mm) at every voxel centre of ``grid``: (I, J, K, 3)."""
        ras = grid.voxel_centres()
        out = np.empty_like(ras)
        for start in range(0, len(ras), 1 << 20):
            sl = slice(start, start + (1 << 20))
            out[sl] = self.map_points(ras[sl]) - ras[sl]
        return out.reshape(tuple(grid.shape) + (3,))

    def inverse_displacement_on(self, grid: Grid) -> np.ndarray:
        """``phi^-1(y) - y`` (RAS mm) at every voxel centre of ``grid`` (the moving scan's)."""
        ras = grid.voxel_centres()
        return (self.inverse_points(ras) - ras).reshape(tuple(grid.shape) + (3,))

    def resample_moving(self, moving: Volume, grid: Grid, fill_value: float = -1024.0) -> Volume:
        """The moving scan on ``grid`` (the fixed scan's): voxel ``x`` takes the moving value at ``phi(x)``."""
        from scipy import ndimage

        ras = grid.voxel_centres() + self.displacement_on(grid).reshape(-1, 3)
        src = apply_affine(moving.ras_to_ijk, ras)
        vals = ndimage.map_coordinates(
            np.asarray(moving.array, dtype=np.float32), src.T, order=1, mode="constant", cval=fill_value
        )
        return Volume(
            vals.reshape(grid.shape).astype(np.float32),
            np.asarray(grid.ijk_to_ras).copy(),
            f"{moving.name or 'moving'} registered",
            dict(moving.metadata),
        )


def field_image(displacement_ras: np.ndarray, grid: Grid):
    """A SimpleITK displacement-field image: LPS vectors on ``grid``'s exact LPS geometry."""
    import SimpleITK as sitk

    lps = flip_lps_ras(displacement_ras)
    img = sitk.GetImageFromArray(np.ascontiguousarray(lps.transpose(2, 1, 0, 3)), isVector=True)
    img = sitk.Cast(img, sitk.sitkVectorFloat64)
    spacing, origin, direction = itk_from_ijk_to_ras(grid.ijk_to_ras)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


def _extension(path: Path) -> str:
    name = path.name.lower()
    for ext in FIELD_EXTENSIONS:
        if name.endswith(ext):
            return ext
    return path.suffix.lower()


def _write_nifti_displacement(displacement_ras: np.ndarray, img, path, compress: bool) -> None:
    """NIfTI's own displacement convention: intent code 1006 (``NIFTI_INTENT_DISPVECT``) with RAS
    vectors, which ITK (SimpleITK, Slicer, ANTs) reads back as LPS; a plain vector image (intent 1007,
    SimpleITK's default) makes Slicer warn and guess. SimpleITK cannot write that intent for a vector
    image, so the RAS vectors are written and the header's ``intent_code`` (bytes 68-69) is set."""
    import gzip

    import SimpleITK as sitk

    ras = sitk.GetImageFromArray(np.ascontiguousarray(displacement_ras.transpose(2, 1, 0, 3)), isVector=True)
    ras = sitk.Cast(ras, sitk.sitkVectorFloat64)
    ras.CopyInformation(img)
    raw = Path(f"{path}.uncompressed.nii")  # beside the atomic temporary file, removed below
    try:
        sitk.WriteImage(ras, str(raw), False)
        data = bytearray(raw.read_bytes())
    finally:
        raw.unlink(missing_ok=True)
    data[68:70] = (1006).to_bytes(2, "little" if data[:4] == (348).to_bytes(4, "little") else "big")
    Path(path).write_bytes(gzip.compress(bytes(data), 6) if compress else bytes(data))


def write_field(displacement_ras: np.ndarray, grid: Grid, path, force: bool = True) -> Path:
    """Write atomically as an ITK displacement field image, or as an ITK transform file (``.h5``);
    ``force=False``: only if the name is still free (see :mod:`MedDIFTLib.atomic`)."""
    return write_field_image(field_image(displacement_ras, grid), path, force)


def write_field_image(img, path, force: bool = True) -> Path:
    """Write a SimpleITK displacement field image as :func:`write_field` does (its one writer: a field
    downloaded from a server goes through here too)."""
    import SimpleITK as sitk

    path = Path(path)
    ext = _extension(path)
    if ext not in FIELD_EXTENSIONS:
        raise InputError(
            f"{path}: a displacement field is written as {', '.join(FIELD_EXTENSIONS)}; "
            f"not {ext or 'a file without extension'}"
        )
    try:
        with atomic_path(path, suffix=ext, force=force) as tmp:
            if ext == ".h5":
                sitk.WriteTransform(sitk.DisplacementFieldTransform(img), tmp)
            elif ext in (".nii", ".nii.gz"):  # the image's LPS vectors back to RAS, on the (i, j, k) axes
                displacement_ras = flip_lps_ras(sitk.GetArrayFromImage(img)).transpose(2, 1, 0, 3)
                _write_nifti_displacement(displacement_ras, img, tmp, ext == ".nii.gz")
            else:
                sitk.WriteImage(img, tmp, True)
    except (RuntimeError, OSError) as err:
        detail = str(err).strip().splitlines()
        raise OutputWriteError(
            f"cannot write {path}: {detail[-1] if detail else type(err).__name__}; nothing was changed there"
        ) from err
    return path
