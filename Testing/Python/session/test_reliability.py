"""Bad inputs and faults: each gives a correct result or a clear error, and nothing is lost.

The matrix in docs/reliability.md lists every case with the test that covers
it; the cases not here are tested where their code lives (image reading,
landmark formats, weights, the worker, the Slicer logic).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from MedDIFTLib.data.checks import check_ct
from MedDIFTLib.data.geometry import Volume
from MedDIFTLib.data.image_io import read_volume, write_volume
from MedDIFTLib.data.landmark_io import read_points, write_points
from MedDIFTLib.data.points import PointSet
from MedDIFTLib.errors import CancelledError, GeometryError, InputError
from MedDIFTLib.evaluation.metrics import tre
from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks, thorax_grid
from MedDIFTLib.features.cache import FeatureCache, extract_cached
from MedDIFTLib.features.maisi.backbone import MaisiBackbone, _set_vae_splits
from MedDIFTLib.matching.search import MatchOptions
from MedDIFTLib.session import EngineOptions, MatchSession
from tiny_maisi import TINY_CONFIG, write_tiny_checkpoints

REPO = Path(__file__).resolve().parents[3]
SMALL = dict(shape=(64, 64, 64), spacing=(5.0, 5.0, 5.0))


@pytest.fixture(scope="module")
def pair():
    return make_pair(seed=6, **SMALL)


@pytest.fixture(scope="module")
def landmarks(pair):
    return sample_landmarks(pair, n=8, seed=6)


@pytest.fixture
def session(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDDIFT_WEIGHTS_DIR", str(tmp_path / "no_weights"))
    return MatchSession(EngineOptions(backbone="mind-ssc", use_cache=False), MatchOptions(radius_mm=25.0))


def _with(volume: Volume, array=None, matrix=None, name=None, **meta) -> Volume:
    return Volume(
        volume.array if array is None else array,
        volume.ijk_to_ras if matrix is None else matrix,
        name or volume.name,
        {**volume.metadata, **meta},
    )


# --- inputs ------------------------------------------------------------------------------


def test_label_map_instead_of_a_ct_is_refused(pair, landmarks, session):
    labels = np.zeros(pair.fixed.shape, np.int16)
    labels[pair.fixed.array > -300] = 1
    labels[pair.fixed.array > 200] = 2
    seg = _with(pair.fixed, array=labels, name="lungs seg")
    with pytest.raises(
        InputError,
        match=r"fixed volume 'lungs seg' looks like a label map or segmentation "
        r"\(3 distinct integer values 0\.\.2\), not a CT",
    ):
        _ = session.match(seg, pair.moving, landmarks).points
    assert not session._pyramids  # refused before any feature was computed


def test_mr_volume_from_dicom_warns_that_the_backbone_is_ct_trained(pair, landmarks, session, tmp_path):
    from dicom_series import write_dicom_series

    # DICOM is LPS: flip i and j and start at the far corner to cover the same world box as the phantom
    o, n = pair.moving.ijk_to_ras[:3, 3], np.array(pair.moving.shape)
    lps_origin = (-(o[0] + 5.0 * (n[0] - 1)), -(o[1] + 5.0 * (n[1] - 1)), o[2])
    arr = np.ascontiguousarray(pair.moving.array[::-1, ::-1, :]).astype(np.int16) + 1024
    folder = write_dicom_series(tmp_path / "mr", arr, (5.0, 5.0, 5.0), lps_origin, modality="MR")
    mr = read_volume(folder, name="t1")
    np.testing.assert_allclose(mr.grid.bounds_ras()[0], pair.moving.grid.bounds_ras()[0], atol=1e-3)
    assert mr.metadata["modality"] == "MR"
    assert check_ct(mr, "moving") == [
        "moving volume 't1' is MR, not CT: MedDIFT's MAISI backbone is trained on CT, so matches may be poor; "
        "check them"
    ]
    report = session.match(pair.fixed, mr, landmarks)  # a warning, not a refusal: it still matches
    assert np.isfinite(report.points.points).all() and any("is MR, not CT" in w for w in report.warnings)


def test_unrescaled_ct_warns_and_hu_offset_gives_the_hu_result(pair, landmarks, session, monkeypatch):
    """Point matching (the offset is applied before any descriptor, on every path). A CT stored as
    0..4095 (no rescale slope/intercept applied): warned with that scan's own fix;
    with each scan's offset (``with_hu_offset(..., -1024)``) the matches are those of the HU volumes."""
    from MedDIFTLib.data.image_io import with_hu_offset
    from MedDIFTLib.errors import render

    raw_f = _with(pair.fixed, array=np.clip(pair.fixed.array + 1024, 0, 4095).astype(np.float32))
    raw_m = _with(pair.moving, array=np.clip(pair.moving.array + 1024, 0, 4095).astype(np.float32))
    report = session.match(raw_f, raw_m, landmarks, prior="none")
    warned = report.points
    assert len(report.warnings) == 2
    assert "--fixed-hu-offset -1024" in render(report.warnings[0], "cli")
    assert "--moving-hu-offset -1024" in render(report.warnings[1], "cli")
    assert "fixed volume" in report.warnings[0] and "no air near -1000" in report.warnings[0]

    hu = MatchSession(EngineOptions(backbone="mind-ssc", use_cache=False), MatchOptions(radius_mm=25.0))
    clipped_f = _with(pair.fixed, array=np.clip(pair.fixed.array, -1024, 3071).astype(np.float32))
    clipped_m = _with(pair.moving, array=np.clip(pair.moving.array, -1024, 3071).astype(np.float32))
    ref = hu.match(clipped_f, clipped_m, landmarks, prior="none").points
    report = hu.match(with_hu_offset(raw_f, -1024), with_hu_offset(raw_m, -1024), landmarks, prior="none")
    out = report.points
    assert report.warnings == []
    np.testing.assert_allclose(out.points, ref.points, atol=1e-3)  # float32 +1024-1024 rounding only
    assert np.isfinite(warned.points).all()  # warned, not refused


