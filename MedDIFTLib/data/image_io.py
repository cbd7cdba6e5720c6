"""Read and write volumes (NIfTI, NRRD, MHA/MHD, DICOM series) through SimpleITK.

This is the only place where ITK's LPS physical space meets MedDIFT's RAS
world: a file's direction matrix and spacing come in exactly (oblique and
anisotropic included) and go out exactly.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, reason
from ..errors import ImageReadError, InputError, OutputWriteError
from .geometry import Volume, ijk_to_ras_from_itk, itk_from_ijk_to_ras
from .integrity import check_complete, itk_reason

WRITE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def _extension(path: Path) -> str:
    name = path.name.lower()
    for ext in (".nii.gz",):
        if name.endswith(ext):
            return ext
    return path.suffix.lower()


def _read_itk(path: Path):
    import SimpleITK as sitk

    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        series = reader.GetGDCMSeriesIDs(str(path))
        if not series:
            raise ImageReadError(f"{path}: folder holds no DICOM series")
        if len(series) > 1:
            raise ImageReadError(
                f"{path}: folder holds {len(series)} DICOM series ({', '.join(series[:5])}); "
                "put one series in a folder of its own"
            )
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
        reader.MetaDataDictionaryArrayUpdateOn()
        img = reader.Execute()
        if reader.HasMetaDataKey(0, MODALITY_TAG):
            img.SetMetaData(MODALITY_TAG, reader.GetMetaData(0, MODALITY_TAG))
        return img
    return sitk.ReadImage(str(path))


MODALITY_TAG = "0008|0060"  # DICOM Modality (CT, MR, ...), kept so the input checks can warn about non-CT


def _modality(img) -> str:
    return img.GetMetaData(MODALITY_TAG).strip() if img.HasMetaDataKey(MODALITY_TAG) else ""


def read_volume(path, name: str | None = None, hu_offset: float = 0.0) -> Volume:
    """Read a 3D scalar volume; a folder is read as one DICOM series.

    The voxel array comes back indexed ``[i, j, k]`` with its IJK-to-RAS matrix.
    A damaged file (compressed data that ends early, data shorter than its
    header says) is refused, never read in part. ``hu_offset`` is added to this
    scan's voxels (a CT stored without its rescale: -1024), see :func:`with_hu_offset`.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file or folder")
    if path.is_file():
        check_complete(path)
    try:
        img = _read_itk(path)
    except ImageReadError:
        raise
    except Exception as exc:  # SimpleITK raises RuntimeError with ITK's text and its source paths
        raise ImageReadError(f"{path}: cannot read image ({itk_reason(exc)})") from exc
    dim = img.GetDimension()
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(
            f"{path}: has {img.GetNumberOfComponentsPerPixel()} components per voxel; a scalar CT volume is needed"
        )
    if dim == 4:
        raise ImageReadError(
            f"{path}: is a 4D image of size {img.GetSize()}; pick one 3D phase (for example with Slicer's Sequences)"
        )
    if dim != 3:
        raise ImageReadError(f"{path}: is a {dim}D image of size {img.GetSize()}; a 3D volume is needed")
    import SimpleITK as sitk

    array = np.ascontiguousarray(sitk.GetArrayFromImage(img).transpose(2, 1, 0))
    if min(array.shape) < 2:
        raise ImageReadError(f"{path}: is a single slice (size {img.GetSize()}); a 3D volume is needed")
    matrix = ijk_to_ras_from_itk(img.GetSpacing(), img.GetOrigin(), img.GetDirection())
    meta = {"path": str(path)}
    if _modality(img):
        meta["modality"] = _modality(img)
    return with_hu_offset(Volume(array, matrix, name or _stem(path), meta), hu_offset)


def with_hu_offset(volume: Volume, hu_offset: float) -> Volume:
    """The scan with ``hu_offset`` added to every voxel (itself when 0). An intensity correction
    belongs to one scan: each is given its own, never one for both."""
    offset = float(hu_offset or 0.0)
    if not np.isfinite(offset):
        raise InputError(f"the HU offset of {volume.name or 'a volume'} must be a finite number, got {hu_offset}")
    if offset == 0.0:
        return volume
    meta = dict(volume.metadata, hu_offset=offset)
    return Volume(volume.array.astype(np.float32) + np.float32(offset), volume.ijk_to_ras, volume.name, meta)


def _stem(path: Path) -> str:
    name = path.name
    ext = _extension(path)
    return name[: -len(ext)] if ext and name.lower().endswith(ext) else name


