"""MAISI weights: finding, strict loading and every error, downloads through the real Hub client.

Checkpoints are tiny but in exactly the released format (tiny_maisi.py); the
Hub is a local server on 127.0.0.1 (fake_hub.py), since huggingface.co cannot
be reached here. The real huggingface_hub client does the downloads.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from fake_hub import FakeHub
from MedDIFTLib.cli import main as cli_main
from MedDIFTLib.data import digest
from MedDIFTLib.errors import WeightsError
from MedDIFTLib.features.maisi import download, weights
from MedDIFTLib.features.maisi.networks import MaisiConfig
from tiny_maisi import AUTOENCODER_FILE, TINY_CONFIG, UNET_FILE, write_tiny_checkpoints

TOKEN = "hf_test_token_123"


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No test touches the user's caches, saved login or token, nor a real Hub."""
    import huggingface_hub.constants as c

    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    # huggingface_hub reads these paths once, at import: point them into tmp_path too
    monkeypatch.setattr(c, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    monkeypatch.setattr(c, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf_home" / "stored_tokens"))
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("MEDDIFT_WEIGHTS_DIR", str(tmp_path / "default_weights"))


@pytest.fixture
def no_retry_waits(monkeypatch):
    """huggingface_hub sleeps 1-8 s between retries; the tests keep the retries but not the waits."""
    import huggingface_hub.file_download as fd
    import huggingface_hub.utils._http as hh

    fast = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("_")})
    fast.sleep = lambda s: None
    monkeypatch.setattr(fd, "time", fast)
    monkeypatch.setattr(hh, "time", fast)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    write_tiny_checkpoints(folder, seed=1, scale_factor=0.875)
    return folder


def _hub_files(tiny):
    return {rel: (tiny / rel).read_bytes() for rel in (AUTOENCODER_FILE, UNET_FILE)}


def _leftovers(folder: Path) -> list:
    return [p for p in folder.rglob("*") if p.name.endswith(".incomplete")]


# --- finding -----------------------------------------------------------------------------------


def test_find_weights_in_repo_flat_and_mixed_layouts(tiny, tmp_path):
    paths = weights.find_weights(tiny)
    assert paths == weights.WeightsPaths(tiny / AUTOENCODER_FILE, tiny / UNET_FILE)
    flat = tmp_path / "flat"
    flat.mkdir()
    for rel in (AUTOENCODER_FILE, UNET_FILE):
        shutil.copy(tiny / rel, flat)
    assert weights.find_weights(flat) == weights.WeightsPaths(
        flat / "autoencoder_v1.pt", flat / "diff_unet_3d_ddpm-ct.pt"
    )
    (flat / "models").mkdir()
    shutil.copy(tiny / UNET_FILE, flat / UNET_FILE)  # the repository layout wins over a flat copy
    assert weights.find_weights(flat).unet == flat / UNET_FILE


def test_missing_weights_say_how_to_get_them(tiny, tmp_path):
    (tmp_path / "half" / "models").mkdir(parents=True)
    shutil.copy(tiny / AUTOENCODER_FILE, tmp_path / "half" / AUTOENCODER_FILE)
    with pytest.raises(WeightsError) as err:
        weights.find_weights(tmp_path / "half")
    msg = str(err.value)
    assert msg.startswith(f"MAISI weights not found in {tmp_path / 'half'} (missing diff_unet_3d_ddpm-ct.pt); ")
    assert "`meddift weights download --token YOUR_HF_TOKEN`" in msg and "MEDDIFT_WEIGHTS_DIR or weights_dir" in msg
    from MedDIFTLib.errors import render

    assert "MEDDIFT_WEIGHTS_DIR or --weights-dir" in render(err.value, "cli")  # each interface names its option
    assert "https://huggingface.co/nvidia/NV-Generate-CT is gated" in msg and "accept its licence" in msg


