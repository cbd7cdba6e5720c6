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
import torch
import torch.nn.functional as F

from ..atomic import atomic_path
from ..data.geometry import Grid, Volume, apply_affine, as_points, flip_lps_ras, itk_from_ijk_to_ras
from ..errors import InputError, OutputWriteError
from .descriptors import AxisGrid
from .jacobian import body_mask, field_of_view, jacobian_determinant, regularity

FIELD_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha", ".h5")
NIFTI_GZIP_LEVEL = 1


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
        pts = as_points(ras)
        return trilinear(self.u, (pts - self.grid.origin) / self.grid.spacing)

    def map_points(self, ras) -> np.ndarray:
        """Fixed RAS points to moving RAS points."""
        pts = as_points(ras)
        return apply_affine(self.prealign, pts + self.displacement_at(pts))

    def inverse_points(self, ras, iterations: int = 50, tol_mm: float = 1e-4, start=None) -> np.ndarray:
        """Moving RAS points to fixed RAS points: solve ``x = A^-1 y - u(x)`` by fixed-point
        iteration (a contraction where the field does not fold, |Du| < 1), from ``start`` (fixed RAS
        points; default ``A^-1 y``) until no point moves by ``tol_mm``."""
        target = apply_affine(np.linalg.inv(self.prealign), as_points(ras))
        x = target.copy() if start is None else np.array(start, dtype=np.float64)
        for _ in range(iterations):
            nx = target - self.displacement_at(x)
            done = np.max(np.abs(nx - x)) < tol_mm if len(x) else True
            x = nx
            if done:
                break
        return x

    def inverse_on_grid(self, iterations: int = 50, tol_mm: float = 1e-4) -> np.ndarray:
        """``v`` on the field's own grid with ``(x -> x + u(x))^-1 (z) = z + v(z)``: ``v = -u(z + v)`` by
        fixed-point iteration on the coarse grid, a start for :meth:`inverse_points` at every voxel
        of a scan that is already within the interpolation error of the answer."""
        z = self.grid.points().reshape(-1, 3)
        v = -self.u.reshape(-1, 3)
        for _ in range(iterations):
            nv = -self.displacement_at(z + v)
            done = np.max(np.abs(nv - v)) < tol_mm if len(v) else True
            v = nv
            if done:
                break
        return v.reshape(self.u.shape)

    # --- quality -------------------------------------------------------------

    def jacobian(self) -> np.ndarray:
        """det(D phi) at every sample: det(A) * det(I + Du), central differences in mm."""
        return jacobian_determinant(self.u, self.grid.spacing, self.prealign[:3, :3])

    def jacobian_stats(self, fixed: Volume | None = None) -> dict:
        """Folding (share and percent of voxels with det(D phi) <= 0), the standard deviation of the
        log-Jacobian and det's range; with the fixed scan: over its field of view, and the same over its
        body under keys ``body_...`` (see :mod:`.jacobian`); without it: over the whole field grid.

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
        if fixed is not None:  # flat keys: the report's figures compare as plain numbers
            body = regularity(det, body_mask(fixed, self.grid.points()))
            stats.update({f"body_{k}": v for k, v in body.items()})
        return stats

    # --- images on a scan's grid ---------------------------------------------

    def displacement_on(self, grid: Grid) -> np.ndarray:
        """``phi(x) - x`` (RAS mm) at every voxel centre of ``grid``: (I, J, K, 3)."""
        out = np.empty(tuple(grid.shape) + (3,))
        for sl, ras in voxel_slabs(grid):
            p = ras.reshape(-1, 3)
            out[sl] = (self.map_points(p) - p).reshape(ras.shape)
        return out

    def inverse_displacement_on(self, grid: Grid) -> np.ndarray:
        """``phi^-1(y) - y`` (RAS mm) at every voxel centre of ``grid`` (the moving scan's): the inverse
        solved on the field's coarse grid (:meth:`inverse_on_grid`), interpolated, then iterated at each
        voxel to the same tolerance as :meth:`inverse_points` alone (a few iterations instead of many)."""
        v, back = self.inverse_on_grid(), np.linalg.inv(self.prealign)
        out = np.empty(tuple(grid.shape) + (3,))
        for sl, ras in voxel_slabs(grid):
            y = ras.reshape(-1, 3)
            z = apply_affine(back, y)
            start = z + trilinear(v, (z - self.grid.origin) / self.grid.spacing)
            out[sl] = (self.inverse_points(y, start=start) - y).reshape(ras.shape)
        return out

    def resample_moving(
        self, moving: Volume, grid: Grid, fill_value: float = -1024.0, displacement: np.ndarray | None = None
    ) -> Volume:
        """The moving scan on ``grid`` (the fixed scan's): voxel ``x`` takes the moving value at ``phi(x)``
        (trilinear; ``fill_value`` outside the moving scan's voxel centres).

        Args:
            moving: the moving scan.
            grid: where to resample (the fixed scan's grid).
            fill_value: the value where ``phi(x)`` falls outside the moving scan.
            displacement: :meth:`displacement_on` of ``grid`` when already computed (it is not again).
        """
        image = torch.from_numpy(np.asarray(moving.array, dtype=np.float64))[None, None]
        out = np.empty(tuple(grid.shape), dtype=np.float32)
        for sl, ras in voxel_slabs(grid):
            p = ras.reshape(-1, 3)
            d = self.map_points(p) - p if displacement is None else displacement[sl].reshape(-1, 3)
            src = apply_affine(moving.ras_to_ijk, p + d)
            out[sl] = sample_inside(image, src, fill_value).reshape(ras.shape[:3])
        return Volume(
            out, np.asarray(grid.ijk_to_ras).copy(), f"{moving.name or 'moving'} registered", dict(moving.metadata)
        )


def voxel_slabs(grid: Grid, voxels: int = 1 << 20):
    """(slice of i, RAS voxel centres (n, J, K, 3)) over ``grid``, whole i-slices of about ``voxels`` at a
    time: a full scan's points (and their copies) never held at once."""
    m = np.asarray(grid.ijk_to_ras, dtype=np.float64)
    ni, nj, nk = (int(n) for n in grid.shape)
    step = max(1, voxels // max(1, nj * nk))
    jk = m[:3, 1] * np.arange(nj)[:, None, None] + m[:3, 2] * np.arange(nk)[None, :, None] + m[:3, 3]
    for i0 in range(0, ni, step):
        i = np.arange(i0, min(ni, i0 + step), dtype=np.float64)
        yield slice(i0, i0 + len(i)), i[:, None, None, None] * m[:3, 0] + jk[None]


def trilinear(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``values`` (X, Y, Z, C) at continuous indices (N, 3), trilinear, clamped to the grid (edge values
    beyond): (N, C) in ``values``' precision (one ``grid_sample``: no copy of ``values``)."""
    size = np.asarray(values.shape[:3], dtype=np.float64)
    norm = 2.0 * np.asarray(idx, dtype=np.float64) / np.maximum(size - 1.0, 1.0) - 1.0
    src = torch.from_numpy(values).permute(3, 0, 1, 2)[None]
    g = torch.from_numpy(np.ascontiguousarray(norm[:, ::-1])).to(src.dtype).view(1, -1, 1, 1, 3)
    out = F.grid_sample(src, g, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0, :, :, 0, 0].T.numpy()


def sample_inside(image: torch.Tensor, ijk: np.ndarray, fill_value: float) -> np.ndarray:
    """A (1, 1, I, J, K) image at continuous voxel indices (N, 3), trilinear; ``fill_value`` beyond its
    first and last voxel centres (``scipy.ndimage.map_coordinates``' ``mode="constant"``)."""
    size = np.asarray(image.shape[2:], dtype=np.float64)
    norm = 2.0 * ijk / np.maximum(size - 1.0, 1.0) - 1.0
    g = torch.from_numpy(np.ascontiguousarray(norm[:, ::-1])).to(image.dtype).view(1, -1, 1, 1, 3)
    sampled = F.grid_sample(image, g, mode="bilinear", padding_mode="border", align_corners=True)[0, 0, :, 0, 0]
    vals = sampled.numpy().astype(np.float32)
    vals[np.any((ijk < 0.0) | (ijk > size - 1.0), axis=1)] = fill_value
    return vals


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


def _write_nifti_displacement(displacement_ras: np.ndarray, geometry: tuple, path, compress: bool) -> None:
    """NIfTI's own displacement convention: intent code 1006 (``NIFTI_INTENT_DISPVECT``) with RAS
    vectors, which ITK (SimpleITK, Slicer, ANTs) reads back as LPS; a plain vector image (intent 1007,
    SimpleITK's default) makes Slicer warn and guess. SimpleITK cannot write that intent for a vector
    image, so the RAS vectors are written and the header's ``intent_code`` (bytes 68-69) is set.
    ``geometry``: ITK's (spacing, origin, direction) of the grid.

    The vectors are stored as float32 (as ANTs writes its fields): a float64 field of a full CT is
    hundreds of megabytes whose low mantissa bits do not compress, and float32 keeps a displacement
    to 6e-8 of itself (under a micrometre for any anatomy). Gzip at ``NIFTI_GZIP_LEVEL``: higher
    levels cost several times the time for a few per cent of size on such data."""
    import gzip

    import SimpleITK as sitk

    vectors = np.ascontiguousarray(displacement_ras.transpose(2, 1, 0, 3), dtype=np.float32)
    ras = sitk.GetImageFromArray(vectors, isVector=True)
    del vectors
    spacing, origin, direction = geometry
    ras.SetSpacing(spacing)
    ras.SetOrigin(origin)
    ras.SetDirection(direction)
    raw = Path(f"{path}.uncompressed.nii")  # beside the atomic temporary file, removed below
    try:
        sitk.WriteImage(ras, str(raw), False)
        del ras
        data = bytearray(raw.read_bytes())
    finally:
        raw.unlink(missing_ok=True)
    data[68:70] = (1006).to_bytes(2, "little" if data[:4] == (348).to_bytes(4, "little") else "big")
    Path(path).write_bytes(gzip.compress(data, NIFTI_GZIP_LEVEL) if compress else data)


def write_field(displacement_ras: np.ndarray, grid: Grid, path, force: bool = True) -> Path:
    """Write atomically as an ITK displacement field image, or as an ITK transform file (``.h5``);
    ``force=False``: only if the name is still free (see :mod:`MedDIFTLib.atomic`)."""
    if _extension(Path(path)) in (".nii", ".nii.gz"):  # RAS vectors as they are: no LPS image in between
        geometry = itk_from_ijk_to_ras(grid.ijk_to_ras)
        return _write_atomic(
            path, force, lambda tmp, ext: _write_nifti_displacement(displacement_ras, geometry, tmp, ext == ".nii.gz")
        )
    return write_field_image(field_image(displacement_ras, grid), path, force)


def write_field_image(img, path, force: bool = True) -> Path:
    """Write a SimpleITK displacement field image as :func:`write_field` does (its one writer: a field
    downloaded from a server goes through here too)."""
    import SimpleITK as sitk

    def write(tmp, ext: str) -> None:
        if ext == ".h5":
            sitk.WriteTransform(sitk.DisplacementFieldTransform(img), tmp)
        elif ext in (".nii", ".nii.gz"):  # the image's LPS vectors back to RAS, on the (i, j, k) axes
            displacement_ras = flip_lps_ras(sitk.GetArrayFromImage(img)).transpose(2, 1, 0, 3)
            geometry = (img.GetSpacing(), img.GetOrigin(), img.GetDirection())
            _write_nifti_displacement(displacement_ras, geometry, tmp, ext == ".nii.gz")
        else:
            sitk.WriteImage(img, tmp, True)

    return _write_atomic(path, force, write)


def _write_atomic(path, force: bool, write) -> Path:
    """``write(temporary path, extension)`` for a field file put in place whole (or not at all), the name
    checked first."""
    path = Path(path)
    ext = _extension(path)
    if ext not in FIELD_EXTENSIONS:
        raise InputError(
            f"{path}: a displacement field is written as {', '.join(FIELD_EXTENSIONS)}; "
            f"not {ext or 'a file without extension'}"
        )
    try:
        with atomic_path(path, suffix=ext, force=force) as tmp:
            write(tmp, ext)
    except (RuntimeError, OSError) as err:
        detail = str(err).strip().splitlines()
        raise OutputWriteError(
            f"cannot write {path}: {detail[-1] if detail else type(err).__name__}; nothing was changed there"
        ) from err
    return path
