"""Evaluation cases: fixed/moving scans with corresponding landmarks (RAS mm), from the benchmark
layouts a user has on disk and from the generated phantom suite.

Each loader yields cases lazily (a lung benchmark case is hundreds of MB) and
reads every landmark in the voxel convention of *its own* image, so the
fixed-to-moving correspondence never depends on the two scans sharing a grid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..data.geometry import LPS_TO_RAS, Volume, make_ijk_to_ras
from ..data.image_io import read_volume
from ..data.landmark_io import DIRLAB_4DCT_GEOMETRY, DIRLAB_COPD_GEOMETRY, read_dirlab, read_points
from ..data.points import PointSet
from ..errors import ImageReadError, InputError
from .case import Case
from .motion import BreathingMotion, RepositionedMotion
from .phantom import make_pair, sample_landmarks
from .warped import VARIANTS, make_warped_case, variant_settings

CONVERTED_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")


def phantom_suite(
    seeds=(0, 1),
    amplitudes=(15.0, 25.0),
    noise_hu=(20.0,),
    n_landmarks: int = 20,
    shape=(96, 96, 96),
    spacing=(3.0, 3.0, 3.0),
    hard: bool = False,
) -> Iterable[Case]:
    """Generated pairs over seeds x breathing amplitudes x noise levels, with exact ground truth.

    With ``hard``, two more cases follow: a patient repositioned (8 degrees about S and
    about 25 mm on top of 15 mm breathing) and a contrast follow-up (soft tissue outside
    the lungs +120 HU, a global gain of 1.1 and offset of -40 HU, twice the noise).
    """

    def case(name, seed, **kw):
        pair = make_pair(shape=shape, spacing=spacing, seed=seed, **kw)
        lm = sample_landmarks(pair, n=n_landmarks, seed=seed)
        truth = PointSet(pair.true_moving_points(lm.points), list(lm.labels))
        return Case("phantom", name, pair.fixed, pair.moving, lm, truth)

    for seed in seeds:
        for amp in amplitudes:
            for noise in noise_hu:
                yield case(
                    f"seed{seed}_amp{amp:g}_noise{noise:g}",
                    seed,
                    noise_hu=noise,
                    motion=BreathingMotion(amplitude_mm=amp),
                )
    if hard:
        base = noise_hu[0]
        yield case(
            f"reposition_seed{seeds[0]}",
            seeds[0],
            noise_hu=base,
            motion=RepositionedMotion(BreathingMotion(amplitude_mm=15.0)),
        )
        yield case(
            f"contrast_seed{seeds[-1]}",
            seeds[-1],
            noise_hu=2 * base,
            motion=BreathingMotion(amplitude_mm=15.0),
            soft_tissue_offset_hu=120.0,
            intensity_scale=1.1,
            intensity_offset=-40.0,
        )


def _pair(dataset: str, name: str, fixed: Volume, moving: Volume, fp: PointSet, mp: PointSet) -> Case:
    if len(fp) != len(mp):
        raise InputError(f"{dataset} case {name}: {len(fp)} fixed landmarks but {len(mp)} moving landmarks")
    labels = [f"K{i + 1}" for i in range(len(fp))]
    return Case(dataset, name, fixed, moving, PointSet(fp.points, labels), PointSet(mp.points, labels))


def learn2reg_cases(
    root, split: str = "Tr", fixed_suffix: str = "_0000", moving_suffix: str = "_0001", task: str = "LungCT"
) -> Iterable[Case]:
    """Learn2Reg layout: ``images{split}/{task}_00XX{suffix}.nii.gz`` with keypoints in
    ``keypoints{split}/{task}_00XX{suffix}.csv`` (0-based voxel indices of *that* image)."""
    root = Path(root)
    images = root / f"images{split}"
    fixed_files = sorted(images.glob(f"{task}_*{fixed_suffix}.nii.gz"))
    if not fixed_files:
        raise InputError(f"{images}: no {task}_XXXX{fixed_suffix}.nii.gz images (Learn2Reg layout expected)")
    for ff in fixed_files:
        case = ff.name[: -len(f"{fixed_suffix}.nii.gz")]
        mf = images / f"{case}{moving_suffix}.nii.gz"
        kf = root / f"keypoints{split}" / f"{case}{fixed_suffix}.csv"
        km = root / f"keypoints{split}" / f"{case}{moving_suffix}.csv"
        missing = [str(p) for p in (mf, kf, km) if not p.exists()]
        if missing:
            raise InputError(f"case {case}: missing {', '.join(missing)}")
        fixed, moving = read_volume(ff), read_volume(mf)
        fp = read_points(kf, format="learn2reg", reference=fixed)
        mp = read_points(km, format="learn2reg", reference=moving)
        yield _pair(f"learn2reg-{task}", case, fixed, moving, fp, mp)


# --- DIR-Lab ------------------------------------------------------------------------------------

DIRLAB_HU_SHIFT = 1024.0


def read_dirlab_image(
    path, spacing, inplane=(512, 512), slices: int | None = None, intensity_offset: str | float = "auto"
) -> Volume:
    """A DIR-Lab ``.img`` file: header-less little-endian int16, x fastest, slice after slice.

    The file has no geometry: ``spacing`` comes from the published tables and
    the slice count from the file size (checked against ``slices`` when
    known). Directions are taken as ITK's identity in LPS (x to the patient's
    left, y posterior), the convention of the public converters; the DIR-Lab
    landmark indices refer to this voxel order whatever the anatomy's true
    orientation. Some releases store HU + 1024: ``intensity_offset="auto"``
    subtracts 1024 when no voxel (apart from a < -1100 padding value) is
    below -500, which a CT in HU with air around the body always has.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such DIR-Lab image")
    nx, ny = (int(v) for v in inplane)
    size = path.stat().st_size
    per_slice = nx * ny * 2
    if size == 0 or size % per_slice:
        raise ImageReadError(
            f"{path}: {size} bytes is not a whole number of {nx}x{ny} int16 slices "
            f"({per_slice} bytes each); is the file complete?"
        )
    nz = size // per_slice
    if slices is not None and nz != slices:
        raise ImageReadError(
            f"{path}: has {nz} slices of {nx}x{ny}, the published size is {slices}; "
            "the file is truncated or belongs to another case"
        )
    array = np.fromfile(path, dtype="<i2").reshape(nz, ny, nx).transpose(2, 1, 0).astype(np.float32)
    if intensity_offset == "auto":
        body = array[array >= -1100]
        low = float(np.percentile(body, 1)) if body.size else 0.0
        intensity_offset = -DIRLAB_HU_SHIFT if low > -500 else 0.0
    array += float(intensity_offset)
    sx, sy, sz = (float(s) for s in spacing)
    ijk_to_ras = make_ijk_to_ras((sx, sy, sz), (0.0, 0.0, 0.0), LPS_TO_RAS[:3, :3])
    return Volume(
        np.ascontiguousarray(array),
        ijk_to_ras,
        path.name.split(".")[0],
        {"path": str(path), "intensity_offset": float(intensity_offset)},
    )


