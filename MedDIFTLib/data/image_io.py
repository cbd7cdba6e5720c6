"""Read and write volumes (NIfTI, NRRD, MHA/MHD, DICOM series) through SimpleITK.

This is the only place where ITK's LPS physical space meets MedDIFT's RAS
world: a file's direction matrix and spacing come in exactly (oblique and
anisotropic included) and go out exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import ImageReadError, InputError, OutputWriteError
from .geometry import Volume, ijk_to_ras_from_itk, itk_from_ijk_to_ras

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


def read_volume(path, name: str | None = None) -> Volume:
    """Read a 3D scalar volume; a folder is read as one DICOM series.

    The voxel array comes back indexed ``[i, j, k]`` with its IJK-to-RAS matrix.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file or folder")
    try:
        img = _read_itk(path)
    except ImageReadError:
        raise
    except Exception as exc:  # SimpleITK raises RuntimeError with ITK's text
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImageReadError(f"{path}: cannot read image ({first})") from exc
    dim = img.GetDimension()
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(
            f"{path}: has {img.GetNumberOfComponentsPerPixel()} components per voxel; a scalar CT volume is needed"
        )
    if dim == 4:
        raise ImageReadError(f"{path}: is a 4D image of size {img.GetSize()}; pick one 3D phase (for example with Slicer's Sequences)")
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
    return Volume(array, matrix, name or _stem(path), meta)


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
    return Volume(np.ascontiguousarray(array), ijk_to_ras_from_itk(img.GetSpacing(), img.GetOrigin(), img.GetDirection()), name)


def write_volume(volume: Volume, path, compress: bool = True) -> Path:
    """Write atomically: a temporary file beside the target, renamed into place.

    A crash or a full disk leaves either the old file or the complete new one.
    """
    import SimpleITK as sitk

    path = Path(path)
    ext = _extension(path)
    if ext not in WRITE_EXTENSIONS:
        raise InputError(f"{path}: cannot write images with extension {ext!r}; use one of {', '.join(WRITE_EXTENSIONS)}")
    if ext in (".mhd", ".nhdr"):
        # header + data file pairs cannot be renamed as one; write directly
        sitk.WriteImage(to_sitk(volume), str(path), compress)
        return path
    try:
        with atomic_path(path, suffix=ext) as tmp:
            sitk.WriteImage(to_sitk(volume), tmp, compress)
    except (RuntimeError, OSError) as err:  # ITK reports a full disk as a RuntimeError
        detail = str(err).strip().splitlines()
        raise OutputWriteError(f"cannot write {path}: {detail[-1] if detail else type(err).__name__} "
                               "(is the disk full?); nothing was changed there") from err
    return path
