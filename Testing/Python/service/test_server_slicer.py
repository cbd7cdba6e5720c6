"""The module's "Compute on: server" setting: the same logic, job runner and live click, driven
through a real ``meddift serve`` (TLS, token) into a real MRML scene (slicer-core)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi, uvicorn, httpx) is not installed")
slicer = pytest.importorskip("slicer", reason="slicer-core (Slicer's MRML library) is not installed")

from server_helpers import ServerProcess, make_tls, make_tokens, wait_until  # noqa: E402

from MedDIFTLib.errors import InputError  # noqa: E402
from MedDIFTLib.evaluation.metrics import tre  # noqa: E402
from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks  # noqa: E402
from MedDIFTLib.service.client import WorkerClient, WorkerCrashed  # noqa: E402
from MedDIFTLib.service.remote_client import RemoteClient  # noqa: E402
from MedDIFTSceneLib.logic import MatchRequest, MedDIFTLogicCore  # noqa: E402
from MedDIFTSceneLib.remote import ComputeSettings, use_settings  # noqa: E402
from MedDIFTSceneLib.scene import add_volume_node, volume_from_node, write_markups  # noqa: E402


class FakeQSettings:
    """The three calls of QSettings the setting uses, over a dict (what would be on disk)."""

    def __init__(self):
        self.stored = {}

    def value(self, key, default=None):
        return self.stored.get(key, default)

    def setValue(self, key, value):
        self.stored[key] = value

    def remove(self, key):
        self.stored.pop(key, None)


def test_the_token_is_stored_only_when_asked():
    qs = FakeQSettings()
    s = ComputeSettings(where="server", url="https://gpu:8765", token="s3cret-token-0123456789", ca_file="/ca.pem")
    s.save(qs)
    assert "s3cret-token-0123456789" not in qs.stored.values()
    back = ComputeSettings.load(qs)
    assert (back.where, back.url, back.ca_file, back.token) == ("server", "https://gpu:8765", "/ca.pem", "")
    s.store_token = True
    s.save(qs)
    assert ComputeSettings.load(qs).token == "s3cret-token-0123456789"
    s.store_token = False  # unticking forgets the stored token
    s.save(qs)
    assert "s3cret-token-0123456789" not in qs.stored.values() and ComputeSettings.load(qs).token == ""
    assert "s3cret" not in s.describe()
    with pytest.raises(InputError, match="token"):
        ComputeSettings(where="server", url="https://gpu:8765").check()
    with pytest.raises(InputError, match="must start with https://"):
        ComputeSettings(where="server", url="gpu:8765", token="t" * 20).check()


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slicer_remote")
    token_file, tokens = make_tokens(folder, 1)
    tls = make_tls(folder / "tls")
    server = ServerProcess(folder, "--token-file", token_file, tls=tls)
    yield server, ComputeSettings(where="server", url=server.url, token=tokens[0], ca_file=tls["ca"])
    server.kill()


def _scene(n_points, seed=5):
    pair = make_pair(shape=(64, 64, 64), spacing=(5.0, 5.0, 5.0), seed=seed)
    scene = slicer.vtkMRMLScene()
    fixed = add_volume_node(scene, pair.fixed, "fixed")
    moving = add_volume_node(scene, pair.moving, "moving")
    lm = sample_landmarks(pair, n=n_points, seed=seed)
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "F")
    write_markups(points, lm, locked=False)
    return scene, pair, lm, fixed, moving, points


def _node_ids(scene):
    return sorted(scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes()))


def test_a_job_and_a_live_click_run_on_the_server(remote):
    server, settings = remote
    scene, pair, lm, fixed, moving, points = _scene(6)
    logic = MedDIFTLogicCore(scene)
    use_settings(logic, settings)
    job = logic.start_match(
        MatchRequest(
            fixed.GetID(),
            moving.GetID(),
            points.GetID(),
            engine={"backbone": "mind-ssc", "device": "cpu"},
            matching={"radius_mm": 25.0},
        )
    ).run(timeout=300)
    assert job.error is None, job.log
    assert "mind-ssc" in job.configure_result["backbone"] and job.configure_result["device"] == "cpu"
    matched = job.result["matched"]
    truth = pair.true_moving_points(lm.points)
    assert matched.labels == lm.labels
    assert np.median(tre(matched.points, truth)) < np.median(tre(lm.points, truth))
    assert job.result["heatmap_node"].GetImageData() is not None
    points.SetNthControlPointPosition(0, *(lm.points[0] + np.array([5.0, 0.0, 0.0])))
    live = logic.match_point(job, 0)  # features cached on the server: a click is a round trip or two
    assert live["label"] == lm.labels[0] and np.isfinite(live["point"]).all()
    logic.shutdown()


def test_server_killed_mid_job_leaves_the_scene_as_it_was(tmp_path):
    token_file, tokens = make_tokens(tmp_path, 1)
    server = ServerProcess(tmp_path, "--token-file", token_file)
    try:
        scene, pair, lm, fixed, moving, points = _scene(80, seed=6)
        before = _node_ids(scene)
        logic = MedDIFTLogicCore(scene)
        use_settings(logic, ComputeSettings(where="server", url=server.url, token=tokens[0]))
        job = logic.start_match(
            MatchRequest(fixed.GetID(), moving.GetID(), points.GetID(), engine={"backbone": "mind-ssc"}, matching={})
        )  # global: seconds
        wait_until(lambda: not job.poll() or job.stage.startswith("match"), timeout=120)
        assert not job.done and job.stage.startswith("match"), job.log  # killed mid-job, not after
        server.kill()
        wait_until(lambda: not job.poll(), timeout=60)
        assert isinstance(job.error, WorkerCrashed), job.log
        assert "stopped" in str(job.error) or "cannot be reached" in str(job.error)
        assert _node_ids(scene) == before and job.result is None
        assert not logic.client.alive  # the next job opens a new session
    finally:
        server.kill()


def test_dense_matching_transform_and_warp_on_the_server_equal_this_computer(remote, no_weights):
    """The panel's dense options (points from the registration, the transform node, the warped volume)
    through the server: its register job's files come back into the scene as on this computer."""
    server, settings = remote
    results = {}
    for where in ("local", "server"):
        scene, pair, lm, fixed, moving, points = _scene(5, seed=8)
        logic = MedDIFTLogicCore(scene)
        use_settings(logic, settings if where == "server" else ComputeSettings())
        job = logic.start_match(
            MatchRequest(
                fixed.GetID(),
                moving.GetID(),
                points.GetID(),
                engine={"backbone": "mind-ssc", "device": "cpu"},
                matching={},
                prior="dense",
                transform=True,
                warp=True,
            )
        ).run(timeout=300)
        logic.shutdown()
        assert job.error is None, job.log
        assert isinstance(job.client, RemoteClient if where == "server" else WorkerClient)
        tx, warped = job.result["transform_node"], job.result["warped_node"]
        mapped = [tx.GetTransformFromParent().TransformPoint(pt.tolist()) for pt in lm.points]  # fixed -> moving
        results[where] = (job.result["matched"].points, np.array(mapped), volume_from_node(warped).array.copy())
    np.testing.assert_allclose(results["server"][0], results["local"][0], atol=1e-4)
    np.testing.assert_allclose(results["server"][1], results["local"][1], atol=1e-4)  # the map at the landmarks
    np.testing.assert_allclose(results["server"][2], results["local"][2], atol=1e-3)
    assert not np.allclose(results["server"][1], lm.points, atol=0.5)  # a map that moves points
