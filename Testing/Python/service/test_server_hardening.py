"""``meddift serve`` hardened, against real server processes on 127.0.0.1: no token in any log
however it was sent, unknown options refused when the session opens, JSON bodies limited before
they are parsed, and patient scans and results deleted when their session ends, when the server
stops, at the start after a crash, and ``--retention`` seconds after a job wrote them."""

from __future__ import annotations

import subprocess

import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi, uvicorn, httpx) is not installed")

from server_helpers import ENGINE, ServerProcess, free_port, make_tokens, serve_command, server_env, wait_until  # noqa: E402

from MedDIFTLib.data.image_io import write_volume  # noqa: E402
from MedDIFTLib.evaluation.phantom import make_pair  # noqa: E402
from MedDIFTLib.service.client import WorkerError  # noqa: E402
from MedDIFTLib.service.server_access import ApiError  # noqa: E402
from MedDIFTLib.service.server_files import MARKER, check_outputs  # noqa: E402

RETENTION_S = 2.0


@pytest.fixture(scope="module")
def hardened(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hardened_server")
    token_file, tokens = make_tokens(folder, 1)
    work = folder / "work"
    server = ServerProcess(
        folder,
        "--token-file",
        token_file,
        "--work-dir",
        str(work),
        "--max-json-mb",
        "1",
        "--retention",
        str(RETENTION_S),
    )
    pair = make_pair(shape=(32, 32, 32), spacing=(6.0, 6.0, 6.0), seed=5)
    write_volume(pair.fixed, folder / "f.nrrd")
    write_volume(pair.moving, folder / "m.nrrd")
    yield server, tokens[0], folder, work
    server.kill()


def _sessions(work):
    root = work / "sessions"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_no_token_sent_in_a_header_query_string_or_cookie_appears_in_any_log(hardened):
    server, token, _, _ = hardened
    wrong = "wrong-" + token[::-1]
    with server.http(None) as http:
        assert http.get("/v1/info", params={"token": token, "wait": "1"}).status_code == 401  # only the header counts
        assert http.get("/v1/info", params={"access_token": token}).status_code == 401
        assert http.get("/v1/info", headers={"Cookie": f"meddift_token={token}; other={wrong}"}).status_code == 401
        assert http.get("/v1/info", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
        assert http.put("/v1/sessions/x/volumes/f", params={"label": token}, content=b"1").status_code == 401
    with server.http(token) as http:
        assert http.get("/v1/info", params={"token": token}).status_code == 200
        opened = http.post("/v1/sessions", json={"engine": ENGINE}).json()
        http.delete(f"/v1/sessions/{opened['session']}")
    log = wait_until(
        lambda: (lambda text: text if "session " in text and "/v1/sessions/" in text else None)(server.log()),
        timeout=10,
    )
    # the requests were logged, query strings included, with the secrets replaced
    assert "GET /v1/info?token=[redacted]&wait=1" in log
    assert "GET /v1/info?access_token=[redacted]" in log
    assert "label=[redacted]" in log and " 401" in log and " 200" in log
    assert token not in log and wrong not in log and token[:12] not in log


@pytest.mark.parametrize(
    "body, key",
    [
        ({"engine": {**ENGINE, "bakcbone": "mind-ssc"}}, "bakcbone"),
        ({"engine": ENGINE, "matching": {"radius": 20.0}}, "radius"),
        ({"engine": ENGINE, "registration": {"iters": 3}}, "iters"),
        ({"engine": ENGINE, "matchin": {"radius_mm": 20.0}}, "matchin"),
    ],
    ids=["engine", "matching", "registration", "the request itself"],
)
def test_every_option_field_with_an_unknown_key_is_refused_with_400_naming_it(hardened, body, key):
    server, token, _, work = hardened
    before = _sessions(work)
    with server.http(token) as http:
        r = http.post("/v1/sessions", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["kind"] == "BadRequest" and f"'{key}'" in r.json()["error"], r.json()
    assert _sessions(work) == before  # refused before a session (or its folder) existed


def test_an_unknown_registration_option_of_a_register_job_is_refused_with_400(hardened):
    server, token, folder, _ = hardened
    c = server.client(token)
    c.request("configure", engine=ENGINE, matching={})
    c.request("load_volume", name="f", path=str(folder / "f.nrrd"))
    with server.http(token) as http:
        r = http.post(
            f"/v1/sessions/{c.session}/jobs",
            json={"op": "register", "fixed": "f", "moving": "f", "options": {"smoth": 1.0}},
        )
    assert r.status_code == 400 and "'smoth'" in r.json()["error"], r.text
    c.stop()


def test_bad_matching_options_fail_configure_at_once_not_every_later_job(hardened):
    server, token, _, _ = hardened
    c = server.client(token)
    with pytest.raises(WorkerError, match=r"unknown matching option\(s\) \['bogus'\]"):
        c.request("configure", engine=ENGINE, matching={"radius_mm": 20.0, "bogus": 1})
    with pytest.raises(WorkerError, match=r"'matching': top k must be at least 1, got 0"):
        c.request("configure", engine=ENGINE, matching={"top_k": 0})
    assert c.request("configure", engine=ENGINE, matching={"radius_mm": 20.0})["backbone"] == "mind-ssc"
    c.stop()


def test_deep_or_large_json_bodies_get_a_4xx_before_parsing_and_the_server_keeps_serving(hardened):
    server, token, _, _ = hardened
    deep = b"[" * 100_000 + b"]" * 100_000
    big = b'{"engine": {"backbone": "' + b"x" * (1024 * 1024 + 10) + b'"}}'
    with server.http(token) as http:
        sid = http.post("/v1/sessions", json={"engine": ENGINE}).json()["session"]
        for route in ("/v1/sessions", f"/v1/sessions/{sid}/jobs", f"/v1/sessions/{sid}/volumes/f/attach"):
            r = http.post(route, content=deep)
            assert r.status_code == 400, (route, r.text)
            assert r.json() == {
                "error": "the JSON body is nested more than 32 levels deep; MedDIFT requests nest 4 at most",
                "kind": "BadRequest",
            }
        in_a_string = http.post(f"/v1/sessions/{sid}/jobs", json={"op": "extract", "name": "[" * 60})
        assert in_a_string.status_code == 404 and "no volume '[[[" in in_a_string.text  # brackets in a string: text
        r = http.post("/v1/sessions", content=big)  # with a Content-Length
        assert r.status_code == 413 and "--max-json-mb" in r.json()["error"], r.text
        r = http.post("/v1/sessions", content=iter([big[:600_000], big[600_000:]]))  # chunked: counted as read
        assert r.status_code == 413 and "--max-json-mb" in r.json()["error"], r.text
        assert http.get("/v1/info").status_code == 200
        http.delete(f"/v1/sessions/{sid}")
    assert "Traceback" not in server.log() and "RecursionError" not in server.log()


def test_a_session_folder_holds_its_files_until_it_closes_and_results_until_retention(hardened):
    server, token, folder, work = hardened
    c = server.client(token)
    c.request("configure", engine=ENGINE, matching={})
    c.request("load_volume", name="f", path=str(folder / "f.nrrd"))
    c.request("load_volume", name="m", path=str(folder / "m.nrrd"))
    home = work / "sessions" / c.session
    assert (home / MARKER).is_file() and len(list(home.glob("upload-*"))) == 2
    with server.http(token) as http:
        done = http.post(
            f"/v1/sessions/{c.session}/jobs",
            params={"wait": 30},
            json={"op": "heatmap", "fixed": "f", "moving": "m", "point": [0.0, 0.0, 0.0]},
        ).json()
        assert done["state"] == "done", done
        result = home / done["result"]["file"]
        assert result.is_file()  # not downloaded: kept for --retention seconds, then deleted
        wait_until(lambda: not result.exists(), timeout=RETENTION_S + 15)
        r = http.get(f"/v1/sessions/{c.session}/files/{result.name}")
        assert r.status_code == 404 and "kept 2 s: --retention" in r.json()["error"], r.text
    assert len(list(home.glob("upload-*"))) == 2  # the scans stay while the session is open
    c.stop()  # closes the session
    wait_until(lambda: not home.exists(), timeout=10)


def test_session_files_go_when_the_server_stops_and_after_a_crash_at_the_next_start_and_one_server_per_work_dir(
    tmp_path,
):
    token_file, tokens = make_tokens(tmp_path, 1)
    work = tmp_path / "work"
    pair = make_pair(shape=(24, 24, 24), spacing=(6.0, 6.0, 6.0), seed=6)
    write_volume(pair.fixed, tmp_path / "f.nrrd")
    foreign = work / "sessions" / "not-the-servers"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("a user's file under --work-dir")

    def open_with_upload(server):
        c = server.client(tokens[0])
        c.request("configure", engine=ENGINE, matching={})
        c.request("load_volume", name="f", path=str(tmp_path / "f.nrrd"))
        home = work / "sessions" / c.session
        assert list(home.glob("upload-*"))
        return home

    stopped = ServerProcess(tmp_path / "a", "--token-file", token_file, "--work-dir", str(work))
    home = open_with_upload(stopped)
    second = subprocess.run(
        serve_command(free_port(), "--token-file", token_file, "--work-dir", str(work)),
        capture_output=True,
        text=True,
        timeout=120,
        env=server_env(tmp_path),
    )
    assert second.returncode == 2 and "is in use by another meddift serve (pid" in second.stderr, second.stderr
    assert list(home.glob("upload-*"))  # the live session of the first server is untouched
    assert stopped.terminate() == 0  # SIGTERM: the open session is closed and its files deleted
    assert not home.exists()
    crashed = ServerProcess(tmp_path / "b", "--token-file", token_file, "--work-dir", str(work))
    home = open_with_upload(crashed)
    crashed.kill()  # SIGKILL: no chance to clean up
    assert list(home.glob("upload-*"))
    restarted = ServerProcess(tmp_path / "c", "--token-file", token_file, "--work-dir", str(work))
    try:
        assert not home.exists()  # deleted at start-up: its session died with the earlier process
        assert (foreign / "notes.txt").read_text() == "a user's file under --work-dir"  # not the server's: kept
        assert "deleted the files of 1 session(s) of an earlier server run" in restarted.log()
        assert "left " in restarted.log() and "not-the-servers" in restarted.log()
    finally:
        restarted.kill()


def test_a_job_may_write_only_new_files_directly_in_its_session_folder(tmp_path):
    home = tmp_path / "sessions" / "s1"
    home.mkdir(parents=True)
    scan = home / "upload-0123456789abcdef.nrrd"
    scan.write_bytes(b"scan")
    check_outputs(home, {"out": str(home / "field-0123456789ab.nrrd")}, [scan])  # new, in the folder: allowed
    for refused in (
        scan,
        home / MARKER,
        tmp_path / "field-0123456789ab.nrrd",
        home / "sub" / "field.nrrd",
        home / ".." / "s2" / "heatmap-0123456789ab.nrrd",
    ):
        with pytest.raises(ApiError, match="output path was refused") as err:
            check_outputs(home, {"out": str(refused)}, [scan])
        assert err.value.status == 500
    assert scan.read_bytes() == b"scan"
