"""The cache removes only what it wrote, and says what is wrong with a folder it cannot use; through
the real `meddift` command in a subprocess (weight-free MIND-SSC, a small phantom pair)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from MedDIFTLib.data.image_io import write_volume
from MedDIFTLib.data.landmark_io import write_points
from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
from MedDIFTLib.features import create_backbone
from MedDIFTLib.features.cache import FeatureCache, extract_cached

REPO = Path(__file__).resolve().parents[3]


def meddift(*args, env_extra=None, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("MEDDIFT_CACHE_DIR", None)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "MedDIFTLib.cli", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(REPO),
    )


def _foreign(folder: Path) -> dict:
    """Files a user keeps beside the cache: weights, a model, a file named like an entry, a dot file."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "maisi_vae.pt": b"weights " * 1000,
        "my_model.pt": b"model",
        "0123456789abcdef0123456789abcdef.pt": b"x",
        ".notes.pt.tmp": b"mine",
        "0123456789abcdef0123456789abcdef.field.npz": b"mine too",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def _pair(tmp_path):
    pair = make_pair(shape=(40, 40, 40), spacing=(6.0, 6.0, 6.0), seed=3)
    write_volume(pair.fixed, tmp_path / "fixed.nii.gz")
    write_volume(pair.moving, tmp_path / "moving.nii.gz")
    write_points(sample_landmarks(pair, n=3, seed=3), tmp_path / "lm.csv")
    return pair


def test_clear_removes_the_caches_entries_and_nothing_else(tmp_path):
    folder = tmp_path / "cache"
    foreign = _foreign(folder)
    cache = FeatureCache(folder)
    extract_cached(create_backbone("mind-ssc"), make_pair(shape=(24, 24, 24), seed=1).fixed, cache)
    (entry,) = [p for p, _, _ in cache.entries()]
    (folder / f".{entry.name}.abc123.tmp").write_bytes(b"a crash's temporary file")
    info = meddift("cache", "info", "--cache-dir", folder)
    assert info.returncode == 0 and "1 pyramid file(s) and 0 dense field(s)" in info.stdout
    res = meddift("cache", "clear", "--cache-dir", folder)
    assert res.returncode == 0, res.stderr
    assert "removed 1 file(s)" in res.stdout and "left alone" in res.stdout
    assert sorted(p.name for p in folder.iterdir()) == sorted(foreign)  # exactly the user's files remain
    for name, data in foreign.items():
        assert (folder / name).read_bytes() == data


def test_eviction_under_the_size_limit_keeps_foreign_files(tmp_path):
    folder = tmp_path / "cache"
    foreign = _foreign(folder)
    (folder / "big_weights.pt").write_bytes(b"w" * 3_000_000)  # alone over the limit below
    foreign["big_weights.pt"] = None
    pair = _pair(tmp_path)
    probe = FeatureCache(tmp_path / "probe", limit_bytes=10**12)
    extract_cached(create_backbone("mind-ssc", levels=("mind1", "mind2", "mind4")), pair.fixed, probe)
    one = probe.info()["bytes"]  # one registration pyramid of this pair
    res = meddift(
        "match",
        tmp_path / "fixed.nii.gz",
        tmp_path / "moving.nii.gz",
        "--points",
        tmp_path / "lm.csv",
        "--out",
        tmp_path / "out.csv",
        "--backbone",
        "mind-ssc",
        "--cache-dir",
        folder,
        "--iterations",
        20,
        env_extra={"MEDDIFT_CACHE_MAX_GB": str(1.5 * one / 1e9)},
    )
    assert res.returncode == 0, res.stderr
    assert set(foreign) <= {p.name for p in folder.iterdir()}  # every foreign file is still there
    cache = FeatureCache(folder, limit_bytes=int(1.5 * one))
    assert 1 <= len(cache.entries()) and cache.info()["bytes"] <= cache.limit_bytes


