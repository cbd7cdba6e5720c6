"""What ``meddift register`` leaves in its output folder: one set, whole or absent.

* ``field.nii.gz``: the ITK displacement field on the fixed grid (fixed -> moving
  points; ``SimpleITK.DisplacementFieldTransform`` applies it to points, Slicer
  loads it as a transform that lays the moving scan over the fixed one);
* ``inverse_field.nii.gz``: the same on the moving grid, moving -> fixed points;
* ``moving_resampled.nii.gz``: the moving scan warped onto the fixed grid;
* ``registration.json``: how it was found (pre-alignment, its overlap, grid, timings),
  the warnings, and the regularity of the map over the fixed scan's field of view and over its
  body: folding (share and percent of voxels with det(D phi) <= 0), the standard deviation of
  the log-Jacobian, det's min, max and mean (:mod:`.jacobian`);
* ``registration.png``: checkerboard and difference images before and after, on
  the middle coronal and axial slices of the fixed scan (needs matplotlib).

The files are built aside and put in place together (:class:`~MedDIFTLib.outputs.OutputSet`):
an interrupted run leaves the earlier complete set, never a new field beside an old inverse.
This module is the one owner of the report; the worker's ``register`` writes through it too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..data.geometry import Volume
from ..data.image_io import write_volume
from ..outputs import OutputSet
from .field import FIELD_EXTENSIONS, DenseField, sample_inside, write_field

OUTPUT_NAMES = ("field", "inverse_field", "moving_resampled", "registration.json", "registration.png")


def output_paths(out_dir, field_ext: str = ".nii.gz") -> dict:
    out = Path(out_dir)
    return {
        "field": out / f"field{field_ext}",
        "inverse_field": out / f"inverse_field{field_ext}",
        "moving_resampled": out / "moving_resampled.nii.gz",
        "report": out / "registration.json",
        "figure": out / "registration.png",
    }


def registration_report(field: DenseField, fixed: Volume, moving: Volume) -> dict:
    """The report of a registration (``registration.json``, the worker's ``report``): how the map was
    found, the evidence that it means something (pre-alignment overlap), warnings, Jacobian statistics."""
    return {
        "fixed": fixed.name,
        "moving": moving.name,
        "prealign_ras": np.round(field.prealign, 6).tolist(),
        "jacobian": field.jacobian_stats(fixed),
        "warnings": list(field.info.get("warnings", [])),
        **{k: v for k, v in field.info.items() if k not in ("options", "warnings")},
        "options": field.info.get("options"),
    }


def volume_inputs(*volumes: Volume) -> dict:
    """The files the volumes were read from, named for messages (no output may be one of them)."""
    return {
        f"the input volume {v.name or i}": v.metadata.get("path")
        for i, v in enumerate(volumes)
        if v.metadata.get("path")
    }


def write_set(
    field: DenseField,
    fixed: Volume,
    moving: Volume,
    targets: dict,
    inputs: dict | None = None,
    force: bool = False,
    labels: dict | None = None,
    members: tuple = (),
) -> dict:
    """Write the outputs named in ``targets`` as one set (see the module's docstring).

    Args:
        field: the registration.
        fixed: the fixed scan.
        moving: the moving scan.
        targets: what -> path, for any of ``field``, ``inverse_field``, ``moving_resampled``, ``report``,
            ``figure`` (None: not written).
        inputs: name -> path of the job's inputs; the volumes' own files are added.
        force: replace an existing set; without it every target must be free.
        labels: what -> the name the user gave it, for messages (``'out'``, ``--out field.nii.gz``).
        members: paths of an earlier set this one replaces as a whole (an old figure not drawn now).
    Returns: what -> path of each file written, and the report under ``"report_data"``.
    """
    targets = {k: Path(v) for k, v in targets.items() if v}
    inputs = {**volume_inputs(fixed, moving), **(inputs or {})}
    report = registration_report(field, fixed, moving)
    with OutputSet(targets, inputs, force, members, labels) as out:
        disp = field.displacement_on(fixed.grid)  # once: for the field file and the warped scan
        warped = field.resample_moving(moving, fixed.grid, displacement=disp)
        if "field" in targets:
            write_field(disp, fixed.grid, out.path("field"))
        del disp
        if "inverse_field" in targets:
            write_field(field.inverse_displacement_on(moving.grid), moving.grid, out.path("inverse_field"))
        if "moving_resampled" in targets:
            write_volume(warped, out.path("moving_resampled"))
        if "report" in targets:
            out.path("report").write_text(json.dumps(report, indent=2, default=float) + "\n", encoding="utf-8")
        if "figure" in targets:
            _figure(fixed, moving, warped, out.path("figure"), force=True)
        written = dict(out.commit())
    written["report_data"] = report
    return written


def write_outputs(
    field: DenseField,
    fixed: Volume,
    moving: Volume,
    out_dir,
    field_ext: str = ".nii.gz",
    figure: bool = True,
    force: bool = False,
) -> dict:
    """Write ``meddift register``'s set into ``out_dir`` (replacing an earlier set only with ``force``);
    returns {what: path} and the report dict under ``"report_data"``."""
    targets, members, labels = output_set(out_dir, field_ext, figure)
    return write_set(field, fixed, moving, targets, force=force, labels=labels, members=members)


def output_set(out_dir, field_ext: str = ".nii.gz", figure: bool = True) -> tuple[dict, tuple, dict]:
    """``meddift register``'s set in ``out_dir`` as :class:`~MedDIFTLib.outputs.OutputSet` takes it:
    (targets, members, labels); a run on a server places its downloads by the same rule."""
    paths = output_paths(out_dir, field_ext)
    targets = {k: p for k, p in paths.items() if k != "figure" or figure}
    # an earlier set's files this one does not write (another field format, a figure) go with it
    others = [p for ext in FIELD_EXTENSIONS if ext != field_ext for p in output_paths(out_dir, ext).values()]
    members = tuple(dict.fromkeys(others + ([] if figure else [paths["figure"]])))
    labels = {k: f"--out {p.name}" for k, p in paths.items()}
    return targets, members, labels


def _checker(a: np.ndarray, b: np.ndarray, tiles: int = 8) -> np.ndarray:
    yy, xx = np.indices(a.shape)
    mask = ((yy * tiles // a.shape[0]) + (xx * tiles // a.shape[1])) % 2 == 0
    return np.where(mask, a, b)


def _mid_slices(volume_like: np.ndarray) -> dict:
    """The middle coronal and axial slices of an (I, J, K) array, turned for display."""
    v = volume_like
    return {"coronal": np.rot90(v[:, v.shape[1] // 2, :]), "axial": np.rot90(v[:, :, v.shape[2] // 2])}


def _moving_on_fixed_slices(fixed: Volume, moving: Volume, fill_value: float = -1024.0) -> dict:
    """The moving scan without registration (same world point) on the fixed scan's two middle slices:
    only those voxels are sampled, not the whole volume."""
    ni, nj, nk = fixed.shape
    cuts = {
        "coronal": np.stack(np.meshgrid(np.arange(ni), [nj // 2], np.arange(nk), indexing="ij"), -1)[:, 0],
        "axial": np.stack(np.meshgrid(np.arange(ni), np.arange(nj), [nk // 2], indexing="ij"), -1)[:, :, 0],
    }
    image = torch.from_numpy(np.asarray(moving.array, dtype=np.float64))[None, None]
    out = {}
    for name, ijk in cuts.items():
        src = moving.world_to_ijk(fixed.ijk_to_world(ijk.reshape(-1, 3)))
        out[name] = np.rot90(sample_inside(image, src, fill_value).reshape(ijk.shape[:2]))
    return out


def _figure(fixed: Volume, moving: Volume, warped: Volume, path: Path, force: bool = False) -> bool:
    """Checkerboards and differences before/after on the middle slices; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from ..atomic import atomic_path

    before = _moving_on_fixed_slices(fixed, moving)
    f, w = _mid_slices(np.asarray(fixed.array)), _mid_slices(np.asarray(warped.array))
    fig, axes = plt.subplots(len(before), 4, figsize=(14, 3.6 * len(before)))
    for row, name in enumerate(before):
        fs, bs, ws = (np.clip(np.asarray(x[name], dtype=np.float32), -1000, 600) for x in (f, before, w))
        panels = [
            (_checker(fs, bs), f"{name}: checkerboard before", "gray"),
            (_checker(fs, ws), f"{name}: checkerboard after", "gray"),
            (np.abs(fs - bs), f"{name}: |difference| before", "magma"),
            (np.abs(fs - ws), f"{name}: |difference| after", "magma"),
        ]
        for ax, (img, title, cmap) in zip(axes[row], panels):
            ax.imshow(img, cmap=cmap, vmin=0 if cmap == "magma" else -1000, vmax=800 if cmap == "magma" else 600)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    with atomic_path(path, suffix=".png", force=force) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return True
