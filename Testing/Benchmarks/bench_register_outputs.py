"""What ``meddift register`` costs after the registration, and how exactly a repositioning is recovered.

``--outputs``: a real CT of ``../shared`` resampled to the size of a full thorax CT (8 M voxels),
a moving scan on a turned and shifted (oblique) grid, and a smooth known field on the
registration grid (2 M samples, as ``register`` makes): the time of writing the whole output
set (field, inverse field, warped scan, report, figure), and with ``--compare DIR`` the largest
difference from a set written earlier (for example by another version of the code).

``--rigid``: the phantom turned by 8 degrees and shifted by 30 mm (exactly rigid: no breathing),
registered by ``register_volumes``: the error of the pre-alignment (angle of R_est^T R_true,
distance at the scan centre), the dense map's landmark error, and the time.

Run from the repository root (``PYTHONPATH=$PWD``); both modes use only functions that earlier
versions have too, so the same script measures the code before and after a change.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def outputs(out: Path, compare: Path | None, spacing: float) -> None:
    from MedDIFTLib.data.geometry import Grid, Volume, make_ijk_to_ras, resample
    from MedDIFTLib.data.image_io import read_volume
    from MedDIFTLib.registration.descriptors import covering_axis_grid
    from MedDIFTLib.registration.field import DenseField
    from MedDIFTLib.registration.outputs import write_outputs

    ct = read_volume(Path("../shared/data/ct/totalsegmentator/abdomen_3mm.nii.gz"))
    lo, hi = ct.grid.bounds_ras()
    g = Grid(tuple(int(v) for v in np.floor((hi - lo) / spacing)), make_ijk_to_ras((spacing,) * 3, lo + spacing / 2))
    fixed = resample(ct, g, order=1, fill_value=-1024.0, dtype=np.float32)
    a = np.radians(5.0)
    rigid = np.eye(4)
    rigid[:3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    rigid[:3, 3] = [6.0, -4.0, 3.0]
    moving = Volume(fixed.array, rigid @ fixed.ijk_to_ras, "moving")
    grid = covering_axis_grid(fixed.grid, max(spacing, float(np.cbrt(np.prod(hi - lo) / 2e6))))
    x = grid.points()
    u = np.stack([4 * np.sin(x[..., 1] / 40.0), 3 * np.cos(x[..., 2] / 35.0), 3.5 * np.sin(x[..., 0] / 45.0)], -1)
    field = DenseField(rigid, grid, u, {"seconds": 0.0})
    print(f"fixed {fixed.shape} = {np.prod(fixed.shape) / 1e6:.1f} M voxels, field grid {grid.shape}", flush=True)
    t = time.perf_counter()
    write_outputs(field, fixed, moving, out, force=True)
    print(f"write_outputs: {time.perf_counter() - t:.1f} s", flush=True)
    if compare is not None:
        _compare(compare, out)


def _compare(old: Path, new: Path) -> None:
    import SimpleITK as sitk

    for name in ("field.nii.gz", "inverse_field.nii.gz", "moving_resampled.nii.gz"):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(old / name))).astype(np.float64)
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(new / name))).astype(np.float64)
        size = (old / name).stat().st_size / 1e6, (new / name).stat().st_size / 1e6
        print(f"{name}: max |difference| {np.abs(a - b).max():.2e}; {size[0]:.0f} MB -> {size[1]:.0f} MB")


def rigid() -> None:
    from MedDIFTLib.evaluation.motion import BreathingMotion, RepositionedMotion
    from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
    from MedDIFTLib.features import create_backbone
    from MedDIFTLib.registration.prealign import rotation_deg
    from MedDIFTLib.registration.volumes import register_volumes

    still = BreathingMotion(amplitude_mm=0.0, ap_expansion=0.0, lateral_expansion=0.0)
    motion = RepositionedMotion(still, angle_deg=8.0, shift_mm=(20.0, -20.0, 10.0))
    pair = make_pair(shape=(64, 64, 64), spacing=(4.5, 4.5, 4.5), seed=2, motion=motion)
    bb = create_backbone("mind-ssc")
    t = time.perf_counter()
    field = register_volumes(pair.fixed, pair.moving, bb.extract)
    seconds = time.perf_counter() - t
    a, true = field.prealign, motion.rigid
    lo, hi = pair.fixed.grid.bounds_ras()
    c = (lo + hi) / 2.0
    shift = np.linalg.norm(a[:3, :3] @ c + a[:3, 3] - (true[:3, :3] @ c + true[:3, 3]))
    lm = sample_landmarks(pair, n=12, seed=2)
    err = np.linalg.norm(field.map_points(lm.points) - pair.true_moving_points(lm.points), axis=1)
    print(
        f"pre-alignment error {rotation_deg(np.linalg.inv(a) @ true):.3f} deg, {shift:.3f} mm at the centre; "
        f"rounds {len(field.info.get('prealign_rounds', []))}; dense landmark error mean {err.mean():.2f} "
        f"max {err.max():.2f} mm; {seconds:.1f} s"
    )


def real_pair(folder: Path) -> None:
    """A real CT and itself turned by 8 degrees about S through its centre and shifted by 30 mm (a header
    change: the truth is exact), for ``meddift register``; the truth matrix as ``truth.txt``."""
    from MedDIFTLib.data.geometry import Volume
    from MedDIFTLib.data.image_io import read_volume, write_volume

    ct = read_volume(Path("../shared/data/ct/totalsegmentator/abdomen_3mm.nii.gz"))
    a, m = np.radians(8.0), np.eye(4)
    m[:3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    lo, hi = ct.grid.bounds_ras()
    c = (lo + hi) / 2.0
    m[:3, 3] = c - m[:3, :3] @ c + [20.0, -20.0, 10.0]
    folder.mkdir(parents=True, exist_ok=True)
    write_volume(Volume(ct.array, ct.ijk_to_ras, "fixed"), folder / "fixed.nii.gz")
    write_volume(Volume(ct.array, m @ ct.ijk_to_ras, "moving"), folder / "moving.nii.gz")
    np.savetxt(folder / "truth.txt", m)


def field_error(pair: Path, out: Path) -> None:
    """The error of ``out/field.nii.gz`` (applied by SimpleITK) against the pair's truth, over body voxels."""
    import json

    import SimpleITK as sitk

    from MedDIFTLib.data.image_io import read_volume
    from MedDIFTLib.registration.prealign import rotation_deg

    fixed, truth = read_volume(pair / "fixed.nii.gz"), np.loadtxt(pair / "truth.txt")
    ras = fixed.ijk_to_world(np.argwhere(fixed.array > -300)[::400])
    want = ras @ truth[:3, :3].T + truth[:3, 3]
    lps = np.array([-1.0, -1.0, 1.0])
    img = sitk.Cast(sitk.ReadImage(str(out / "field.nii.gz")), sitk.sitkVectorFloat64)
    tx = sitk.DisplacementFieldTransform(img)
    got = np.array([tx.TransformPoint(tuple(p * lps)) for p in ras]) * lps
    e = np.linalg.norm(got - want, axis=1)
    rep = json.loads((out / "registration.json").read_text())
    turn = rotation_deg(np.linalg.inv(np.array(rep["prealign_ras"])) @ truth)
    print(
        f"pre-alignment angle error {turn:.3f} deg, rounds {len(rep.get('prealign_rounds', []))}; field error "
        f"over {len(e)} body voxels: mean {e.mean():.2f} p90 {np.percentile(e, 90):.2f} max {e.max():.2f} mm"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--outputs", metavar="DIR", type=Path, help="write the output set of the CT into DIR")
    p.add_argument("--compare", metavar="DIR", type=Path, help="an earlier set to compare with")
    p.add_argument("--spacing", type=float, default=1.65, help="the CT's resampled voxel size (default 1.65 mm)")
    p.add_argument("--rigid", action="store_true", help="the repositioned phantom")
    p.add_argument("--real-pair", metavar="DIR", type=Path, help="write a turned and shifted real CT pair into DIR")
    p.add_argument("--field-error", nargs=2, metavar=("PAIR", "OUT"), type=Path, help="check OUT against PAIR's truth")
    args = p.parse_args()
    if args.real_pair:
        real_pair(args.real_pair)
    if args.field_error:
        field_error(*args.field_error)
    if args.outputs:
        outputs(args.outputs, args.compare, args.spacing)
    if args.rigid:
        rigid()


if __name__ == "__main__":
    main()
