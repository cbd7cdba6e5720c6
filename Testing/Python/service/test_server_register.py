"""The server's ``register`` job (dense displacement field) against a real ``meddift serve`` on
127.0.0.1 (TLS, tokens): the same field as the local worker, files downloaded (never a server
path), isolated between tokens, cancellable, refused early when malformed; and the CLI's
``match --prior dense --server`` and ``register --server`` writing what a local run writes."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi, uvicorn, httpx) is not installed")

from server_helpers import ENGINE, ServerProcess, phantom_files, wait_until  # noqa: E402

from interrupts import staged  # noqa: E402  (Testing/Python, on sys.path)
from MedDIFTLib.cli import main  # noqa: E402
from MedDIFTLib.data.image_io import read_volume  # noqa: E402
from MedDIFTLib.data.landmark_io import read_points  # noqa: E402
from MedDIFTLib.errors import CancelledError  # noqa: E402
from MedDIFTLib.outputs import STAGE_PREFIX  # noqa: E402
from MedDIFTLib.service.client import WorkerClient, WorkerError  # noqa: E402
from MedDIFTLib.service.server_files import expire_results  # noqa: E402
from MedDIFTLib.service.server_ops import FILE_NAME  # noqa: E402

SLOW = {"iterations": 100000}  # a registration that runs until it is cancelled (minutes on this machine)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return phantom_files(tmp_path_factory.mktemp("server_register"), 40, seed=11, n_landmarks=8)


@pytest.fixture(scope="module")
def server(files):
    srv = files["folder"] / "srv"  # its session folders inside, where the tests can see them
    s = ServerProcess(srv, "--token-file", files["token_file"], "--work-dir", str(srv / "work"), tls=files["tls"])
    yield s
    s.kill()


def _loaded(client, files):
    client.request("configure", engine=ENGINE, matching={})
    client.request("load_volume", name="f", path=str(files["folder"] / "fixed.nrrd"))
    client.request("load_volume", name="m", path=str(files["folder"] / "moving.nrrd"))
    return client


def _mapped(field_path, points_ras):
    """Points through an ITK displacement field file (RAS in, RAS out), as Slicer or SimpleITK apply it."""
    import SimpleITK as sitk

    tx = sitk.DisplacementFieldTransform(sitk.ReadImage(str(field_path), sitk.sitkVectorFloat64))
    flip = np.array([-1.0, -1.0, 1.0])
    return np.array([np.array(tx.TransformPoint((p * flip).tolist())) * flip for p in points_ras])


def _session_files(server):
    return sorted(p.name for p in server.folder.rglob("*.nrrd") if p.name.startswith(("field-", "warped-")))


def test_remote_dense_field_equals_the_local_worker(server, files, tmp_path):
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
        want = _loaded(local, files).request(
            "register",
            fixed="f",
            moving="m",
            out=str(tmp_path / "local.nii.gz"),
            warped=str(tmp_path / "local-warped.nrrd"),
        )
    finally:
        local.kill()
    remote = _loaded(server.client(files["tokens"][0]), files)
    events = []
    got = remote.request(
        "register",
        on_event=events.append,
        fixed="f",
        moving="m",
        out=str(tmp_path / "remote.nii.gz"),
        warped=str(tmp_path / "remote-warped.nrrd"),
    )
    # the result names the local files it was asked for, as the worker's does; no server path in it
    assert got["path"] == str(tmp_path / "remote.nii.gz") and got["warped"] == str(tmp_path / "remote-warped.nrrd")
    assert str(server.folder) not in repr(got) and "file" not in got
    assert got["jacobian"] == pytest.approx(want["jacobian"], abs=1e-6) and got["prealign"] == want["prealign"]
    assert {"refine field", "discrete search"} <= {e["stage"] for e in events}  # the server's progress
    pair, lm = files["pair"], files["lm"]
    remote_pts, local_pts = (
        _mapped(tmp_path / "remote.nii.gz", lm.points),
        _mapped(tmp_path / "local.nii.gz", lm.points),
    )
    np.testing.assert_allclose(remote_pts, local_pts, atol=1e-4)
    truth = pair.true_moving_points(lm.points)
    # a field that registers, not two equal empty ones
    assert np.mean(np.linalg.norm(remote_pts - truth, axis=1)) < 0.6 * np.mean(
        np.linalg.norm(lm.points - truth, axis=1)
    )
    np.testing.assert_allclose(
        read_volume(tmp_path / "remote-warped.nrrd").array, read_volume(tmp_path / "local-warped.nrrd").array, atol=1e-3
    )
    # downloaded, then deleted on the server (not kept until the session closes)
    wait_until(lambda: _session_files(server) == [], timeout=10)
    remote.stop()


def test_a_malformed_register_request_is_refused_before_the_queue(server, files):
    c = _loaded(server.client(files["tokens"][0]), files)
    route = f"/v1/sessions/{c.session}/jobs"
    for body, words in (
        ({"fixed": "f", "moving": "m", "out": "/tmp/x.nrrd"}, "never reads or writes a path"),
        ({"fixed": "f", "moving": "m", "warped": "/tmp/w.nrrd"}, "'warped' must be true or false"),
        ({"fixed": "f", "moving": "m", "options": {"iterations": -3}}, "iterations must be zero or more"),
        ({"fixed": "f", "moving": "m", "options": {"nonsense": 1}}, "nonsense"),
        ({"fixed": "f", "moving": "m", "initial": [[1, 0, 0]]}, "4x4 RAS matrix"),
        ({"fixed": "f", "moving": "nowhere"}, "no volume 'nowhere'"),
    ):
        with pytest.raises(WorkerError, match=words):
            c._call("POST", route, {"op": "register", **body})
    with server.http(files["tokens"][0]) as http:  # a session's registration options are checked when it opens
        r = http.post("/v1/sessions", json={"engine": ENGINE, "registration": {"prealign": "sideways"}})
        assert r.status_code == 400 and "prealign must be one of none, rigid, affine" in r.json()["error"]
    assert c._call("GET", f"/v1/sessions/{c.session}/volumes") == {"volumes": ["f", "m"]}  # the session is intact
    c.stop()


def test_a_register_job_is_invisible_to_another_token(server, files):
    alice, bob = _loaded(server.client(files["tokens"][0]), files), server.client(files["tokens"][1])
    bob.request("configure", engine=ENGINE, matching={})
    sid = alice.session
    done = alice._call(
        "POST", f"/v1/sessions/{sid}/jobs", {"op": "register", "fixed": "f", "moving": "m"}, params={"wait": 60}
    )
    assert done["state"] == "done" and done["result"]["file"].startswith("field-")
    running = alice._call(
        "POST", f"/v1/sessions/{sid}/jobs", {"op": "register", "fixed": "f", "moving": "m", "options": SLOW}
    )
    wait_until(lambda: alice._call("GET", f"/v1/sessions/{sid}/jobs/{running['job']}")["state"] == "running")
    with server.http(files["tokens"][1]) as http:  # Bob, with Alice's session, job and file names
        nowhere = http.get("/v1/sessions/no-such-session/volumes").json()["error"]
        for method, route in (
            ("GET", f"/v1/sessions/{sid}/jobs/{done['job']}"),
            ("GET", f"/v1/sessions/{sid}/jobs/{running['job']}"),
            ("POST", f"/v1/sessions/{sid}/jobs/{running['job']}/cancel"),
            ("POST", f"/v1/sessions/{sid}/cancel"),
            ("GET", f"/v1/sessions/{sid}/files/{done['result']['file']}"),
            ("DELETE", f"/v1/sessions/{sid}/files/{done['result']['file']}"),
        ):
            r = http.request(method, route)
            assert r.status_code == 404 and r.json()["error"] == nowhere.replace("no-such-session", sid), route
        r = http.get(f"/v1/sessions/{bob.session}/files/{done['result']['file']}")  # in his own session: none
        assert r.status_code == 404
    status = alice._call("GET", f"/v1/sessions/{sid}/jobs/{running['job']}")
    assert status["state"] == "running"  # Bob's cancels did nothing ...
    with server.http(files["tokens"][0]) as http:  # ... nor his delete: Alice still gets her field
        r = http.get(f"/v1/sessions/{sid}/files/{done['result']['file']}")
        assert r.status_code == 200 and len(r.content) > 1000
    alice._call("POST", f"/v1/sessions/{sid}/jobs/{running['job']}/cancel")
    assert alice._call("GET", f"/v1/sessions/{sid}/jobs/{running['job']}", params={"wait": 30})["state"] == "cancelled"
    alice.stop()
    bob.stop()


def test_cancel_stops_a_register_job_and_writes_no_field(server, files, tmp_path):
    c = _loaded(server.client(files["tokens"][0]), files)
    before = _session_files(server)
    events = []
    pending = c.submit(
        "register", on_event=events.append, fixed="f", moving="m", options=SLOW, out=str(tmp_path / "field.nrrd")
    )
    wait_until(lambda: pending.poll(0.05) or any(e["stage"] == "refine field" for e in events), timeout=60)
    assert not pending.done  # running, in its last and longest stage
    assert c.request("cancel", timeout=10) == {"cancelled": True}
    with pytest.raises(CancelledError):
        wait_until(lambda: pending.poll(0.1), timeout=30)
    assert not (tmp_path / "field.nrrd").exists() and list(tmp_path.iterdir()) == []
    assert _session_files(server) == before  # nothing written on the server either
    quick = c.request("register", fixed="f", moving="m", options={"iterations": 5}, out=str(tmp_path / "q.nrrd"))
    assert quick["path"] == str(tmp_path / "q.nrrd") and (tmp_path / "q.nrrd").is_file()  # the session goes on
    c.stop()


def test_cli_dense_prior_and_register_with_server_write_what_a_local_run_writes(
    server, files, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("MEDDIFT_WEIGHTS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("MEDDIFT_CACHE_DIR", str(tmp_path / "cache"))
    f = files["folder"]
    remote = ["--server", server.url, "--token-file", files["token_file"], "--ca-file", files["tls"]["ca"]]
    common = [str(f / "fixed.nrrd"), str(f / "moving.nrrd"), "--backbone", "mind-ssc", "--iterations", "40"]
    match = [*common, "--points", str(f / "points.csv"), "--prior", "dense"]
    assert main(["match", *match, "--out", str(tmp_path / "local.csv")]) == 0
    capsys.readouterr()
    assert main(["match", *match, "--out", str(tmp_path / "remote.csv"), *remote]) == 0
    assert f"on {server.url}" in capsys.readouterr().err  # computed there, not here
    local_pts, remote_pts = read_points(tmp_path / "local.csv"), read_points(tmp_path / "remote.csv")
    assert remote_pts.labels == local_pts.labels
    np.testing.assert_allclose(remote_pts.points, local_pts.points, atol=1e-3)
    for key in ("similarity", "confidence", "argmax_gap_mm"):
        np.testing.assert_allclose(remote_pts.values[key], local_pts.values[key], atol=1e-3)

    assert main(["register", *common, "--out", str(tmp_path / "local"), "--no-figure"]) == 0
    assert main(["register", *common, "--out", str(tmp_path / "remote"), "--no-figure", *remote]) == 0
    assert f"on {server.url}" in capsys.readouterr().err
    names = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert sorted(p.name for p in (tmp_path / "remote").iterdir()) == names
    for name in ("field.nii.gz", "inverse_field.nii.gz"):
        a = read_volume_vectors(tmp_path / "local" / name)
        np.testing.assert_allclose(read_volume_vectors(tmp_path / "remote" / name), a, atol=1e-4)
    np.testing.assert_allclose(
        read_volume(tmp_path / "remote" / "moving_resampled.nii.gz").array,
        read_volume(tmp_path / "local" / "moving_resampled.nii.gz").array,
        atol=1e-3,
    )
    # outputs exist now: refused before anything is sent, unless --force
    assert main(["register", *common, "--out", str(tmp_path / "remote"), "--no-figure", *remote]) == 2
    assert main(["register", *common, "--out", str(tmp_path / "remote"), "--no-figure", "--force", *remote]) == 0
    # (--mask and the per-scan HU offsets with --server: test_server_mask_offset.py)


def read_volume_vectors(path):
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path), sitk.sitkVectorFloat64))


def _job_sets(folder):
    """The job result files in a session folder, by the random part a job's files share."""
    sets: dict = {}
    for p in folder.iterdir() if folder.is_dir() else []:
        found = FILE_NAME.match(p.name)
        if found:
            sets.setdefault(found.group(2), set()).add(found.group(1))
    return sets


