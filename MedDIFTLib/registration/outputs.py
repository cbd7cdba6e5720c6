"""What ``meddift register`` leaves in its output folder, written atomically, file by file.

* ``field.nii.gz``: the ITK displacement field on the fixed grid (fixed -> moving
  points; ``SimpleITK.DisplacementFieldTransform`` applies it to points, Slicer
  loads it as a transform that lays the moving scan over the fixed one);
* ``inverse_field.nii.gz``: the same on the moving grid, moving -> fixed points;
* ``moving_resampled.nii.gz``: the moving scan warped onto the fixed grid;
* ``registration.json``: how it was found (pre-alignment, grid, timings) and the
  Jacobian statistics of the map (share of folding voxels, min, max);
* ``registration.png``: checkerboard and difference images before and after, on
  the middle coronal and axial slices of the fixed scan (needs matplotlib).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import write_text_atomic
from ..data.geometry import Volume, resample
from ..data.image_io import write_volume
from .field import DenseField, write_field

OUTPUT_NAMES = ("field", "inverse_field", "moving_resampled", "registration.json", "registration.png")


def output_paths(out_dir, field_ext: str = ".nii.gz") -> dict:
    out = Path(out_dir)
    return {"field": out / f"field{field_ext}", "inverse_field": out / f"inverse_field{field_ext}",
            "moving_resampled": out / "moving_resampled.nii.gz", "report": out / "registration.json",
            "figure": out / "registration.png"}


def write_outputs(field: DenseField, fixed: Volume, moving: Volume, out_dir, field_ext: str = ".nii.gz",
                  figure: bool = True, force: bool = False) -> dict:
    """Write every output (replacing existing ones only with ``force``); returns {what: path} and the
    report dict under ``"report_data"``."""
    paths = output_paths(out_dir, field_ext)
    write_field(field.displacement_on(fixed.grid), fixed.grid, paths["field"], force=force)
    write_field(field.inverse_displacement_on(moving.grid), moving.grid, paths["inverse_field"], force=force)
    warped = field.resample_moving(moving, fixed.grid)
    write_volume(warped, paths["moving_resampled"], force=force)
    report = {"fixed": fixed.name, "moving": moving.name, "prealign_ras": np.round(field.prealign, 6).tolist(),
              "jacobian": field.jacobian_stats(),
              **{k: v for k, v in field.info.items() if k != "options"}, "options": field.info.get("options")}
    write_text_atomic(paths["report"], json.dumps(report, indent=2, default=float) + "\n", force=force)
    written = {k: paths[k] for k in ("field", "inverse_field", "moving_resampled", "report")}
    if figure and _figure(fixed, moving, warped, paths["figure"], force):
        written["figure"] = paths["figure"]
    written["report_data"] = report
    return written


def _checker(a: np.ndarray, b: np.ndarray, tiles: int = 8) -> np.ndarray:
    yy, xx = np.indices(a.shape)
    mask = ((yy * tiles // a.shape[0]) + (xx * tiles // a.shape[1])) % 2 == 0
    return np.where(mask, a, b)


def _figure(fixed: Volume, moving: Volume, warped: Volume, path: Path, force: bool = False) -> bool:
    """Checkerboards and differences before/after; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from ..atomic import atomic_path

    before = resample(moving, fixed.grid, order=1, fill_value=-1024.0).array
    f, w = np.asarray(fixed.array, dtype=np.float32), np.asarray(warped.array, dtype=np.float32)
    views = [("coronal", lambda v: np.rot90(v[:, v.shape[1] // 2, :])), ("axial", lambda v: np.rot90(v[:, :, v.shape[2] // 2]))]
    fig, axes = plt.subplots(len(views), 4, figsize=(14, 3.6 * len(views)))
    for row, (name, cut) in enumerate(views):
        fs, bs, ws = (np.clip(cut(x), -1000, 600) for x in (f, before, w))
        panels = [(_checker(fs, bs), f"{name}: checkerboard before", "gray"),
                  (_checker(fs, ws), f"{name}: checkerboard after", "gray"),
                  (np.abs(fs - bs), f"{name}: |difference| before", "magma"),
                  (np.abs(fs - ws), f"{name}: |difference| after", "magma")]
        for ax, (img, title, cmap) in zip(axes[row], panels):
            ax.imshow(img, cmap=cmap, vmin=0 if cmap == "magma" else -1000, vmax=800 if cmap == "magma" else 600)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    with atomic_path(path, suffix=".png", force=force) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return True