def test_a_cache_folder_that_is_a_file_is_an_error_for_info_and_clear(tmp_path):
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_bytes(b"a file")
    for action in ("info", "clear"):
        res = meddift("cache", action, "--cache-dir", not_a_folder)
        assert res.returncode == 2, (action, res.stdout)
        assert f"{not_a_folder} is a file, not a folder" in res.stderr and "0 " not in res.stdout
    assert not_a_folder.read_bytes() == b"a file"
    inside = meddift("cache", "info", "--cache-dir", not_a_folder / "sub")  # a file above the folder
    assert inside.returncode == 2 and f"{not_a_folder} is a file, not a folder" in inside.stderr


@pytest.mark.skipif(os.name != "posix", reason="symbolic links as a POSIX system makes them")
def test_a_cache_folder_that_cannot_be_reached_is_an_error_in_the_systems_words(tmp_path):
    """A link to itself (any user, root included, fails to read it) and a link to nowhere."""
    loop, nowhere = tmp_path / "loop", tmp_path / "nowhere"
    loop.symlink_to(loop)
    nowhere.symlink_to(tmp_path / "gone")
    for folder, words in ((loop, "Too many levels of symbolic links"), (nowhere, "No such file or directory")):
        for action in ("info", "clear"):
            res = meddift("cache", action, "--cache-dir", folder)
            assert res.returncode == 2 and f"cannot be read: {folder}: {words}" in res.stderr, res.stderr


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0,
    reason="a folder without read permission is readable by root: needs a normal user",
)
def test_an_unreadable_cache_folder_is_an_error_for_info_and_clear(tmp_path):
    locked = tmp_path / "cache"
    locked.mkdir()
    locked.chmod(0)
    try:
        for action in ("info", "clear"):
            res = meddift("cache", action, "--cache-dir", locked)
            assert res.returncode == 2 and "cannot be read: Permission denied" in res.stderr
    finally:
        locked.chmod(0o755)


def test_match_says_why_it_goes_on_without_an_unusable_cache(tmp_path):
    _pair(tmp_path)
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_bytes(b"a file")
    res = meddift(
        "match",
        tmp_path / "fixed.nii.gz",
        tmp_path / "moving.nii.gz",
        "--points",
        tmp_path / "lm.csv",
        "--out",
        tmp_path / "out.csv",
        "--backbone",
        "mind-ssc",
        "--cache-dir",
        not_a_folder,
        "--iterations",
        20,
    )
    assert res.returncode == 0, res.stderr
    assert f"{not_a_folder} is a file, not a folder; going on without the cache" in res.stderr
    assert res.stderr.count("going on without the cache") == 1  # said once, not per scan or per field
    assert "Traceback" not in res.stderr and "another process" not in res.stderr
    assert "3 of 3 points matched" in res.stderr and not_a_folder.read_bytes() == b"a file"
    rows = (tmp_path / "out.csv").read_text().splitlines()
    assert len(rows) == 4 and all(np.isfinite(float(v)) for v in rows[1].split(",")[1:4])


def test_an_entry_an_earlier_version_wrote_is_recognised_by_its_content(tmp_path):
    """Before markers, an entry was a bare ``<key>.pt`` whose stored identity names its key: it is
    read (not extracted again), adopted, and from then on counted and cleared like any entry."""
    from MedDIFTLib.data.digest import volume_digest
    from MedDIFTLib.features.cache import cache_key
    from MedDIFTLib.features.mind_ssc import MindSSCBackbone

    class NoExtraction(MindSSCBackbone):
        def extract(self, volume, progress=None, cancel=None):
            raise AssertionError("extracted although the cache holds the pyramid")

    folder = tmp_path / "cache"
    vol = make_pair(shape=(24, 24, 24), seed=4).fixed
    bb = create_backbone("mind-ssc")
    key = cache_key(volume_digest(vol), bb.identity())
    legacy = bb.extract(vol)
    legacy.identity["cache_key"] = key
    legacy.save(folder / f"{key}.pt")  # no marker, as an earlier version wrote it
    got = extract_cached(NoExtraction(), vol, FeatureCache(folder))
    assert got.identity["cache_key"] == key
    assert "1 pyramid file(s)" in meddift("cache", "info", "--cache-dir", folder).stdout
    assert meddift("cache", "clear", "--cache-dir", folder).returncode == 0
    assert list(folder.iterdir()) == []
