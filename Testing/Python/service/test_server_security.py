"""``meddift serve`` security rows, each against a real server process on 127.0.0.1: tokens,
TLS, what the server refuses to bind, session isolation, protocol versions, nothing leaked."""

from __future__ import annotations

import statistics
import subprocess
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi, uvicorn, httpx) is not installed")

from server_helpers import ENGINE, ServerProcess, make_tls, make_tokens, serve_command, server_env  # noqa: E402

from MedDIFTLib.data.image_io import write_volume  # noqa: E402
from MedDIFTLib.evaluation.phantom import make_pair  # noqa: E402
from MedDIFTLib.service.client import WorkerCrashed, WorkerError  # noqa: E402


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("secure_server")
    token_file, tokens = make_tokens(folder, 2)
    tls = make_tls(folder / "tls")
    server = ServerProcess(folder, "--token-file", token_file, tls=tls)
    pair = make_pair(shape=(32, 32, 32), spacing=(6.0, 6.0, 6.0), seed=3)
    write_volume(pair.fixed, folder / "f.nrrd")
    write_volume(pair.moving, folder / "m.nrrd")
    yield server, tokens, folder
    server.kill()


def test_missing_or_wrong_token_gets_401_in_constant_time_and_no_token_is_logged(tls_server):
    server, tokens, _ = tls_server
    good = tokens[0]
    near_miss = good[:-1] + ("A" if good[-1] != "A" else "B")  # right but for the last character
    far_miss = ("A" if good[0] != "A" else "B") + good[1:]  # wrong from the first character
    for token in (None, "", near_miss, far_miss, good + "x", "not-the-token-at-all"):
        with server.http(token) as http:
            for method, route in (
                ("GET", "/v1/info"),
                ("POST", "/v1/sessions"),
                ("GET", "/v1/sessions/x/volumes"),
                ("PUT", "/v1/sessions/x/volumes/f"),
                ("DELETE", "/v1/sessions/x"),
            ):
                r = http.request(method, route, content=b"{}")
                assert r.status_code == 401, (token, route, r.text)
                assert r.headers["www-authenticate"] == "Bearer" and r.json()["kind"] == "Unauthorized"
                assert (token or "@@") not in r.text and good not in r.text
    with server.http(good) as http:
        assert http.get("/v1/info").status_code == 200
    with server.http(tokens[1]) as http:  # every line of the token file is a token
        assert http.get("/v1/info").status_code == 200

    # timing: a token right in all but its last character is refused as fast as one wrong from the
    # first (the server compares fixed-length digests with hmac.compare_digest, every token, no early exit)
    def median_ms(token):
        times = []
        with server.http(token) as http:
            for _ in range(60):
                t = time.perf_counter()
                http.get("/v1/info")
                times.append((time.perf_counter() - t) * 1e3)
        return statistics.median(times)

    near, far = median_ms(near_miss), median_ms(far_miss)
    assert abs(near - far) < max(2.0, 0.5 * min(near, far)), (near, far)
    log = server.log()
    assert "401" in log  # the refusals are logged ...
    for token in tokens + [near_miss, far_miss]:
        assert token not in log  # ... but never a token


def test_tls_client_verifies_the_certificate_with_a_custom_ca(tls_server, tmp_path):
    server, tokens, _ = tls_server
    with pytest.raises(WorkerError, match="cannot verify the certificate.*--ca-file") as err:
        _client_without_ca(server, tokens[0])
    assert err.value.kind == "TLSError"
    other_ca = make_tls(tmp_path / "other")["ca"]  # a CA that did not sign the server's certificate
    from MedDIFTLib.service.remote_client import RemoteClient

    with pytest.raises(WorkerError, match="cannot verify the certificate"):
        RemoteClient(server.url, token=tokens[0], ca_file=other_ca).start(timeout=20)
    with pytest.raises(WorkerCrashed, match="stopped while answering|cannot be reached"):  # plain HTTP to TLS
        RemoteClient(server.url.replace("https:", "http:"), token=tokens[0]).start(timeout=20)
    ready = server.client(tokens[0]).ready  # with the CA file: verified and accepted
    assert ready["protocol"] == 1 and ready["auth"] is True


def _client_without_ca(server, token):
    from MedDIFTLib.service.remote_client import RemoteClient

    return RemoteClient(server.url, token=token).start(timeout=20)