def to_sitk(volume: Volume):
    """A SimpleITK image with the volume's voxels and exact LPS geometry."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(volume.array).transpose(2, 1, 0)))
    spacing, origin, direction = itk_from_ijk_to_ras(volume.ijk_to_ras)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


def from_sitk(img, name: str = "") -> Volume:
    """A Volume from a 3D SimpleITK image."""
    import SimpleITK as sitk

    if img.GetDimension() != 3:
        raise InputError(f"image {name!r} is {img.GetDimension()}D; a 3D volume is needed")
    array = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
    return Volume(
        np.ascontiguousarray(array), ijk_to_ras_from_itk(img.GetSpacing(), img.GetOrigin(), img.GetDirection()), name
    )


def check_image_path(path) -> Path:
    """Refuse, before any work, an image output whose extension cannot be written."""
    path = Path(path)
    if _extension(path) not in WRITE_EXTENSIONS:
        raise InputError(
            f"{path}: cannot write images with extension {_extension(path) or '(none)'!r}; use one of "
            f"{', '.join(WRITE_EXTENSIONS)}"
        )
    return path


def _write_pair(volume: Volume, path: Path, compress: bool, force: bool) -> Path:
    """A header + data file pair (.mhd/.nhdr) cannot be renamed as one file. It is written
    whole in a private folder beside the target, then the data file is moved into place and
    the header last: a crash leaves the old header (with its old data, unless that shared the
    new data file's name) or the complete new pair, never a new header without its data."""
    import shutil

    import SimpleITK as sitk

    if not force and path.exists():
        raise OutputWriteError(f"cannot write {path}: it exists; choose another name")
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        sitk.WriteImage(to_sitk(volume), str(work / path.name), compress)
        data = [f for f in work.iterdir() if f.name != path.name]
        if not force:
            taken = [path.parent / f.name for f in data if (path.parent / f.name).exists()]
            if taken:
                raise OutputWriteError(f"cannot write {path}: its data file {taken[0]} exists; choose another name")
        for f in data:
            os.replace(f, path.parent / f.name)
        os.replace(work / path.name, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def write_volume(volume: Volume, path, compress: bool = True, force: bool = True) -> Path:
    """Write atomically: a temporary file beside the target, renamed into place
    (``force=False``: only if the name is still free, see :mod:`MedDIFTLib.atomic`).

    A crash or a full disk leaves either the old file or the complete new one.
    """
    import SimpleITK as sitk

    path = Path(path)
    ext = _extension(check_image_path(path))
    try:
        if ext in (".mhd", ".nhdr"):
            return _write_pair(volume, path, compress, force)
        with atomic_path(path, suffix=ext, force=force) as tmp:
            sitk.WriteImage(to_sitk(volume), tmp, compress)
    except OutputWriteError:
        raise
    except OSError as err:
        raise OutputWriteError(f"cannot write {path}: {reason(err, path)}; nothing was changed there") from err
    except RuntimeError as err:  # ITK reports a full disk as a RuntimeError with its own text
        raise OutputWriteError(
            f"cannot write {path}: {itk_reason(err)} (is the disk full?); nothing was changed there"
        ) from err
    return path


# --- 4x4 matrix files --------------------------------------------------------------

ITK_TRANSFORM_MARKS = ("Transform:", "#Insight Transform File")
"""Text that only an ITK transform file holds (ITK's text format also ends in ``.txt``)."""


def is_itk_transform_text(path) -> bool:
    """Whether a ``.txt`` file is an ITK transform file rather than a plain matrix.

    Args:
        path: the text file.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return any(mark in text for mark in ITK_TRANSFORM_MARKS)


def read_matrix_file(path, what: str = "the matrix") -> np.ndarray:
    """A 4x4 matrix from a ``.npy`` file or a text file of four rows of four numbers (``numpy.savetxt``).

    Args:
        path: the file.
        what: the matrix in the caller's words, for the error ("the initial transform").

    Raises:
        InputError: the file is missing, unreadable as numbers, or not 4x4.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found")
    try:
        m = np.load(path) if path.suffix.lower() == ".npy" else np.loadtxt(path)
    except ValueError as err:
        raise InputError(f"{path}: not a 4x4 matrix ({err})") from err
    if np.shape(m) != (4, 4):
        raise InputError(f"{path}: {what} must be a 4x4 homogeneous RAS matrix, got shape {np.shape(m)}")
    return np.asarray(m, dtype=np.float64)
