"""``meddift serve`` limits and bad requests, against real server processes on 127.0.0.1: every
limit refuses with its option named, every bad request gets a clear 4xx without a stack trace,
and the server keeps serving after each."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi, uvicorn, httpx) is not installed")

from server_helpers import ENGINE, ServerProcess, make_tokens, wait_until  # noqa: E402

from MedDIFTLib.data.geometry import Volume  # noqa: E402
from MedDIFTLib.data.image_io import write_volume  # noqa: E402
from MedDIFTLib.evaluation.phantom import make_pair  # noqa: E402
from MedDIFTLib.service.client import WorkerError  # noqa: E402


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    folder = tmp_path_factory.mktemp("limited_server")
    token_file, tokens = make_tokens(folder, 1)
    server = ServerProcess(
        folder, "--token-file", token_file, "--max-upload-mb", "1", "--max-voxels", "300000", "--max-queued-jobs", "1"
    )
    pair = make_pair(shape=(64, 64, 64), spacing=(5.0, 5.0, 5.0), seed=2)
    write_volume(pair.fixed, folder / "f.nrrd")
    write_volume(pair.moving, folder / "m.nrrd")
    yield server, tokens[0], folder
    server.kill()


def _assert_clean(r, status, *words):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "kind"}
    for w in words:
        assert w in body["error"], body["error"]
    assert "Traceback" not in r.text and 'File "' not in r.text


def _still_serving(server, token):
    with server.http(token) as http:
        assert http.get("/v1/info").status_code == 200


def test_upload_size_and_voxel_limits_name_their_option(limited):
    server, token, folder = limited
    noise = np.random.default_rng(0).normal(0, 100, (60, 60, 60))  # 1.7 MB of float64, incompressible
    write_volume(Volume(noise, np.diag([2.0, 2.0, 2.0, 1.0])), folder / "big.nrrd")
    write_volume(Volume(np.zeros((70, 70, 70), np.int16), np.eye(4)), folder / "many.nrrd")  # 343,000 voxels, tiny file
    c = server.client(token)
    c.request("configure", engine=ENGINE, matching={})
    with pytest.raises(WorkerError, match=r"over the server's limit \(--max-upload-mb 1\)") as err:
        c.request("load_volume", name="big", path=str(folder / "big.nrrd"))
    assert err.value.kind == "LimitExceeded"
    with pytest.raises(WorkerError, match=r"343,000 voxels, more than the server's limit \(--max-voxels 300,000\)"):
        c.request("load_volume", name="many", path=str(folder / "many.nrrd"))
    # a client that lies about the size (no Content-Length, chunked) is cut off as the bytes arrive
    with server.http(token) as http:
        r = http.put(f"/v1/sessions/{c.session}/volumes/big", content=iter([(folder / "big.nrrd").read_bytes()]))
    _assert_clean(r, 413, "--max-upload-mb 1")
    assert not list((server.folder).rglob("upload-*"))  # nothing of the refused uploads is kept
    assert c.request("load_volume", name="f", path=str(folder / "f.nrrd"))["shape"] == [64, 64, 64]
    _still_serving(server, token)
    c.stop()


def test_queue_limit_and_cancel_of_queued_and_running_jobs(limited):
    server, token, folder = limited
    c = server.client(token)
    c.request("configure", engine=ENGINE, matching={})
    c.request("load_volume", name="f", path=str(folder / "f.nrrd"))
    c.request("load_volume", name="m", path=str(folder / "m.nrrd"))
    pts = np.random.default_rng(1).uniform(-60, 60, (60, 3)).tolist()  # a global search: a few seconds
    sid = c.session
    with server.http(token) as http:
        slow = http.post(f"/v1/sessions/{sid}/jobs", json={"op": "match", "fixed": "f", "moving": "m", "points": pts})
        queued = http.post(f"/v1/sessions/{sid}/jobs", json={"op": "extract", "name": "m"})
        assert slow.status_code == queued.status_code == 202
        assert queued.json()["state"] == "queued" and queued.json()["position"] == 0
        full = http.post(f"/v1/sessions/{sid}/jobs", json={"op": "extract", "name": "f"})
        _assert_clean(full, 429, "--max-queued-jobs 1")
        assert http.post(f"/v1/sessions/{sid}/jobs/{queued.json()['job']}/cancel").json() == {"cancelled": True}
        assert http.get(f"/v1/sessions/{sid}/jobs/{queued.json()['job']}").json()["state"] == "cancelled"
        wait_until(lambda: http.get(f"/v1/sessions/{sid}/jobs/{slow.json()['job']}").json()["state"] == "running")
        assert http.post(f"/v1/sessions/{sid}/jobs/{slow.json()['job']}/cancel").json() == {"cancelled": True}
        final = http.get(f"/v1/sessions/{sid}/jobs/{slow.json()['job']}", params={"wait": 30}).json()
        assert final["state"] == "cancelled" and final["kind"] == "CancelledError"
    # the queue goes on
    assert c.request("extract", name="f")["levels"] == ["mind2", "mind4"]
    c.stop()


def test_bad_requests_get_clear_4xx_errors_and_the_server_keeps_serving(limited):
    server, token, folder = limited
    c = server.client(token)
    c.request("configure", engine=ENGINE, matching={})
    c.request("load_volume", name="f", path=str(folder / "f.nrrd"))
    sid = c.session
    jobs = f"/v1/sessions/{sid}/jobs"
    with server.http(token) as http:
        _assert_clean(http.post(jobs, content=b"{not json"), 400, "malformed JSON")
        _assert_clean(http.post(jobs, content=b"[1, 2]"), 400, "must be a JSON object")
        _assert_clean(http.post(jobs, json={"op": "fly"}), 400, "unknown operation 'fly'", "extract, heatmap, match")
        _assert_clean(
            http.post(jobs, json={"op": "match", "fixed": "f", "moving": "f", "points": "0,0,0"}),
            400,
            "'points' must be a list of [x, y, z]",
        )
        _assert_clean(
            http.post(jobs, json={"op": "heatmap", "fixed": "f", "moving": "f", "point": [0, "a", 0]}),
            400,
            "'point' must be [x, y, z]",
        )
        _assert_clean(http.post(jobs, json={"op": "extract", "name": 5}), 400, "no volume 5")
        _assert_clean(http.post(jobs, json={"op": "extract", "name": "nope"}), 404, "no volume 'nope'")
        _assert_clean(
            http.post(
                jobs, json={"op": "match", "fixed": "f", "moving": "f", "points": [[0, 0, 0]], "labels": ["a", "b"]}
            ),
            400,
            "one string per point",
        )
        # paths where bytes (or the server's own files) are expected
        _assert_clean(
            http.post(
                jobs, json={"op": "heatmap", "fixed": "f", "moving": "f", "point": [0, 0, 0], "out": "/tmp/x.nrrd"}
            ),
            400,
            "never reads or writes a path",
        )
        _assert_clean(
            http.post(
                jobs, json={"op": "match", "fixed": "f", "moving": "f", "points": [[0, 0, 0]], "prior": "/etc/passwd"}
            ),
            400,
            "never read",
        )
        _assert_clean(
            http.put(f"/v1/sessions/{sid}/volumes/x", json={"path": str(folder / "f.nrrd")}),
            415,
            "bytes",
            "never reads a path",
        )
        _assert_clean(
            http.put(
                f"/v1/sessions/{sid}/volumes/x",
                content=str(folder / "f.nrrd").encode(),
                headers={"Content-Type": "application/octet-stream"},
            ),
            400,
            "not a readable image",
        )
        _assert_clean(
            http.put(f"/v1/sessions/{sid}/volumes/x", content=b"\x89PNG garbage" * 100), 400, "not a readable image"
        )
        _assert_clean(http.put(f"/v1/sessions/{sid}/volumes/x", content=b""), 400, "empty")
        _assert_clean(
            http.put(f"/v1/sessions/{sid}/volumes/x", params={"format": "exe"}, content=b"1"), 400, "unknown format"
        )
        _assert_clean(http.put(f"/v1/sessions/{sid}/volumes/..%2Fescape", content=b"1"), 404, "unknown route")
        _assert_clean(http.put(f"/v1/sessions/{sid}/volumes/.hidden", content=b"1"), 400, "volume name")
        _assert_clean(http.get(f"/v1/sessions/{sid}/files/..%2F..%2Fetc%2Fpasswd"), 404, "unknown route")
        _assert_clean(http.get(f"/v1/sessions/{sid}/files/..passwd"), 404, "no file")
        _assert_clean(http.post("/v1/sessions", json={"engine": {"cache_dir": "/"}}), 400, "the server's to choose")
        _assert_clean(http.get("/v1/nothing-here"), 404, "unknown route")
        # an engine failure is the job's failure, with the engine's words
        opened = http.post("/v1/sessions", json={"engine": {"backbone": "nope"}}).json()
        failed = http.get(f"/v1/sessions/{opened['session']}/jobs/{opened['job']}", params={"wait": 30}).json()
        assert failed["state"] == "failed" and "nope" in failed["error"] and "Traceback" not in failed["error"]
        http.delete(f"/v1/sessions/{opened['session']}")
    out = c.request("match", fixed="f", moving="f", points=[[0.0, 0.0, 0.0]], labels=["p"])
    assert out["labels"] == ["p"]
    _still_serving(server, token)
    assert "Traceback" not in server.log()  # none of these was a bug on the server
    c.stop()


def test_session_limit_and_idle_expiry_deletes_the_session_files(tmp_path):
    token_file, tokens = make_tokens(tmp_path, 1)
    work = tmp_path / "work"
    server = ServerProcess(
        tmp_path, "--token-file", token_file, "--max-sessions", "2", "--idle-timeout", "1.5", "--work-dir", str(work)
    )
    try:
        pair = make_pair(shape=(32, 32, 32), spacing=(6.0, 6.0, 6.0), seed=4)
        write_volume(pair.fixed, tmp_path / "f.nrrd")
        a, b = server.client(tokens[0]), server.client(tokens[0])
        a.request("configure", engine=ENGINE, matching={})
        b.request("configure", engine=ENGINE, matching={})
        with server.http(tokens[0]) as http:
            _assert_clean(http.post("/v1/sessions", json={}), 429, "--max-sessions 2")
        a.request("load_volume", name="f", path=str(tmp_path / "f.nrrd"))
        folder = work / "sessions" / a.session
        assert list(folder.glob("upload-*"))
        wait_until(lambda: not folder.exists(), timeout=20)  # idle: closed and its files deleted
        with pytest.raises(WorkerError, match=r"closed after 1.5 s without requests \(--idle-timeout\)") as err:
            a.request("extract", name="f")
        assert err.value.kind == "SessionExpired"
        c = server.client(tokens[0])  # the freed slots can be used again
        assert c.request("configure", engine=ENGINE, matching={})["backbone"] == "mind-ssc"
    finally:
        server.kill()