def test_a_register_jobs_files_appear_together_under_one_name_and_belong_together(server, files, tmp_path):
    """The worker writes the job's field, inverse and warped scan as one set in the session's folder:
    polled every 2 ms while the job runs, the folder shows none of them or all three, never a part
    (a client listing or downloading them meanwhile finds no half set); the inverse undoes the field."""
    c = _loaded(server.client(files["tokens"][0]), files)
    sid = c.session
    folder = server.folder / "work" / "sessions" / sid
    job = c._call(
        "POST",
        f"/v1/sessions/{sid}/jobs",
        {"op": "register", "fixed": "f", "moving": "m", "warped": True, "inverse": True},
    )
    seen, staged_while_hidden = [], False
    state = "queued"
    while state in ("queued", "running"):
        sets = _job_sets(folder)
        seen.append(sorted(map(sorted, sets.values())))
        staged_while_hidden |= not sets and any(staged(s) for s in folder.glob(f"{STAGE_PREFIX}*"))
        state = c._call("GET", f"/v1/sessions/{sid}/jobs/{job['job']}")["state"]
        time.sleep(0.002)
    assert state == "done"
    assert all(kinds in ([], [["field", "inverse", "warped"]]) for kinds in seen), seen
    assert staged_while_hidden  # the poll saw the set being built aside, not only before and after
    result = c._call("GET", f"/v1/sessions/{sid}/jobs/{job['job']}")["result"]
    names = [result["file"], result["warped_file"], result["inverse_file"]]
    assert len({FILE_NAME.match(n).group(2) for n in names}) == 1  # one job, one set, one name
    with server.http(files["tokens"][0]) as http:
        for n in names:
            r = http.get(f"/v1/sessions/{sid}/files/{n}")
            assert r.status_code == 200
            (tmp_path / n).write_bytes(r.content)
    lm = files["lm"].points
    there = _mapped(tmp_path / result["file"], lm)
    back = _mapped(tmp_path / result["inverse_file"], there)
    # the inverse is sampled on the moving grid (5 mm voxels): it undoes the field to well under a voxel
    assert np.max(np.linalg.norm(back - lm, axis=1)) < 1.0
    c.stop()


def test_a_jobs_result_set_expires_as_a_whole(tmp_path):
    """Past ``--retention`` a job's files go together, once the newest is past it: a field written
    first is not deleted while the warped scan written after it is still kept."""
    tok, other = "0123456789ab", "ba9876543210"
    for name, age in (
        (f"field-{tok}", 10.0),
        (f"inverse-{tok}", 10.0),
        (f"warped-{tok}", 1.0),
        (f"heatmap-{other}", 10),
    ):
        (tmp_path / f"{name}.nrrd").write_bytes(b"result")
        os.utime(tmp_path / f"{name}.nrrd", (1000.0 - age, 1000.0 - age))
    (tmp_path / "upload-a.nrrd").write_bytes(b"scan")  # an upload: not a result, never expired here
    assert expire_results(tmp_path, 5.0, now=1000.0) == [f"heatmap-{other}.nrrd"]
    assert sorted(expire_results(tmp_path, 5.0, now=1005.0)) == [
        f"{k}-{tok}.nrrd" for k in ("field", "inverse", "warped")
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["upload-a.nrrd"]
