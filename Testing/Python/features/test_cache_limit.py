"""The feature cache's size limit (least recently used out first) and `meddift cache info|clear`."""

from __future__ import annotations

import time

import numpy as np
import pytest

from MedDIFTLib.cli import main as cli_main
from MedDIFTLib.data.geometry import Volume
from MedDIFTLib.errors import InputError
from MedDIFTLib.features import create_backbone
from MedDIFTLib.features.cache import FeatureCache, default_limit_bytes, extract_cached


def _volume(seed):
    rng = np.random.default_rng(seed)
    return Volume(rng.normal(0, 200, (24, 24, 24)).astype(np.float32) - 500, np.diag([3.0, 3.0, 3.0, 1.0]))


def test_least_recently_used_pyramids_go_first_when_the_limit_is_passed(tmp_path):
    bb = create_backbone("mind-ssc")
    probe = FeatureCache(tmp_path / "probe", limit_bytes=10**12)
    extract_cached(bb, _volume(0), probe)
    size = probe.info()["bytes"]  # one pyramid's file
    cache = FeatureCache(tmp_path / "c", limit_bytes=int(2.5 * size))
    vols = [_volume(i) for i in range(3)]
    extract_cached(bb, vols[0], cache)
    time.sleep(0.05)
    extract_cached(bb, vols[1], cache)
    time.sleep(0.05)
    extract_cached(bb, vols[0], cache)  # a hit: vols[0] is now the most recently used
    time.sleep(0.05)
    first, second = [e[0].name for e in cache.entries()]
    extract_cached(bb, vols[2], cache)  # a third file passes the limit: vols[1]'s goes
    names = {e[0].name for e in cache.entries()}
    assert len(names) == 2 and first not in names and second in names
    assert cache.info()["bytes"] <= cache.limit_bytes


def test_cache_info_and_clear_commands(tmp_path, capsys):
    cache = FeatureCache(tmp_path / "c")
    extract_cached(create_backbone("mind-ssc"), _volume(1), cache)
    assert cli_main(["cache", "info", "--cache-dir", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "1 pyramid file(s)" in out and "of at most 20.00 GB" in out
    assert cli_main(["cache", "clear", "--cache-dir", str(tmp_path / "c")]) == 0
    assert "removed 1 file(s)" in capsys.readouterr().out
    assert cache.entries() == []


def test_limit_from_the_environment_is_checked(monkeypatch):
    monkeypatch.setenv("MEDDIFT_CACHE_MAX_GB", "0.5")
    assert default_limit_bytes() == 500_000_000
    monkeypatch.setenv("MEDDIFT_CACHE_MAX_GB", "lots")
    with pytest.raises(InputError, match="MEDDIFT_CACHE_MAX_GB must be a number"):
        default_limit_bytes()


def test_fields_and_pyramids_share_one_limit(tmp_path):
    """A dense field is an entry like a pyramid: counted in the same limit, least recently used out first."""
    from MedDIFTLib.registration.descriptors import AxisGrid
    from MedDIFTLib.registration.field import DenseField
    from MedDIFTLib.registration.field_cache import cached_field, store_field

    field = DenseField(
        np.eye(4),
        AxisGrid((20, 20, 20), np.zeros(3), np.ones(3)),
        np.random.default_rng(0).normal(size=(20, 20, 20, 3)),
        {"note": "synthetic"},
    )
    probe = FeatureCache(tmp_path / "probe", limit_bytes=10**12)
    store_field(probe, "a" * 32, field)
    size = probe.info()["bytes"]
    cache = FeatureCache(tmp_path / "c", limit_bytes=int(2.5 * size))
    for key in ("a" * 32, "b" * 32):
        store_field(cache, key, field)
        time.sleep(0.05)
    np.testing.assert_array_equal(cached_field(cache, "a" * 32).u, field.u)  # a hit: "a" is now the most recent
    time.sleep(0.05)
    store_field(cache, "c" * 32, field)  # a third passes the limit: "b" goes
    assert cached_field(cache, "b" * 32) is None and cached_field(cache, "a" * 32) is not None
    info = cache.info()
    assert info["fields"] == 2 and info["files"] == 2 and info["bytes"] <= cache.limit_bytes