def test_hu_offset_is_applied_only_to_the_scan_it_is_given_for(pair, landmarks):
    """Point matching, as above. Only the fixed scan unrescaled: its offset must not shift the moving
    one (which was moved to
    about -2048 HU and its matches by up to 90 mm when one offset applied to both)."""
    from MedDIFTLib.data.image_io import with_hu_offset

    hu = MatchSession(EngineOptions(backbone="mind-ssc", use_cache=False), MatchOptions(radius_mm=25.0))
    clipped_f = _with(pair.fixed, array=np.clip(pair.fixed.array, -1024, 3071).astype(np.float32))
    clipped_m = _with(pair.moving, array=np.clip(pair.moving.array, -1024, 3071).astype(np.float32))
    ref = hu.match(clipped_f, clipped_m, landmarks, prior="none")
    raw_f = _with(pair.fixed, array=np.clip(pair.fixed.array + 1024, 0, 4095).astype(np.float32))
    warned = hu.match(raw_f, clipped_m, landmarks, prior="none").warnings
    from MedDIFTLib.errors import render

    assert len(warned) == 1 and "fixed volume" in warned[0] and "--fixed-hu-offset -1024" in render(warned[0], "cli")
    report = hu.match(with_hu_offset(raw_f, -1024), clipped_m, landmarks, prior="none")
    assert report.warnings == []
    np.testing.assert_allclose(report.points.points, ref.points.points, atol=1e-3)


def test_nan_and_infinite_voxels_are_counted_and_refused(pair, landmarks, session):
    arr = pair.moving.array.astype(np.float32).copy()
    arr[1, 2, 3], arr[4, 5, 6], arr[7, 8, 9] = np.nan, np.inf, -np.inf
    with pytest.raises(InputError, match=r"moving volume 'bad' has 3 NaN or infinite voxels; fix or mask them"):
        _ = session.match(pair.fixed, _with(pair.moving, array=arr, name="bad"), landmarks).points


def test_too_small_volume_is_refused(pair, landmarks, session):
    tiny = Volume(np.full((6, 40, 40), -500.0, np.float32), np.eye(4), "scout")
    with pytest.raises(
        InputError,
        match=r"moving volume 'scout' of size \(6, 40, 40\) is too small: each axis "
        r"needs at least 8 voxels",
    ):
        _ = session.match(pair.fixed, tiny, landmarks).points


