"""``meddift serve`` doing the work, over TLS with tokens on 127.0.0.1: the same numbers as the
local worker, uploads and features not repeated, a server killed mid-job, a restart that keeps
the feature cache, and ``meddift match --server`` writing the same files as a local run."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi, uvicorn, httpx) is not installed")

from server_helpers import ENGINE, ServerProcess, phantom_files, wait_until  # noqa: E402

from MedDIFTLib.cli import main  # noqa: E402
from MedDIFTLib.data.image_io import read_volume, write_volume  # noqa: E402
from MedDIFTLib.service.client import WorkerClient, WorkerCrashed  # noqa: E402

MATCHING = {"radius_mm": 25.0}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    files = phantom_files(tmp_path_factory.mktemp("server_jobs"), 48, seed=7, n_landmarks=5)
    write_volume(files["pair"].fixed, files["folder"] / "fixed-again.nii.gz")  # the same voxels, other bytes
    return files


@pytest.fixture(scope="module")
def server(files):
    s = ServerProcess(files["folder"] / "srv", "--token-file", files["token_file"], tls=files["tls"])
    yield s
    s.kill()


def _run(client, files, heatmap_out):
    f = files["folder"]
    client.request("configure", engine=ENGINE, matching=MATCHING)
    client.request("load_volume", name="f", path=str(f / "fixed.nrrd"))
    client.request("load_volume", name="m", path=str(f / "moving.nrrd"))
    client.request("extract", name="f")
    client.request("extract", name="m")
    out = client.request("match", fixed="f", moving="m", points=files["lm"].points.tolist(), labels=files["lm"].labels)
    client.request("heatmap", fixed="f", moving="m", point=files["lm"].points[0].tolist(), out=str(heatmap_out))
    return out


def _cache_files(server):
    """Each cached pyramid's inode and size: a recomputed one is a new file (atomic rename), while a
    cache hit only touches it (its modification time is its last use, for the size limit)."""
    return _files(server.cache_dir)


def _files(folder):
    return {p.name: (p.stat().st_ino, p.stat().st_size) for p in folder.glob("*.pt")}


def test_remote_results_equal_the_local_worker(server, files, tmp_path):
    local = WorkerClient(
        env=dict(
            os.environ,
            MEDDIFT_WEIGHTS_DIR=str(tmp_path / "none"),
            OMP_NUM_THREADS="1",
            MEDDIFT_CACHE_DIR=str(tmp_path / "cache"),
        )
    )
    local.start(timeout=120)
    try:
        expected = _run(local, files, tmp_path / "local.nrrd")
    finally:
        local.kill()
    remote = server.client(files["tokens"][0])
    got = _run(remote, files, tmp_path / "remote.nrrd")
    assert got["labels"] == expected["labels"]
    for key in ("points", "similarity", "confidence", "fb_error_mm"):
        np.testing.assert_allclose(np.array(got[key], float), np.array(expected[key], float), atol=1e-6)
    np.testing.assert_array_equal(
        read_volume(tmp_path / "remote.nrrd").array, read_volume(tmp_path / "local.nrrd").array
    )
    remote.stop()


def test_the_same_scan_is_neither_uploaded_nor_encoded_twice(server, files, tmp_path):
    first = server.client(files["tokens"][0])
    _run(first, files, tmp_path / "h1.nrrd")
    cached = _cache_files(server)
    assert len(cached) == 2  # one pyramid per scan, by content digest
    other = server.client(files["tokens"][1])  # another client, another token
    other.request("configure", engine=ENGINE, matching=MATCHING)
    again = other.request("load_volume", name="fx", path=str(files["folder"] / "fixed.nrrd"))
    assert again["deduplicated"] is True and "bytes" not in again  # asked first: no bytes sent
    recoded = other.request("load_volume", name="fz", path=str(files["folder"] / "fixed-again.nii.gz"))
    assert recoded["deduplicated"] is False  # other bytes: uploaded ...
    for name in ("fx", "fz"):
        other.request("extract", name=name)
    assert _cache_files(server) == cached  # ... but the same voxels: not encoded again, cache untouched
    assert server.log().count("POST /v1/sessions/") >= 2
    first.stop()
    other.stop()


def test_server_killed_mid_job_is_a_clear_error_and_a_restart_keeps_the_feature_cache(files, tmp_path):
    f, token = files["folder"], files["tokens"][0]
    cache = tmp_path / "cache"
    first = ServerProcess(tmp_path / "a", "--token-file", files["token_file"], tls=files["tls"], cache_dir=cache)
    try:
        c = first.client(token)
        c.request("configure", engine=ENGINE, matching={})  # a global search: seconds, long enough to kill
        c.request("load_volume", name="f", path=str(f / "fixed.nrrd"))
        c.request("load_volume", name="m", path=str(f / "moving.nrrd"))
        c.request("extract", name="f")
        c.request("extract", name="m")
        cached = _files(cache)
        assert len(cached) == 2
        events = []
        pending = c.submit(
            "match",
            on_event=events.append,
            fixed="f",
            moving="m",
            points=np.random.default_rng(0).uniform(-50, 50, (150, 3)).tolist(),
        )
        wait_until(lambda: pending.poll(0.05) or any("match" in e["stage"] for e in events), timeout=30)
        assert not pending.done
        first.kill()
        with pytest.raises(WorkerCrashed, match="server at .* stopped while answering|cannot be reached"):
            wait_until(lambda: pending.poll(0.1), timeout=30)
        assert not c.alive  # the logic starts a new session on the next job
    finally:
        first.kill()
    second = ServerProcess(tmp_path / "b", "--token-file", files["token_file"], tls=files["tls"], cache_dir=cache)
    try:
        c = second.client(token)
        c.request("configure", engine=ENGINE, matching=MATCHING)
        c.request("load_volume", name="f", path=str(f / "fixed.nrrd"))
        c.request("load_volume", name="m", path=str(f / "moving.nrrd"))
        events = []
        c.request("extract", name="f", on_event=events.append)
        c.request("extract", name="m")
        assert _files(cache) == cached  # read, not recomputed
        out = c.request("match", fixed="f", moving="m", points=files["lm"].points.tolist())
        assert np.isfinite(np.array(out["points"], float)).all()
        c.stop()
    finally:
        second.kill()


def test_cli_match_with_server_writes_the_same_outputs_as_a_local_run(server, files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEDDIFT_WEIGHTS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("MEDDIFT_CACHE_DIR", str(tmp_path / "cache"))
    f = files["folder"]
    common = [
        str(f / "fixed.nrrd"),
        str(f / "moving.nrrd"),
        "--points",
        str(f / "points.csv"),
        "--backbone",
        "mind-ssc",
        "--radius",
        "25",
        "--heatmap-for",
        files["lm"].labels[1],
    ]
    assert (
        main(["match", *common, "--out", str(tmp_path / "local.csv"), "--heatmap", str(tmp_path / "local.nii.gz")]) == 0
    )
    remote = ["--server", server.url, "--token-file", files["token_file"], "--ca-file", files["tls"]["ca"]]
    assert (
        main(
            [
                "match",
                *common,
                "--out",
                str(tmp_path / "remote.csv"),
                "--heatmap",
                str(tmp_path / "remote.nii.gz"),
                *remote,
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert f"on {server.url}" in err and files["tokens"][0] not in err
    assert (tmp_path / "remote.csv").read_text() == (tmp_path / "local.csv").read_text()
    np.testing.assert_array_equal(
        read_volume(tmp_path / "remote.nii.gz").array, read_volume(tmp_path / "local.nii.gz").array
    )
    # the token from MEDDIFT_TOKEN; a wrong one is a one-line error, exit code 2, without the token
    monkeypatch.setenv("MEDDIFT_TOKEN", "wrong-token-0123456789")
    remote_env = ["--server", server.url, "--ca-file", files["tls"]["ca"]]
    assert main(["match", *common[:4], "--out", str(tmp_path / "x.csv"), *remote_env]) == 2
    err = capsys.readouterr().err
    assert "missing or wrong token" in err and "wrong-token-0123456789" not in err
    monkeypatch.setenv("MEDDIFT_TOKEN", files["tokens"][1])
    assert main(["match", *common[:4], "--out", str(tmp_path / "y.csv"), *remote_env]) == 0
