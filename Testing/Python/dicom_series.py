"""Write a small DICOM series slice by slice (SimpleITK/GDCM), as a scanner export would lay it out."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_dicom_series(folder, arr: np.ndarray, spacing, origin, modality: str = "CT") -> Path:
    """``arr[i, j, k]`` as axial slices k along +z (LPS), identity directions, one file per slice."""
    import SimpleITK as sitk

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(arr.shape[2]):
        sl = sitk.GetImageFromArray(np.ascontiguousarray(arr[:, :, k].T[None]))  # (1, j, i): one slice
        sl.SetSpacing(tuple(float(s) for s in spacing))
        pos = (origin[0], origin[1], origin[2] + k * spacing[2])
        sl.SetOrigin(pos)
        for tag, value in {
            "0020|000e": "1.2.826.0.1.3680043.2.1125.1.1",  # series UID
            "0020|0032": "\\".join(f"{p:.4f}" for p in pos),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0020|0013": str(k + 1),
            "0028|0030": f"{spacing[1]}\\{spacing[0]}",
            "0018|0050": str(spacing[2]),
            "0008|0060": modality,
        }.items():
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(sl)
    return folder