def test_volume_too_large_for_memory_is_refused_before_anything_is_allocated():
    """A 512x512x800 CT needs a 512x512x768 network input: about 194 GB on the CPU. The estimate
    (fitted to the measured encoder peak) is checked before the networks are even built."""
    huge = Volume(np.broadcast_to(np.float32(-1000), (512, 512, 800)), np.diag([0.7, 0.7, 0.5, 1.0]), "whole body")
    bb = MaisiBackbone(device="cpu", config=TINY_CONFIG, random_init=True, memory_limit_bytes=16_000_000_000)
    with pytest.raises(
        InputError,
        match=r"volume 'whole body' \(512, 512, 800\): the MAISI encoder on the CPU "
        r"would need about 193\.9 GB for its network input of \(512, 512, 768\) "
        r"voxels, and 16\.0 GB is free\. Crop the volume",
    ):
        bb.extract(huge)
    assert bb._nets is None  # nothing was loaded
    ok = Volume(np.zeros((100, 100, 60), np.float32), np.eye(4), "small")
    bb.check_memory(ok)  # 128^3 input: 3.8 GB, fits


def _rotated_pair(deg: float, spacing, shape):
    """Fixed scan on a grid rotated ``deg`` about S, moving one axis-aligned, same voxel sizes."""
    a = np.deg2rad(deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    shape = np.array(shape)
    m = np.eye(4)
    m[:3, :3] = rz @ np.diag(spacing)
    m[:3, 3] = -m[:3, :3] @ ((shape - 1) / 2)
    p = make_pair(
        shape=tuple(shape), seed=6, ijk_to_ras=m, moving_ijk_to_ras=thorax_grid(tuple(shape), spacing).ijk_to_ras
    )
    lm = sample_landmarks(p, n=12, seed=6)
    return p, lm, p.true_moving_points(lm.points)


def test_oblique_scan_matches_as_well_as_an_axis_aligned_one(session):
    """A 20-degree oblique fixed scan is resampled onto RAS axes before its descriptors are
    computed (descriptors follow the array axes). Measured, 96^3 at 3 mm, 12 landmarks: median
    error 1.85 mm oblique, 1.84 mm axis-aligned, 2.76 mm before; 12.3 mm without the resampling.
    Point matching (``prior="none"``), the path that reads the descriptors directly; the dense map on
    oblique scans is tested in ``registration/test_rigid_recovery.py`` and ``registration/test_registration.py``."""
    medians = {}
    for deg in (0.0, 20.0):
        p, lm, truth = _rotated_pair(deg, (3.0, 3.0, 3.0), (96, 96, 96))
        medians[deg] = np.median(tre(session.match(p.fixed, p.moving, lm, prior="none").points.points, truth))
        before = np.median(tre(lm.points, truth))
    assert medians[20.0] < 0.75 * before and abs(medians[20.0] - medians[0.0]) < 0.3, (before, medians)


def test_strongly_anisotropic_scans_match_in_world_coordinates(session):
    """7.5 mm slices, 3 mm in plane (2.5x), both scans: better than not registering (measured
    median 2.22 mm against 2.76 mm before; point matching, as above)."""
    p, lm, truth = _rotated_pair(0.0, (3.0, 3.0, 7.5), (96, 96, 40))
    after = tre(session.match(p.fixed, p.moving, lm, prior="none").points.points, truth)
    assert np.median(after) < np.median(tre(lm.points, truth)) - 0.3


def test_mind_warns_when_voxel_sizes_differ(pair, landmarks, session):
    """The weight-free descriptor works in voxels: other voxel sizes cost accuracy, so it says so."""
    coarse = Volume(pair.moving.array[::2, ::2, :], pair.moving.ijk_to_ras @ np.diag([2.0, 2.0, 1.0, 1.0]), "coarse")
    warnings = session.match(pair.fixed, coarse, landmarks).warnings
    assert any(
        "voxel sizes differ" in w and "(5.0, 5.0, 5.0) mm against (10.0, 10.0, 5.0) mm" in w for w in warnings
    ), warnings


def test_scans_that_do_not_overlap(pair, landmarks, session):
    """Local search: a clear error (its windows would be empty). Global search: a warning, and the
    matches are the true points in the moved scan's world coordinates."""
    far = np.array(pair.moving.ijk_to_ras)
    far[:3, 3] += [0.0, 0.0, 2000.0]
    moved = _with(pair.moving, matrix=far, name="other scanner")
    with pytest.raises(
        GeometryError,
        match=r"the fixed and moving volumes do not overlap in world space \(fixed "
        r"\(.*\) mm, moving \(.*\) mm \(RAS\)\), so a local search",
    ):
        _ = session.match(pair.fixed, moved, landmarks, prior="none").points
    glob = session.with_matching(MatchOptions(radius_mm=None))
    report = glob.match(pair.fixed, moved, landmarks, prior="none")
    out = report.points
    assert any("do not overlap in world space" in w and "global search still works" in w for w in report.warnings)
    truth = pair.true_moving_points(landmarks.points) + [0.0, 0.0, 2000.0]
    assert np.median(tre(out.points, truth)) < 5.0  # one 5 mm voxel


def test_duplicate_labels_are_warned_and_every_point_is_matched(pair, landmarks, session):
    labels = list(landmarks.labels)
    labels[3] = labels[5] = "carina"
    ps = PointSet(landmarks.points, labels)
    report = session.match(pair.fixed, pair.moving, ps)
    out = report.points
    assert out.labels == labels and np.isfinite(out.points).all()
    assert report.warnings == [
        "landmark labels are not unique ('carina' x2); every point is matched, but rename them to tell the pairs apart"
    ]


# --- faults ------------------------------------------------------------------------------


def test_cuda_out_of_memory_retries_with_more_splits_then_on_the_cpu():
    """CUDA cannot exist here, so the device is faked at that boundary only: ``run`` raises the
    real ``torch.cuda.OutOfMemoryError`` on 'cuda'. The sequence, the messages and the final
    re-raise are what the user sees on a GPU."""
    bb = MaisiBackbone(device="cpu", config=TINY_CONFIG, random_init=True)
    bb.device = torch.device("cuda")  # the boundary: no GPU here
    calls = []

    def run(dev, splits):
        calls.append((dev.type, splits))
        if dev.type == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "features"

    assert bb._fallback("VAE encoding", run) == "features"
    assert calls == [("cuda", None), ("cuda", 2), ("cpu", None)]
    assert bb.notices == [
        "CUDA out of memory during the VAE encoding; retrying with 2 VAE splits",
        "CUDA out of memory during the VAE encoding; running it on the CPU instead (slower)",
    ]
    calls.clear()
    with pytest.raises(torch.cuda.OutOfMemoryError):
        bb._fallback(
            "UNet pass",
            lambda d, s: (calls.append(d.type), (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("again"))),
            can_split=False,
        )
    assert calls == ["cuda", "cpu"]  # the UNet cannot split: straight to the CPU, then the error


def test_more_vae_splits_give_the_same_latent(tmp_path):
    """The retry with more splits changes memory, not results (real tiny MAISI encoder)."""
    write_tiny_checkpoints(tmp_path, seed=2)
    bb = MaisiBackbone(weights_dir=tmp_path, device="cpu", config=TINY_CONFIG)
    vae = bb.load()[0]
    x = torch.rand(1, 1, 64, 64, 64)
    with torch.inference_mode():
        _set_vae_splits(vae, 1)
        one = vae.encode(x)[0]
        _set_vae_splits(vae, 4)
        four = vae.encode(x)[0]
    torch.testing.assert_close(one, four, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("stage", ["preprocess", "load model", "vae encode", "unet"])
def test_cancel_during_each_extraction_stage_writes_nothing(tmp_path, stage):
    write_tiny_checkpoints(tmp_path / "w", seed=1)
    bb = MaisiBackbone(weights_dir=tmp_path / "w", device="cpu", config=TINY_CONFIG)
    cache = FeatureCache(tmp_path / "cache")
    vol = make_pair(seed=1, shape=(40, 40, 40), spacing=(4.0, 4.0, 4.0)).fixed
    seen = []
    with pytest.raises(CancelledError, match="cancelled by the user"):
        extract_cached(bb, vol, cache, progress=lambda s, f: seen.append(s), cancel=lambda: stage in seen)
    order = ["preprocess", "load model", "vae encode", "unet"]
    assert seen[-1] == stage and set(seen) == set(order[: order.index(stage) + 1])
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_cancel_during_matching(pair, landmarks, session):
    seen = []
    with pytest.raises(CancelledError):
        _ = session.match(
            pair.fixed, pair.moving, landmarks, progress=lambda s, f: seen.append(s), cancel=lambda: "match" in seen
        ).points
    assert "match" in seen
    out = session.match(pair.fixed, pair.moving, landmarks).points  # the session goes on afterwards
    assert np.isfinite(out.points).all()


def _cli(args, env, limit_bytes=None, cwd=None):
    """``meddift`` in a real subprocess; ``limit_bytes`` caps the size of any file it writes
    (RLIMIT_FSIZE, SIGXFSZ ignored): writes past it fail as on a full disk."""
    code = (
        "import resource, signal, sys\n"
        f"lim = {limit_bytes!r}\n"
        "if lim is not None:\n"
        "    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "    resource.setrlimit(resource.RLIMIT_FSIZE, (lim, lim))\n"
        "from MedDIFTLib.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=600, cwd=cwd
    )


@pytest.fixture
def cli_files(pair, landmarks, tmp_path):
    write_volume(pair.fixed, tmp_path / "fixed.nrrd")
    write_volume(pair.moving, tmp_path / "moving.nrrd")
    write_points(landmarks, tmp_path / "fixed.csv")
    env = dict(
        os.environ,
        MEDDIFT_WEIGHTS_DIR=str(tmp_path / "no_weights"),
        MEDDIFT_CACHE_DIR=str(tmp_path / "cache"),
        PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    args = [
        str(tmp_path / "fixed.nrrd"),
        str(tmp_path / "moving.nrrd"),
        "--points",
        str(tmp_path / "fixed.csv"),
        "--backbone",
        "mind-ssc",
        "--radius",
        "25",
    ]
    return tmp_path, env, args


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="RLIMIT_FSIZE test is for Linux")
def test_disk_full_while_writing_leaves_the_old_outputs_and_no_temporary_files(cli_files):
    out_dir, env, args = cli_files
    args = [*args, "--prior", "none"]  # point matching: the writes are the subject, not the registration
    out = out_dir / "out" / "matched.csv"
    hm = out_dir / "out" / "heatmap.nrrd"
    first = _cli(["match", *args, "--out", str(out), "--heatmap-for", "L1", "--heatmap", str(hm)], env)
    assert first.returncode == 0, first.stderr
    old_points, old_heatmap = out.read_bytes(), hm.read_bytes()
    # a feature cache that cannot be written only costs time later: the run goes on to the outputs
    full = _cli(
        [
            "match",
            *args,
            "--out",
            str(out),
            "--force",
            "--heatmap-for",
            "L1",
            "--heatmap",
            str(hm),
            "--no-forward-backward",
        ],
        env,
        limit_bytes=64,
    )
    assert full.returncode == 2, full.stderr
    assert (
        f"meddift: error: cannot write {out}: File too large (is the disk full?); nothing was changed there"
        in full.stderr
    )
    assert out.read_bytes() == old_points and hm.read_bytes() == old_heatmap
    assert sorted(p.name for p in (out_dir / "out").iterdir()) == ["heatmap.nrrd", "matched.csv"]
    env2 = dict(env, MEDDIFT_CACHE_DIR=str(out_dir / "cache2"))
    no_cache = _cli(["match", *args, "--out", str(out_dir / "o2.csv")], env2, limit_bytes=64)
    assert "feature cache: cannot write" in no_cache.stderr and "going on without caching it" in no_cache.stderr
    assert not (out_dir / "cache2").exists() or not [p for p in (out_dir / "cache2").iterdir()]


def test_two_processes_share_one_feature_cache(cli_files):
    """Two `meddift match` runs at once on the same scans and cache folder: both succeed with the
    same result, the cache ends with one complete file per volume and no temporary files."""
    out_dir, env, args = cli_files
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "MedDIFTLib.cli", "match", *args, "--out", str(out_dir / f"out{i}.csv")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1] for r in results]
    a, b = read_points(out_dir / "out0.csv"), read_points(out_dir / "out1.csv")
    np.testing.assert_allclose(a.points, b.points)
    cached = sorted(p.name for p in (out_dir / "cache").iterdir() if not p.name.endswith(".meddift-cache"))
    assert len(cached) == 3 and all(n.endswith((".pt", ".field.npz")) and not n.startswith(".") for n in cached)
