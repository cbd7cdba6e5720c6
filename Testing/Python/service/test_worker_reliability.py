"""Issue 13 through the worker (a real subprocess): options in protocol words with hints, per-volume
HU offset, a heatmap never written over a loaded input or an existing file."""

from __future__ import annotations

import os

import pytest

from MedDIFTLib.data.image_io import write_volume
from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks
from MedDIFTLib.service.client import WorkerClient, WorkerError

ENGINE = {"backbone": "mind-ssc", "device": "cpu", "use_cache": False}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("rel_worker")
    pair = make_pair(shape=(48, 48, 48), spacing=(6.0, 6.0, 6.0), seed=1)
    write_volume(pair.fixed, d / "fixed.nrrd")
    write_volume(pair.moving, d / "moving.nrrd")
    return d, sample_landmarks(pair, n=4, seed=1)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    t = tmp_path_factory.mktemp("rel_worker_env")
    c = WorkerClient(env=dict(os.environ, MEDDIFT_WEIGHTS_DIR=str(t / "none"), MEDDIFT_CACHE_DIR=str(t / "c")))
    c.start(timeout=120)
    yield c
    c.kill()


@pytest.mark.parametrize(
    "engine, option, field",
    [
        ({"device": "tpu"}, "device", "engine.device"),
        ({"timestep": -1}, "timestep", "engine.timestep"),
        ({"region": "moon"}, "region", "engine.region"),
    ],
)
def test_bad_engine_options_refused_with_hints(client, engine, option, field):
    with pytest.raises(WorkerError) as info:
        client.request("configure", engine={**ENGINE, **engine})
    assert any(h["option"] == option for h in info.value.hints)
    from MedDIFTLib.errors import render

    assert field in render(info.value, "worker") and "--" not in render(info.value, "worker")


def test_radius_zero_is_global_and_maisi_only_options_are_warned(client):
    conf = client.request("configure", engine={**ENGINE, "ensemble": 2}, matching={"radius_mm": 0})
    assert conf["backbone"] == "mind-ssc" and len(conf["warnings"]) == 1 and "engine.ensemble" in conf["warnings"][0]


def test_heatmap_never_replaces_a_loaded_input_or_an_existing_file(client, files, tmp_path):
    d, lm = files
    client.request("configure", engine=ENGINE, matching={"radius_mm": 25.0})
    client.request("load_volume", name="f", path=str(d / "fixed.nrrd"))
    client.request("load_volume", name="m", path=str(d / "moving.nrrd"))
    before = (d / "moving.nrrd").read_bytes()
    point = lm.points[0].tolist()
    for force in (False, True):
        with pytest.raises(WorkerError, match="is loaded volume 'm'"):
            client.request("heatmap", fixed="f", moving="m", point=point, out=str(d / "moving.nrrd"), force=force)
    assert (d / "moving.nrrd").read_bytes() == before
    (tmp_path / "old.nrrd").write_text("keep")
    with pytest.raises(WorkerError, match="output exists"):
        client.request("heatmap", fixed="f", moving="m", point=point, out=str(tmp_path / "old.nrrd"))
    assert (tmp_path / "old.nrrd").read_text() == "keep"
    client.request("heatmap", fixed="f", moving="m", point=point, out=str(tmp_path / "old.nrrd"), force=True)
    assert (tmp_path / "old.nrrd").stat().st_size > 100


def test_prior_without_radius_is_refused_in_protocol_words(client, files):
    d, lm = files
    client.request("configure", engine=ENGINE, matching={})
    client.request("load_volume", name="f", path=str(d / "fixed.nrrd"))
    client.request("load_volume", name="m", path=str(d / "moving.nrrd"))
    with pytest.raises(WorkerError) as info:
        client.request("match", fixed="f", moving="m", points=lm.points.tolist(), labels=lm.labels, prior="coarse")
    from MedDIFTLib.errors import render

    assert "matching.radius_mm = MM" in render(info.value, "worker")


def test_hu_offset_is_per_loaded_volume(client, files):
    d, _ = files
    client.request("configure", engine=ENGINE, matching={"radius_mm": 25.0})
    with pytest.raises(WorkerError, match="hu_offset"):
        client.request("load_volume", name="x", path=str(d / "fixed.nrrd"), hu_offset="a lot")
    with pytest.raises(WorkerError, match="unknown engine options.*hu_offset"):
        client.request("configure", engine={**ENGINE, "hu_offset": -1024})
    assert client.request("load_volume", name="x", path=str(d / "fixed.nrrd"), hu_offset=-1024)["shape"] == [48] * 3