def _find(folder: Path, pattern: str, what: str, case: str) -> Path:
    """The one file under ``folder`` whose name matches ``pattern`` (case-insensitive), raw or converted."""
    rx = re.compile(pattern, re.IGNORECASE)
    found = sorted(p for p in folder.rglob("*") if p.is_file() and rx.fullmatch(p.name))
    raw = [p for p in found if p.name.lower().endswith(".img")]
    pick = raw or found
    if not pick:
        raise InputError(f"DIR-Lab {case}: no {what} under {folder} (expected a name like {pattern!r})")
    return pick[0]


def _image_pattern(stem: str) -> str:
    return stem + r"(\.img|" + "|".join(re.escape(s) for s in CONVERTED_SUFFIXES) + ")"


def _dirlab_volume(path: Path, spacing, inplane, slices) -> Volume:
    if path.name.lower().endswith(".img"):
        return read_dirlab_image(path, spacing, inplane, slices)
    return read_volume(path)


def dirlab_4dct_cases(root, cases=range(1, 11), fixed_phase: str = "T00", moving_phase: str = "T50") -> Iterable[Case]:
    """DIR-Lab 4DCT: ``CaseNPack/Images/caseN_T00*.img`` and ``.../caseN_300_T00_xyz.txt`` (any depth).

    Cases not present under ``root`` are skipped; none at all is an error.
    """
    root = Path(root)
    found = 0
    for n in cases:
        folders = sorted(
            p for p in root.glob("*") if p.is_dir() and re.fullmatch(rf"case{n}(pack|deploy)?", p.name, re.I)
        )
        if not folders:
            continue
        folder, key = folders[0], f"case{n}"
        geo = DIRLAB_4DCT_GEOMETRY[key]
        found += 1
        yield _dirlab_pair(
            "dirlab-4dct",
            folder,
            key,
            (fixed_phase, moving_phase),
            rf"case{n}_{{phase}}(_s)?",
            rf"case{n}_300_{{phase}}_xyz(_r1)?\.txt",
            geo["spacing"],
            geo["shape"][:2],
            geo["shape"][2],
        )
    if not found:
        raise InputError(f"{root}: no DIR-Lab 4DCT case folders (Case1Pack ... Case10Pack)")