def test_default_folder_comes_from_the_environment(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDDIFT_WEIGHTS_DIR", str(tiny))
    assert weights.default_weights_dir() == tiny
    assert weights.find_weights().unet == tiny / UNET_FILE  # no argument: the offline folder is used
    monkeypatch.delenv("MEDDIFT_WEIGHTS_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if os.name != "nt":
        assert weights.default_weights_dir() == tmp_path / "xdg" / "meddift" / "weights"


# --- loading -----------------------------------------------------------------------------------


def test_tiny_checkpoints_load_strictly_with_their_scale_factor(tiny):
    vae = weights.load_autoencoder(tiny / AUTOENCODER_FILE, TINY_CONFIG)
    unet, scale = weights.load_unet(tiny / UNET_FILE, TINY_CONFIG)
    assert scale == 0.875 and isinstance(scale, float)
    saved = torch.load(tiny / UNET_FILE, weights_only=True)["unet_state_dict"]
    assert set(unet.state_dict()) == set(saved)
    for k, v in unet.state_dict().items():
        assert torch.equal(v, saved[k]), k
    saved_vae = torch.load(tiny / AUTOENCODER_FILE, weights_only=True)
    assert all(torch.equal(v, saved_vae[k]) for k, v in vae.state_dict().items())
    for net in (vae, unet):
        assert not net.training and not any(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("cut", [0.5, 0.05])
def test_truncated_file_is_reported(tiny, tmp_path, cut):
    data = (tiny / UNET_FILE).read_bytes()
    bad = tmp_path / "diff_unet_3d_ddpm-ct.pt"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(WeightsError) as err:
        weights.load_unet(bad, TINY_CONFIG)
    msg = str(err.value)
    assert msg.startswith(f"{bad}: the file is truncated or corrupt ({int(len(data) * cut):,} bytes; ")
    assert msg.endswith("delete it and download it again with `meddift weights download --force`")


def test_garbage_file_is_reported(tmp_path):
    bad = tmp_path / "autoencoder_v1.pt"
    bad.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(WeightsError, match=r"autoencoder_v1\.pt: the file is truncated or corrupt \(10,240 bytes; "):
        weights.load_autoencoder(bad, TINY_CONFIG)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"<!DOCTYPE html><html>Sign in</html>", "a web page or an error message saved in place of the file"),
        (b'{"error":"Access to model nvidia/NV-Generate-CT is restricted."}', "a web page or an error message"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 123\n", "this is a Git LFS pointer"),
        (b"", r"the file is empty \(0 bytes\)"),
    ],
)
def test_files_that_are_not_checkpoints_are_named(tmp_path, content, expected):
    bad = tmp_path / "diff_unet_3d_ddpm-ct.pt"
    bad.write_bytes(content)
    with pytest.raises(WeightsError, match=expected):
        weights.load_unet(bad, TINY_CONFIG)


def test_swapped_files_are_recognised(tiny):
    with pytest.raises(
        WeightsError,
        match=r"diffusion UNet checkpoint, given where the autoencoder "
        r"\(autoencoder_v1\.pt\) is expected \(are the two files swapped\?\)",
    ):
        weights.load_autoencoder(tiny / UNET_FILE, TINY_CONFIG)
    with pytest.raises(
        WeightsError,
        match=r"autoencoder checkpoint, given where the diffusion UNet "
        r"\(diff_unet_3d_ddpm-ct\.pt\) is expected",
    ):
        weights.load_unet(tiny / AUTOENCODER_FILE, TINY_CONFIG)


def test_controlnet_file_is_recognised(tiny, tmp_path):
    path = tmp_path / "controlnet_3d_ddpm-ct.pt"
    torch.save({"controlnet_state_dict": {"conv_in.conv.weight": torch.zeros(1)}, "epoch": 3}, path)
    with pytest.raises(WeightsError, match="MAISI ControlNet checkpoint, given where the diffusion UNet"):
        weights.load_unet(path, TINY_CONFIG)


def test_maisi_v2_rectified_flow_unet_is_refused(tmp_path):
    """Built as NV-Generate-CT's config_network_rflow.json defines it, with tiny channels."""
    from monai.apps.generation.maisi.networks.diffusion_model_unet_maisi import (
        DiffusionModelUNetMaisi,
    )

    v2 = DiffusionModelUNetMaisi(
        spatial_dims=3,
        in_channels=4,
        out_channels=4,
        num_channels=[8, 16, 32, 64],
        attention_levels=[False, False, True, True],
        num_head_channels=[0, 0, 8, 8],
        num_res_blocks=2,
        norm_num_groups=8,
        num_class_embeds=128,
        resblock_updown=True,
        include_fc=True,
        include_top_region_index_input=False,
        include_bottom_region_index_input=False,
        include_spacing_input=True,
    )
    path = tmp_path / "diff_unet_3d_rflow-ct.pt"
    torch.save({"unet_state_dict": v2.state_dict(), "scale_factor": torch.tensor(1.0)}, path)
    with pytest.raises(
        WeightsError,
        match=r"looks like a MAISI v2 \(rectified-flow\) UNet checkpoint .*"
        r"MedDIFT needs the MAISI v1 DDPM file diff_unet_3d_ddpm-ct\.pt",
    ):
        weights.load_unet(path, TINY_CONFIG)


def test_tiny_files_against_the_full_configuration_report_shapes(tiny):
    with pytest.raises(WeightsError) as err:
        weights.load_unet(tiny / UNET_FILE, MaisiConfig.v1())
    assert "tensor shapes do not match the maisi-v1-ddpm UNet configuration (" in str(
        err.value
    ) and "conv_in.conv.weight: file (8, 4, 3, 3, 3), expected (64, 4, 3, 3, 3)" in str(err.value)
    with pytest.raises(
        WeightsError,
        match=r"do not match the maisi-v1-ddpm autoencoder configuration .*"
        r"file \(8, 1, 3, 3, 3\), expected \(64, 1, 3, 3, 3\)",
    ):
        weights.load_autoencoder(tiny / AUTOENCODER_FILE, MaisiConfig.v1())


def test_checkpoint_without_scale_factor_or_state_dict(tiny, tmp_path):
    ckpt = torch.load(tiny / UNET_FILE, weights_only=True)
    path = tmp_path / "u.pt"
    torch.save({"unet_state_dict": ckpt["unet_state_dict"]}, path)
    with pytest.raises(WeightsError, match="no 'scale_factor' in the checkpoint"):
        weights.load_unet(path, TINY_CONFIG)
    torch.save({"model": ckpt["unet_state_dict"], "scale_factor": torch.tensor(1.0)}, path)
    with pytest.raises(
        WeightsError, match=r"no 'unet_state_dict' in the checkpoint \(keys: \['model', 'scale_factor'\]\)"
    ):
        weights.load_unet(path, TINY_CONFIG)


def test_numpy_numbers_and_training_arguments_load_but_code_never_runs(tiny, tmp_path):
    """weights_only=True, plus an explicit allowance for harmless extras; a pickled call is refused, not run."""
    ckpt = torch.load(tiny / UNET_FILE, weights_only=True)
    extra = dict(ckpt, loss=np.float64(0.25), epoch=np.int64(7), args=argparse.Namespace(lr=1e-4))
    path = tmp_path / "with_extras.pt"
    torch.save(extra, path)
    _, scale = weights.load_unet(path, TINY_CONFIG)
    assert scale == 0.875

    marker = tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save(dict(ckpt, note=Payload()), path)
    with pytest.raises(
        WeightsError,
        match=r"holds Python objects other than tensors \(io\.open\); MedDIFT "
        "does not unpickle them",
    ):
        weights.load_unet(path, TINY_CONFIG)
    assert not marker.exists()


def test_sha256_is_computed_once_per_file_version(tiny, tmp_path, monkeypatch):
    path = tmp_path / "w.pt"
    shutil.copy(tiny / AUTOENCODER_FILE, path)
    calls = []
    real = hashlib.sha256
    monkeypatch.setattr(digest.hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    expected = real(path.read_bytes()).hexdigest()
    memo = {}  # the owner's (a session's) memo: no hash is remembered behind the caller's back
    assert weights.file_sha256(path, memo) == expected and len(calls) == 1
    assert weights.file_sha256(path, memo) == expected and len(calls) == 1  # from the memo
    with open(path, "r+b") as f:  # same size, new content and mtime
        f.write(b"\0")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert weights.file_sha256(path, memo) == real(path.read_bytes()).hexdigest() != expected and len(calls) == 2
    weights.file_sha256(path)
    assert len(calls) == 3  # without a memo: hashed again


def test_identity_names_files_sizes_and_digests(tiny):
    ident = weights.weights_identity(weights.find_weights(tiny), cfg=TINY_CONFIG)
    assert ident == {
        "files": {
            "autoencoder_v1.pt": {
                "size": (tiny / AUTOENCODER_FILE).stat().st_size,
                "sha256": hashlib.sha256((tiny / AUTOENCODER_FILE).read_bytes()).hexdigest(),
            },
            "diff_unet_3d_ddpm-ct.pt": {
                "size": (tiny / UNET_FILE).stat().st_size,
                "sha256": hashlib.sha256((tiny / UNET_FILE).read_bytes()).hexdigest(),
            },
        }
    }


def test_verify_report(tiny):
    rep = weights.verify_weights(weights.find_weights(tiny), TINY_CONFIG)
    assert rep["autoencoder"]["ok"] and rep["unet"]["ok"] and rep["unet"]["scale_factor"] == 0.875
    assert rep["unet"]["error"] is None and rep["unet"]["config"] == "maisi-v1-ddpm-tiny-test"
    assert rep["unet"]["sha256"] == weights.file_sha256(tiny / UNET_FILE)
    rep = weights.verify_weights(weights.find_weights(tiny))  # the full v1 configuration
    assert not rep["unet"]["ok"] and "tensor shapes do not match the maisi-v1-ddpm UNet" in rep["unet"]["error"]
    assert "scale_factor" not in rep["unet"]


# --- downloads through the real huggingface_hub client ------------------------------------


def test_download_lands_in_repo_layout_verifies_and_keeps_the_token_on_the_hub(tiny, tmp_path):
    dest = tmp_path / "dl"
    with FakeHub(weights.HF_REPO_ID, _hub_files(tiny), token=TOKEN) as hub:
        paths = download.download_weights(dest, token=TOKEN, endpoint=hub.endpoint, progress=False, cfg=TINY_CONFIG)
        assert paths == weights.WeightsPaths(dest / AUTOENCODER_FILE, dest / UNET_FILE)
        assert paths.unet.read_bytes() == (tiny / UNET_FILE).read_bytes()
        assert paths.autoencoder.read_bytes() == (tiny / AUTOENCODER_FILE).read_bytes()
        hub_reqs = [r for r in hub.requests if r["server"] == "hub"]
        cdn_reqs = [r for r in hub.requests if r["server"] == "cdn"]
        assert [r["path"] for r in hub_reqs] == [
            f"/{weights.HF_REPO_ID}/resolve/main/{f}" for f in (AUTOENCODER_FILE, UNET_FILE)
        ]
        assert all(r["authorization"] == f"Bearer {TOKEN}" for r in hub_reqs)
        assert len(cdn_reqs) == 2 and all(r["authorization"] is None for r in cdn_reqs)  # not sent off the Hub
        # up to date: a second run asks the Hub (HEAD) but downloads nothing
        download.download_weights(dest, token=TOKEN, endpoint=hub.endpoint, progress=False, cfg=TINY_CONFIG)
        assert sum(r["server"] == "cdn" for r in hub.requests) == 2
    assert not _leftovers(dest)


def test_token_from_hf_token_environment_variable(tiny, tmp_path, monkeypatch):
    """The Slicer module passes the token this way (never on a command line)."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with FakeHub(weights.HF_REPO_ID, _hub_files(tiny), token=TOKEN, cdn=False) as hub:
        download.download_weights(tmp_path / "dl", endpoint=hub.endpoint, progress=False, cfg=TINY_CONFIG)
    assert {r["authorization"] for r in hub.requests} == {f"Bearer {TOKEN}"}


def test_progress_bars_can_be_switched_off(tiny, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("TQDM_POSITION", "-1")  # huggingface_hub: force bars even without a terminal
    with FakeHub(weights.HF_REPO_ID, _hub_files(tiny)) as hub:
        download.download_weights(tmp_path / "a", endpoint=hub.endpoint, progress=True, cfg=TINY_CONFIG)
        assert "100%" in capfd.readouterr().err
        download.download_weights(tmp_path / "b", endpoint=hub.endpoint, progress=False, cfg=TINY_CONFIG)
        assert "100%" not in capfd.readouterr().err
    assert "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ


def test_gated_repository_without_token(tiny, tmp_path):
    with FakeHub(weights.HF_REPO_ID, _hub_files(tiny), token=TOKEN) as hub:
        with pytest.raises(WeightsError) as err:
            download.download_weights(tmp_path / "dl", endpoint=hub.endpoint, progress=False)
    assert str(err.value) == (
        "access to https://huggingface.co/nvidia/NV-Generate-CT was refused: the repository is gated and no token "
        "was sent. Log in on Hugging Face, accept the MAISI licence on the repository page, create an access token "
        "(Settings > Access Tokens, 'read'), then pass it with --token or set HF_TOKEN"
    )
    assert hub.requests[0]["authorization"] is None
    assert not (tmp_path / "dl" / AUTOENCODER_FILE).exists() and not _leftovers(tmp_path / "dl")


def test_invalid_token(tiny, tmp_path):
    with FakeHub(weights.HF_REPO_ID, _hub_files(tiny), token=TOKEN) as hub:
        with pytest.raises(
            WeightsError,
            match=r"^the Hugging Face token was rejected \(Invalid credentials in "
            r"Authorization header\): it is invalid, expired or revoked",
        ):
            download.download_weights(tmp_path / "dl", token="hf_wrong", endpoint=hub.endpoint, progress=False)
    assert hub.requests[0]["authorization"] == "Bearer hf_wrong"


def test_valid_token_without_accepted_licence(tiny, tmp_path):
    with FakeHub(weights.HF_REPO_ID, _hub_files(tiny), token=TOKEN, granted=False) as hub:
        with pytest.raises(
            WeightsError,
            match=r"the token was accepted, but its account has not been granted access "
            r"to this gated repository\. Open https://huggingface\.co/nvidia/"
            r"NV-Generate-CT logged in as that user, accept the licence",
        ):
            download.download_weights(tmp_path / "dl", token=TOKEN, endpoint=hub.endpoint, progress=False)


def test_repository_or_file_not_found(tiny, tmp_path):
    with FakeHub("someone/else", _hub_files(tiny)) as hub:
        with pytest.raises(WeightsError, match=rf"^repository nvidia/NV-Generate-CT not found at {hub.endpoint} "):
            download.download_weights(tmp_path / "dl", endpoint=hub.endpoint, progress=False)
    only_vae = {AUTOENCODER_FILE: (tiny / AUTOENCODER_FILE).read_bytes()}
    with FakeHub(weights.HF_REPO_ID, only_vae) as hub:
        with pytest.raises(WeightsError, match=r"^models/diff_unet_3d_ddpm-ct\.pt not found in nvidia/NV-Generate-CT"):
            download.download_weights(tmp_path / "dl", endpoint=hub.endpoint, progress=False)
    assert (tmp_path / "dl" / AUTOENCODER_FILE).is_file() and not (tmp_path / "dl" / UNET_FILE).exists()


CHUNK = 64 * 1024


@pytest.fixture
def small_chunks(monkeypatch):
    """huggingface_hub writes 10 MB chunks; tiny files need smaller ones for a partial download to keep anything."""
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "DOWNLOAD_CHUNK_SIZE", CHUNK)


def test_interrupted_download_resumes_where_it_stopped(tiny, tmp_path, no_retry_waits, small_chunks):
    files = _hub_files(tiny)
    half = len(files[AUTOENCODER_FILE]) // 2
    with FakeHub(weights.HF_REPO_ID, files, drop_after=half, drop_times=1) as hub:
        paths = download.download_weights(tmp_path / "dl", endpoint=hub.endpoint, progress=False, cfg=TINY_CONFIG)
    assert paths.autoencoder.read_bytes() == files[AUTOENCODER_FILE]
    assert [r["range"] for r in hub.requests if r["server"] == "cdn"] == [None, f"bytes={half // CHUNK * CHUNK}-", None]


def test_connection_lost_for_good_leaves_no_half_file(tiny, tmp_path, no_retry_waits, small_chunks):
    files = _hub_files(tiny)
    with FakeHub(weights.HF_REPO_ID, files, drop_after=2 * CHUNK + 1000) as hub:
        with pytest.raises(
            WeightsError,
            match=r"^cannot download models/autoencoder_v1\.pt: the connection to "
            rf"{hub.endpoint} failed or was lost \(RemoteProtocolError",
        ):
            download.download_weights(tmp_path / "dl", endpoint=hub.endpoint, progress=False)
    assert not (tmp_path / "dl" / AUTOENCODER_FILE).exists() and not _leftovers(tmp_path / "dl")
    # the client resumed after the two whole chunks, then gave up after 5 retries that brought nothing new
    assert [r["range"] for r in hub.requests if r["server"] == "cdn"] == [None] + [f"bytes={2 * CHUNK}-"] * 5


def test_offline_mode_points_to_the_offline_folder(tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        WeightsError,
        match=r"huggingface_hub is in offline mode \(HF_HUB_OFFLINE is set\).*"
        r"set MEDDIFT_WEIGHTS_DIR or use weights_dir",
    ):
        download.download_weights(tmp_path / "dl", progress=False)


def test_downloaded_files_that_do_not_verify_are_reported(tiny, tmp_path):
    with FakeHub(weights.HF_REPO_ID, _hub_files(tiny)) as hub:
        with pytest.raises(
            WeightsError,
            match=r"^the downloaded files do not verify: .*tensor shapes do not match "
            "the maisi-v1-ddpm autoencoder",
        ):
            download.download_weights(tmp_path / "dl", endpoint=hub.endpoint, progress=False)  # full v1 config


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_info_on_tiny_files_reports_digests_and_that_they_do_not_verify(tiny, capsys):
    rc = cli_main(["weights", "info", "--weights-dir", str(tiny)])
    out = capsys.readouterr().out
    assert rc == 1
    assert f"weights folder: {tiny}  (from --weights-dir)" in out
    for rel in (AUTOENCODER_FILE, UNET_FILE):
        assert (
            f"  size {(tiny / rel).stat().st_size:,} bytes, sha256 "
            f"{hashlib.sha256((tiny / rel).read_bytes()).hexdigest()}"
        ) in out
    assert "  does NOT verify against the maisi-v1-ddpm configuration: " in out
    assert "tensor shapes do not match the maisi-v1-ddpm UNet configuration" in out
    assert out.rstrip().endswith("status: present but not usable (see above)")


def test_cli_info_without_weights(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEDDIFT_WEIGHTS_DIR", str(tmp_path / "none"))
    rc = cli_main(["weights", "info"])
    out = capsys.readouterr().out
    assert rc == 1
    assert f"weights folder: {tmp_path / 'none'}  (from MEDDIFT_WEIGHTS_DIR)" in out
    assert "autoencoder: missing (autoencoder_v1.pt)" in out and "unet: missing (diff_unet_3d_ddpm-ct.pt)" in out
    assert "status: missing. MAISI weights not found" in out and "meddift weights download --token" in out


def test_cli_download_errors_are_one_clean_line(tiny, tmp_path, capsys, no_retry_waits):
    with FakeHub(weights.HF_REPO_ID, _hub_files(tiny), token=TOKEN) as hub:
        rc = cli_main(["weights", "download", "--dest", str(tmp_path), "--endpoint", hub.endpoint, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(
        "meddift: error: access to https://huggingface.co/nvidia/NV-Generate-CT was "
        "refused: the repository is gated and no token was sent."
    )
    with socket.socket() as s:  # a port where nothing listens: a real connection failure
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = cli_main(
        ["weights", "download", "--dest", str(tmp_path), "--endpoint", f"http://127.0.0.1:{port}", "--no-progress"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(
        f"meddift: error: cannot download models/autoencoder_v1.pt: the connection to "
        f"http://127.0.0.1:{port} failed or was lost ("
    )
    assert "MEDDIFT_WEIGHTS_DIR" in err and "Traceback" not in err


def test_installed_command_has_the_weights_subcommand():
    exe = Path(sys.executable).with_name("meddift.exe" if os.name == "nt" else "meddift")
    if not exe.exists():
        pytest.skip(f"no installed entry point next to {sys.executable}")
    proc = subprocess.run([str(exe), "weights", "download", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--token" in proc.stdout and "--force" in proc.stdout and "--endpoint" not in proc.stdout
