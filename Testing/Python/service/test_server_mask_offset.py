"""``--mask`` and the per-scan HU offsets through a real ``meddift serve`` (TLS, tokens, 127.0.0.1):
the same CSV as a local run, the same bytes with and without an offset never taken for each other,
bad offsets and unreadable masks refused in the request (4xx, no stack trace, the server serving
on), and a session's mask out of reach of another token."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi, uvicorn, httpx) is not installed")

from server_helpers import ENGINE, ServerProcess, phantom_files  # noqa: E402

from MedDIFTLib.cli import main  # noqa: E402
from MedDIFTLib.data.image_io import write_volume  # noqa: E402
from MedDIFTLib.data.landmark_io import read_points  # noqa: E402
from MedDIFTLib.service.remote_client import WorkerError  # noqa: E402

MATCHING = {"radius_mm": 30.0}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    files = phantom_files(tmp_path_factory.mktemp("server_mask_offset"), 40, seed=3, n_landmarks=5)
    folder, pair = files["folder"], files["pair"]
    raw = pair.moving.with_array(np.asarray(pair.moving.array, dtype=np.float32) + np.float32(1024))
    write_volume(raw, folder / "moving-raw.nrrd")  # a CT stored without its rescale: -1024 corrects it
    i, j, k = np.indices(pair.moving.shape)
    mask = ((i // 4 + j // 4 + k // 4) % 2 == 0).astype(np.uint8)  # 4-voxel blocks: candidates in every window
    write_volume(pair.moving.with_array(mask, name="mask"), folder / "mask.nrrd")
    (folder / "broken-mask.nrrd").write_bytes(b"NRRD0004\nthis is not an image\n")
    return {**files, "mask": mask}


@pytest.fixture(scope="module")
def server(files):
    s = ServerProcess(files["folder"] / "srv", "--token-file", files["token_file"], tls=files["tls"])
    yield s
    s.kill()


@pytest.fixture
def cli(files, server, tmp_path, monkeypatch):
    """``meddift match`` on the module's files, locally or (remote=True) through the server: (exit code, CSV path)."""
    monkeypatch.setenv("MEDDIFT_WEIGHTS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("MEDDIFT_CACHE_DIR", str(tmp_path / "cache"))
    f = files["folder"]

    def run(out: str, moving: str, *extra: str, remote: bool = False):
        args = [
            "match",
            str(f / "fixed.nrrd"),
            str(f / moving),
            "--points",
            str(f / "points.csv"),
            "--backbone",
            "mind-ssc",
            "--radius",
            "30",
            "--out",
            str(tmp_path / out),
            *extra,
        ]
        if remote:
            args += ["--server", server.url, "--token-file", files["token_file"], "--ca-file", files["tls"]["ca"]]
        return main(args), tmp_path / out

    return run


def test_moving_hu_offset_through_the_server_equals_the_local_run(cli, capsys):
    rc_local, local = cli("local.csv", "moving-raw.nrrd", "--moving-hu-offset", "-1024")
    rc_remote, remote = cli("remote.csv", "moving-raw.nrrd", "--moving-hu-offset", "-1024", remote=True)
    assert rc_local == rc_remote == 0
    assert remote.read_text(encoding="utf-8") == local.read_text(encoding="utf-8")
    err = capsys.readouterr().err
    assert "does not look like a CT" not in err  # the offset was applied on the server: the scan is in HU
    # and without the offset the server warns as a local run does, naming the remedy
    assert cli("plain.csv", "moving-raw.nrrd", remote=True)[0] == 0
    assert "--moving-hu-offset -1024" in capsys.readouterr().err


def test_the_same_bytes_with_and_without_an_offset_are_two_volumes(server, files):
    f, lm = files["folder"], files["lm"]
    c = server.client(files["tokens"][0])
    try:
        c.request("configure", engine=ENGINE, matching=MATCHING)
        c.request("load_volume", name="f", path=str(f / "fixed.nrrd"))
        c.request("load_volume", name="hu", path=str(f / "moving.nrrd"))
        shifted = c.request("load_volume", name="shifted", path=str(f / "moving-raw.nrrd"), hu_offset=-1024)
        plain = c.request("load_volume", name="plain", path=str(f / "moving-raw.nrrd"))  # same bytes, no offset
        assert shifted["hu_offset"] == -1024.0 and "hu_offset" not in plain
        assert plain["deduplicated"] and plain["sha256"] == shifted["sha256"]  # the upload is shared ...

        def match(moving):
            return c.request("match", fixed="f", moving=moving, points=lm.points.tolist(), labels=lm.labels)

        # ... but not the volume: the one without the offset is the unrescaled scan, warned about
        r_plain, r_shifted, r_hu = match("plain"), match("shifted"), match("hu")
        assert any("does not look like a CT" in w for w in r_plain["warnings"])
        assert not any("does not look like a CT" in w for w in r_shifted["warnings"])
        # -1024 undoes the +1024 (up to float32 rounding of the voxels): the HU scan's result
        assert r_shifted["labels"] == r_hu["labels"]
        np.testing.assert_allclose(r_shifted["points"], r_hu["points"], atol=0.05)
        # the other order, in a second session while the first holds the upload: without, then with
        b = server.client(files["tokens"][1])
        try:
            b.request("configure", engine=ENGINE, matching=MATCHING)
            b.request("load_volume", name="f", path=str(f / "fixed.nrrd"))
            assert b.request("load_volume", name="p", path=str(f / "moving-raw.nrrd"))["deduplicated"]
            assert b.request("load_volume", name="s", path=str(f / "moving-raw.nrrd"), hu_offset=-1024.0)[
                "deduplicated"
            ]
            for moving, expected in (("p", r_plain), ("s", r_shifted)):
                assert (
                    b.request("match", fixed="f", moving=moving, points=lm.points.tolist(), labels=lm.labels)
                    == expected
                )
        finally:
            b.stop()
    finally:
        c.stop()


def test_mask_through_the_server_equals_the_local_run_and_holds_every_match(cli, files):
    # on voxels (no sub-voxel refinement, which may step half a voxel off the mask): the check below is exact
    mask = ["--mask", str(files["folder"] / "mask.nrrd"), "--no-subvoxel"]
    rc_local, local = cli("mask-local.csv", "moving.nrrd", *mask)
    rc_remote, remote = cli("mask-remote.csv", "moving.nrrd", *mask, remote=True)
    assert rc_local == rc_remote == 0
    assert remote.read_text(encoding="utf-8") == local.read_text(encoding="utf-8")
    matched = read_points(remote)
    ok = np.all(np.isfinite(matched.points), axis=1)
    assert ok.any()
    ijk = np.rint(files["pair"].moving.world_to_ijk(matched.points[ok])).astype(int)
    assert (files["mask"][tuple(ijk.T)] > 0).all()
    # the mask changed the result (else this test would prove nothing)
    assert cli("nomask.csv", "moving.nrrd", "--no-subvoxel", remote=True)[1].read_text(
        encoding="utf-8"
    ) != remote.read_text(encoding="utf-8")


def test_bad_offsets_and_an_unreadable_mask_are_4xx_in_plain_words(server, files, cli, capsys):
    f = files["folder"]
    c = server.client(files["tokens"][0])
    try:
        c.request("configure", engine=ENGINE, matching=MATCHING)
        sid = c.session
        with server.http(files["tokens"][0]) as h:
            for value in ("nan", "inf", "abc", "1e9"):
                r = h.put(
                    f"/v1/sessions/{sid}/volumes/m",
                    params={"hu_offset": value},
                    content=(f / "moving.nrrd").read_bytes(),
                    headers={"Content-Type": "application/octet-stream"},
                )
                assert r.status_code == 400 and "'hu_offset' must be a finite number" in r.json()["error"], r.text
            for value in ("-1024", True, [1], None):
                body = {"sha256": "0" * 64, "hu_offset": value}
                r = h.post(f"/v1/sessions/{sid}/volumes/m/attach", json=body)
                assert r.status_code == (404 if value is None else 400), r.text
            r = h.post(
                f"/v1/sessions/{sid}/volumes/m/attach",
                content=b'{"sha256": "%s", "hu_offset": NaN}' % (b"0" * 64),
                headers={"Content-Type": "application/json"},
            )
            assert r.status_code == 400 and "finite" in r.json()["error"]
            assert h.get(f"/v1/sessions/{sid}/volumes").json()["volumes"] == []  # nothing half-loaded
        with pytest.raises(WorkerError, match="not a readable image"):
            c.request("load_volume", name="mask", path=str(f / "broken-mask.nrrd"))
        with pytest.raises(WorkerError, match="'hu_offset' must be a finite number"):
            c.request("load_volume", name="m", path=str(f / "moving.nrrd"), hu_offset="-1024")
        assert c.request("ping")["protocol"] == 1  # still serving
    finally:
        c.stop()
    capsys.readouterr()
    rc, out = cli("broken.csv", "moving.nrrd", "--mask", str(f / "broken-mask.nrrd"), remote=True)
    err = capsys.readouterr().err
    assert rc == 2 and "not a readable image" in err and "Traceback" not in err and not out.exists()
    assert "Traceback" not in server.log()


def test_another_token_cannot_use_the_uploaded_mask(server, files):
    f, lm = files["folder"], files["lm"]
    a, b = server.client(files["tokens"][0]), server.client(files["tokens"][1])
    try:
        for c in (a, b):
            c.request("configure", engine=ENGINE, matching=MATCHING)
            c.request("load_volume", name="f", path=str(f / "fixed.nrrd"))
            c.request("load_volume", name="m", path=str(f / "moving.nrrd"))
        a.request("load_volume", name="mask", path=str(f / "mask.nrrd"))
        a.request("match", fixed="f", moving="m", points=lm.points.tolist(), labels=lm.labels, mask="mask")
        with pytest.raises(WorkerError, match="no volume 'mask'"):
            b.request("match", fixed="f", moving="m", points=lm.points.tolist(), labels=lm.labels, mask="mask")
        with server.http(files["tokens"][1]) as h:  # nor through A's session
            r = h.post(
                f"/v1/sessions/{a.session}/jobs",
                json={"op": "match", "fixed": "f", "moving": "m", "points": lm.points.tolist(), "mask": "mask"},
            )
            assert r.status_code == 404
            assert h.get(f"/v1/sessions/{a.session}/volumes").status_code == 404
    finally:
        a.stop()
        b.stop()
