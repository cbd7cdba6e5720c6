"""The background worker as a real subprocess: protocol end to end, errors, cancel, crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from MedDIFTLib.data.image_io import write_volume
from MedDIFTLib.errors import CancelledError
from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
from MedDIFTLib.service.client import WorkerClient, WorkerCrashed, WorkerError

ENGINE = {"backbone": "mind-ssc", "device": "cpu", "use_cache": False}


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("worker_phantom")
    pair = make_pair(shape=(64, 64, 64), spacing=(5.0, 5.0, 5.0), seed=1)
    write_volume(pair.fixed, folder / "fixed.nrrd")
    write_volume(pair.moving, folder / "moving.nrrd")
    return folder, pair, sample_landmarks(pair, n=6, seed=1)


@pytest.fixture
def client(tmp_path):
    env = dict(os.environ, MEDDIFT_WEIGHTS_DIR=str(tmp_path / "none"), MEDDIFT_CACHE_DIR=str(tmp_path / "cache"))
    c = WorkerClient(env=env)
    c.start(timeout=120)
    yield c
    c.kill()


def test_protocol_end_to_end(client, phantom_files, tmp_path):
    folder, pair, lm = phantom_files
    assert client.request("ping")["protocol"] == 1
    conf = client.request("configure", engine=ENGINE, matching={"radius_mm": 25.0})
    assert conf["backbone"] == "mind-ssc" and "weight-free" in conf["note"] and conf["device"] == "cpu"
    assert client.request("load_volume", name="f", path=str(folder / "fixed.nrrd"))["shape"] == [64, 64, 64]
    client.request("load_volume", name="m", path=str(folder / "moving.nrrd"))
    events = []
    res = client.request("extract", name="f", on_event=events.append)
    assert res["levels"] == ["mind2", "mind4"]
    assert {e["stage"] for e in events} >= {"preprocess", "mind-ssc"} and events[-1]["fraction"] == 1.0
    out = client.request("match", fixed="f", moving="m", points=lm.points.tolist(), labels=lm.labels)
    assert out["labels"] == lm.labels and len(out["points"]) == len(lm)
    # the same numbers as the engine in this process
    from MedDIFTLib.matching.priors import identity_prior
    from MedDIFTLib.matching.search import MatchOptions
    from MedDIFTLib.session import EngineOptions, MatchSession

    local = (
        MatchSession(EngineOptions(**ENGINE), MatchOptions(radius_mm=25.0))
        .match(pair.fixed, pair.moving, lm, prior=identity_prior)
        .points
    )
    np.testing.assert_allclose(np.array(out["points"]), local.points, atol=1e-3)
    hm = client.request("heatmap", fixed="f", moving="m", point=lm.points[0].tolist(), out=str(tmp_path / "h.nrrd"))
    assert (tmp_path / "h.nrrd").exists() and hm["max"] <= 1.0 + 1e-5
    assert client.request("shutdown") == {"bye": True}
    client.proc.wait(timeout=10)
    assert client.proc.returncode == 0


def test_out_of_order_and_malformed_requests_get_clear_errors(client, phantom_files):
    folder, _, _ = phantom_files
    with pytest.raises(WorkerError, match="not configured: send 'configure' first"):
        client.request("extract", name="f")
    client.request("configure", engine=ENGINE)
    with pytest.raises(WorkerError, match="volume 'f' is not loaded; send 'load_volume' first"):
        client.request("match", fixed="f", moving="m", points=[[0, 0, 0]])
    with pytest.raises(WorkerError, match="unknown command 'fly'"):
        client.request("fly")
    with pytest.raises(WorkerError, match=r"nowhere\.nrrd: no such file"):
        client.request("load_volume", name="x", path=str(folder / "nowhere.nrrd"))
    with pytest.raises(WorkerError, match="unknown engine options"):
        client.request("configure", engine={"backbone": "mind-ssc", "speed": "max"})
    # a broken line: answered with a protocol error, and the worker keeps serving
    client.proc.stdin.write("{not json\n")
    client.proc.stdin.flush()
    deadline = time.time() + 10
    while time.time() < deadline:
        msgs = client.poll()
        bad = [m for m in msgs if m.get("kind") == "ProtocolError"]
        if bad:
            break
        time.sleep(0.05)
    assert bad and "malformed request" in bad[0]["error"]
    assert client.request("ping")["protocol"] == 1


def test_cancel_between_stages(client, phantom_files, tmp_path):
    """A cancel sent while extraction runs stops it at the next stage boundary."""
    from MedDIFTLib.evaluation.phantom import make_thorax

    big, _, _ = make_thorax(shape=(192, 192, 192), spacing=(1.6, 1.6, 1.6), seed=0)
    write_volume(big, tmp_path / "big.nrrd")
    client.request("configure", engine={**ENGINE, "levels": ["mind1", "mind2", "mind4"]})
    client.request("load_volume", name="big", path=str(tmp_path / "big.nrrd"))
    rid = client.send("extract", name="big")
    seen = []
    while True:  # wait until the extraction has started, then cancel
        msgs = client.poll()
        seen += msgs
        if any(m.get("id") == rid and m.get("event") == "progress" for m in msgs):
            break
        time.sleep(0.01)
    assert client.request("cancel")["cancelled"] is True
    with pytest.raises(CancelledError):
        while True:
            for m in client.poll():
                if m.get("id") == rid and "ok" in m:
                    if m["kind"] == "CancelledError":
                        raise CancelledError(m["error"])
                    pytest.fail(f"extraction was not cancelled: {m}")
            time.sleep(0.01)
    assert client.request("ping")["protocol"] == 1  # still alive and serving


def test_killed_worker_is_reported_as_a_crash(client):
    client.request("configure", engine=ENGINE)
    os.kill(client.pid, signal.SIGKILL)
    with pytest.raises(WorkerCrashed, match="the worker process ended"):
        client.request("ping", timeout=30)


def test_stdout_carries_only_protocol_lines(tmp_path):
    """Library output (logging, prints) goes to stderr: every stdout line is JSON."""
    env = dict(os.environ, MEDDIFT_WEIGHTS_DIR=str(tmp_path / "none"))
    reqs = (
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": 1, "cmd": "configure", "engine": {"backbone": "auto", "use_cache": False}},
                {"id": 2, "cmd": "shutdown"},
            ]
        )
        + "\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "MedDIFTLib.service.worker"],
        input=reqs,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0]["event"] == "ready" and lines[1]["ok"] and lines[2]["result"] == {"bye": True}
    assert proc.returncode == 0