def test_sessions_are_isolated_between_tokens(tls_server):
    server, tokens, folder = tls_server
    alice, bob = server.client(tokens[0]), server.client(tokens[1])
    alice.request("configure", engine=ENGINE, matching={})
    bob.request("configure", engine=ENGINE, matching={})
    alice.request("load_volume", name="f", path=str(folder / "f.nrrd"))
    alice.request("load_volume", name="m", path=str(folder / "m.nrrd"))
    job = alice._call("POST", f"/v1/sessions/{alice.session}/jobs", {"op": "extract", "name": "f"}, params={"wait": 30})
    assert job["state"] == "done"
    heat = alice.request("heatmap", fixed="f", moving="m", point=[0.0, 0.0, 0.0], out=str(folder / "h.nrrd"))
    assert heat["max"] <= 1.0 + 1e-5
    sid = alice.session
    fname = alice._call(
        "POST",
        f"/v1/sessions/{sid}/jobs",
        {"op": "heatmap", "fixed": "f", "moving": "m", "point": [0.0, 0.0, 0.0]},
        params={"wait": 30},
    )["result"]["file"]
    with server.http(tokens[1]) as http:  # Bob, with Alice's session id (which he should not even have)
        nowhere = http.get("/v1/sessions/no-such-session/volumes")
        for method, route in (
            ("GET", f"/v1/sessions/{sid}/volumes"),
            ("GET", f"/v1/sessions/{sid}/jobs/{job['job']}"),
            ("POST", f"/v1/sessions/{sid}/jobs/{job['job']}/cancel"),
            ("POST", f"/v1/sessions/{sid}/cancel"),
            ("GET", f"/v1/sessions/{sid}/files/{fname}"),
            ("DELETE", f"/v1/sessions/{sid}"),
        ):
            r = http.request(method, route)
            assert r.status_code == 404, (route, r.text)
            # the same answer as for a session that does not exist: nothing says Alice's exists
            assert r.json()["error"] == nowhere.json()["error"].replace("no-such-session", sid)
        r = http.post(
            f"/v1/sessions/{sid}/jobs", json={"op": "match", "fixed": "f", "moving": "m", "points": [[0, 0, 0]]}
        )
        assert r.status_code == 404
    # in his own session Bob has no volumes, and cannot name Alice's
    assert bob._call("GET", f"/v1/sessions/{bob.session}/volumes") == {"volumes": []}
    with pytest.raises(WorkerError, match="no volume 'f' in this session"):
        bob.request("match", fixed="f", moving="m", points=[[0.0, 0.0, 0.0]])
    with pytest.raises(WorkerError, match="no job"):
        bob._call("GET", f"/v1/sessions/{bob.session}/jobs/{job['job']}")
    # Alice's session is intact after all that
    assert alice._call("GET", f"/v1/sessions/{sid}/volumes") == {"volumes": ["f", "m"]}
    out = alice.request("match", fixed="f", moving="m", points=[[0.0, 0.0, 0.0]])
    assert np.isfinite(np.array(out["points"], dtype=float)).all()
    alice.stop()
    bob.stop()


def test_a_client_of_another_protocol_version_is_refused_naming_both(tls_server):
    server, tokens, _ = tls_server
    with server.http(tokens[0], protocol="2") as http:
        r = http.get("/v1/info")
    assert r.status_code == 409 and r.json()["kind"] == "ProtocolMismatch"
    assert "client speaks MedDIFT protocol 2" in r.json()["error"] and "speaks protocol 1" in r.json()["error"]
    with server.http(tokens[0], protocol=None) as http:
        assert http.get("/v1/info").status_code == 400
    from MedDIFTLib.service.remote_client import RemoteClient

    with pytest.raises(WorkerError, match="protocol 7.*protocol 1") as err:
        RemoteClient(server.url, token=tokens[0], ca_file=server.tls["ca"], protocol=7).start(timeout=20)
    assert err.value.kind == "ProtocolMismatch"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--host", "0.0.0.0", "--token-file", "{tokens}"], "not a loopback address.*--tls-cert"),
        (["--host", "0.0.0.0", "--no-auth", "--insecure"], "--no-auth is only allowed on a loopback address"),
        (["--host", "127.0.0.1"], "a token is required"),
        (["--no-auth", "--retention", "-5"], r"--retention -5.0: give a finite number of seconds, 0 or more"),
        (["--no-auth", "--max-json-mb", "nan"], r"--max-json-mb nan: give a finite number of MB, over 0"),
    ],
)
def test_exposed_unauthenticated_or_meaninglessly_limited_servers_are_refused_before_binding(tmp_path, args, message):
    token_file, _ = make_tokens(tmp_path)
    cmd = serve_command(0, *[a.replace("{tokens}", token_file) for a in args])  # the case's --host comes last, wins
    env = server_env(tmp_path)
    env.pop("MEDDIFT_TOKEN", None)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2, r.stderr
    import re

    assert re.search(message, r.stderr), r.stderr
    assert "serving on" not in r.stderr