def _dirlab_pair(
    dataset: str, folder: Path, key: str, phases, image_re: str, landmark_re: str, spacing, inplane, slices
) -> Case:
    """One DIR-Lab case: for each phase (fixed, moving) its image and its 300-landmark file, the
    landmarks' one-based voxel indices read through that image's geometry. ``{phase}`` in the
    patterns is replaced by the phase name."""
    vols, pts = [], []
    for phase in phases:
        img = _find(folder, _image_pattern(image_re.replace("{phase}", phase)), f"{phase} image", key)
        lm = _find(folder, landmark_re.replace("{phase}", phase), f"{phase} landmark file", key)
        vol = _dirlab_volume(img, spacing, inplane, slices)
        vols.append(vol)
        pts.append(read_dirlab(lm, reference=vol))
    return _pair(dataset, key, vols[0], vols[1], pts[0], pts[1])


def dirlab_copd_cases(root, cases=range(1, 11), fixed_phase: str = "iBH", moving_phase: str = "eBH") -> Iterable[Case]:
    """DIR-Lab COPDgene: ``copdN/copdN_iBHCT.img`` and ``copdN_300_iBH_xyz_r1.txt`` (any depth), 512x512 slices."""
    root = Path(root)
    found = 0
    for n in cases:
        folders = sorted(p for p in root.glob("*") if p.is_dir() and p.name.lower() == f"copd{n}")
        if not folders:
            continue
        folder, key = folders[0], f"copd{n}"
        found += 1
        yield _dirlab_pair(
            "dirlab-copd",
            folder,
            key,
            (fixed_phase, moving_phase),
            rf"copd{n}_{{phase}}CT",
            rf"copd{n}_300_{{phase}}_xyz_r1\.txt",
            DIRLAB_COPD_GEOMETRY[key]["spacing"],
            (512, 512),
            None,
        )
    if not found:
        raise InputError(f"{root}: no DIR-Lab COPD case folders (copd1 ... copd10)")


WARPED_VARIANTS = ("smooth", "repositioned")


def warped_ct_cases(
    paths,
    variants=WARPED_VARIANTS,
    amplitude_mm: float = 8.0,
    rotation_deg: float = 8.0,
    shift_mm: float = 20.0,
    noise_hu: float = 10.0,
    n_landmarks: int = 30,
    seed: int = 0,
    **warp,
) -> Iterable[Case]:
    """Real CT scans, each deformed by a known smooth motion (:mod:`.warped`): exact TRE on real anatomy.

    Per scan and variant one case; the variants are datasets of their own in the report:
    ``warped-ct-smooth`` (the smooth field only) and ``warped-ct-repositioned`` (the same field, then
    ``rotation_deg`` about S and ``shift_mm`` along (1, -1, 1)/sqrt(3)); on request ``warped-ct-contrast``
    (the smooth field and a soft-tissue contrast change, :func:`.warped.variant_settings`). Each scan is read when its
    cases are reached, so a long list of files does not sit in memory.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise InputError(f"unknown warped-CT variant(s) {unknown}; choose from {list(VARIANTS)}")
    for path in paths:
        fixed = read_volume(path)
        for v in variants:
            rigid: dict[str, Any] = variant_settings(v, rotation_deg, shift_mm)
            yield make_warped_case(
                fixed,
                name=fixed.name,
                dataset=f"warped-ct-{v}",
                amplitude_mm=amplitude_mm,
                noise_hu=noise_hu,
                n_landmarks=n_landmarks,
                seed=seed,
                **rigid,
                **warp,
            )
