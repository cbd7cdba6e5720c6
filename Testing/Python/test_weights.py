"""MAISI weights: finding, strict loading and every error, downloads through the real Hub client.

Checkpoints are tiny but in exactly the released format (tiny_maisi.py); the
Hub is a local server on 127.0.0.1 (fake_hub.py), since huggingface.co cannot
be reached here. The real huggingface_hub client does the download.
"""

from __future__ import annotations

import shutil
import socket

import pytest
import torch

from MedDIFTLib import weights
from MedDIFTLib.cli import main as cli_main
from MedDIFTLib.errors import WeightsError
from MedDIFTLib.maisi_networks import MaisiConfig
from fake_hub import FakeHub
from tiny_maisi import AUTOENCODER_FILE, TINY_CONFIG, UNET_FILE, write_tiny_checkpoints


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No test touches the user's caches or token."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("MEDDIFT_WEIGHTS_DIR", str(tmp_path / "default_weights"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    write_tiny_checkpoints(folder, seed=1, scale_factor=0.875)
    return folder


def test_find_weights_in_repo_and_flat_layouts(tiny, tmp_path):
    paths = weights.find_weights(tiny)
    assert paths.autoencoder == tiny / AUTOENCODER_FILE and paths.unet == tiny / UNET_FILE
    flat = tmp_path / "flat"
    flat.mkdir()
    for rel in (AUTOENCODER_FILE, UNET_FILE):
        shutil.copy(tiny / rel, flat)
    assert weights.find_weights(flat).unet == flat / "diff_unet_3d_ddpm-ct.pt"


def test_missing_weights_say_how_to_get_them(tmp_path, monkeypatch):
    with pytest.raises(WeightsError) as err:
        weights.find_weights(tmp_path / "nothing")
    msg = str(err.value)
    assert "MAISI weights not found" in msg and "meddift weights download" in msg and "MEDDIFT_WEIGHTS_DIR" in msg
    assert "accept its licence" in msg
    monkeypatch.setenv("MEDDIFT_WEIGHTS_DIR", str(tmp_path / "env_folder"))
    assert weights.default_weights_dir() == tmp_path / "env_folder"


def test_tiny_checkpoints_load_strictly_with_their_scale_factor(tiny):
    vae = weights.load_autoencoder(tiny / AUTOENCODER_FILE, TINY_CONFIG)
    unet, scale = weights.load_unet(tiny / UNET_FILE, TINY_CONFIG)
    assert scale == 0.875
    saved = torch.load(tiny / UNET_FILE, weights_only=True)["unet_state_dict"]
    for k, v in unet.state_dict().items():
        torch.testing.assert_close(v, saved[k])
    assert not any(p.requires_grad for p in vae.parameters()) and not vae.training


@pytest.mark.parametrize("cut", [0.5, 0.05])
def test_truncated_file_is_reported(tiny, tmp_path, cut):
    data = (tiny / UNET_FILE).read_bytes()
    bad = tmp_path / "diff_unet_3d_ddpm-ct.pt"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(WeightsError, match=r"diff_unet_3d_ddpm-ct\.pt: the file is truncated or corrupt.*download it again"):
        weights.load_unet(bad, TINY_CONFIG)


def test_garbage_file_is_reported(tmp_path):
    bad = tmp_path / "autoencoder_v1.pt"
    bad.write_bytes(b"<html>Access denied</html>")
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        weights.load_autoencoder(bad, TINY_CONFIG)


def test_swapped_files_are_recognised(tiny):
    with pytest.raises(WeightsError, match="diffusion UNet checkpoint, given where the autoencoder"):
        weights.load_autoencoder(tiny / UNET_FILE, TINY_CONFIG)
    with pytest.raises(WeightsError, match="autoencoder checkpoint, given where the diffusion UNet"):
        weights.load_unet(tiny / AUTOENCODER_FILE, TINY_CONFIG)


def test_maisi_v2_rectified_flow_unet_is_refused(tmp_path):
    from monai.apps.generation.maisi.networks.diffusion_model_unet_maisi import DiffusionModelUNetMaisi

    v2 = DiffusionModelUNetMaisi(spatial_dims=3, in_channels=4, out_channels=4, num_channels=[8, 16, 32, 64],
                                 attention_levels=[False, False, True, True], num_head_channels=[0, 0, 8, 8],
                                 num_res_blocks=2, norm_num_groups=8, num_class_embeds=128,
                                 include_top_region_index_input=False, include_bottom_region_index_input=False,
                                 include_spacing_input=True)
    path = tmp_path / "diff_unet_3d_rflow-ct.pt"
    torch.save({"unet_state_dict": v2.state_dict(), "scale_factor": torch.tensor(1.0)}, path)
    with pytest.raises(WeightsError, match=r"MAISI v2 \(rectified-flow\).*diff_unet_3d_ddpm-ct\.pt"):
        weights.load_unet(path, TINY_CONFIG)


def test_tiny_files_against_the_full_configuration_report_shapes(tiny):
    with pytest.raises(WeightsError, match=r"tensor shapes do not match the maisi-v1-ddpm UNet.*expected"):
        weights.load_unet(tiny / UNET_FILE, MaisiConfig.v1())


def test_checkpoint_without_scale_factor(tiny, tmp_path):
    ckpt = torch.load(tiny / UNET_FILE, weights_only=True)
    del ckpt["scale_factor"]
    path = tmp_path / "u.pt"
    torch.save(ckpt, path)
    with pytest.raises(WeightsError, match="no 'scale_factor'"):
        weights.load_unet(path, TINY_CONFIG)


def test_identity_is_cached_and_names_files(tiny):
    ident = weights.weights_identity(weights.find_weights(tiny))
    assert set(ident["files"]) == {"autoencoder_v1.pt", "diff_unet_3d_ddpm-ct.pt"}
    assert len(ident["files"]["autoencoder_v1.pt"]["sha256"]) == 64
    assert weights.weights_identity(weights.find_weights(tiny)) == ident


# --- downloads through the real huggingface_hub client ------------------------------------


def _hub_files(tiny):
    return {rel: (tiny / rel).read_bytes() for rel in (AUTOENCODER_FILE, UNET_FILE)}


def test_download_with_token_lands_in_repo_layout_and_verifies(tiny, tmp_path):
    with FakeHub(weights.HF_REPO_ID, _hub_files(tiny), token="hf_secret") as hub:
        paths = weights.download_weights(tmp_path / "dl", token="hf_secret", endpoint=hub.endpoint,
                                         progress=False, cfg=TINY_CONFIG)
    assert paths.autoencoder == tmp_path / "dl" / AUTOENCODER_FILE
    assert paths.unet.read_bytes() == (tiny / UNET_FILE).read_bytes()
    assert all(r["authorization"] == "Bearer hf_secret" for r in hub.requests)
    assert not list((tmp_path / "dl").rglob("*.incomplete"))


def test_gated_repository_without_token(tiny, tmp_path):
    with FakeHub(weights.HF_REPO_ID, _hub_files(tiny), token="hf_secret") as hub:
        with pytest.raises(WeightsError, match=r"gated.*accept the MAISI licence.*--token.*no token was given"):
            weights.download_weights(tmp_path / "dl", endpoint=hub.endpoint, progress=False)
        with pytest.raises(WeightsError, match="the token given was not accepted"):
            weights.download_weights(tmp_path / "dl", token="wrong", endpoint=hub.endpoint, progress=False)
    assert not (tmp_path / "dl" / UNET_FILE).exists()


def test_offline_mode_points_to_the_offline_folder(tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsError, match=r"no connection.*--weights-dir"):
        weights.download_weights(tmp_path / "dl", progress=False)


def test_downloaded_files_that_do_not_verify_are_reported(tiny, tmp_path):
    with FakeHub(weights.HF_REPO_ID, _hub_files(tiny)) as hub:
        with pytest.raises(WeightsError, match="downloaded files do not verify"):
            weights.download_weights(tmp_path / "dl", endpoint=hub.endpoint, progress=False)  # full v1 config


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_info_on_tiny_files_reports_digests_and_that_they_do_not_verify(tiny, capsys):
    rc = cli_main(["weights", "info", "--weights-dir", str(tiny)])
    out = capsys.readouterr().out
    assert rc == 1
    assert weights.file_sha256(tiny / UNET_FILE) in out
    assert f"size {(tiny / UNET_FILE).stat().st_size:,} bytes" in out
    assert "does NOT verify: " in out and "tensor shapes do not match" in out


def test_cli_info_without_weights(tmp_path, capsys):
    rc = cli_main(["weights", "info", "--weights-dir", str(tmp_path / "none")])
    assert rc == 1 and "status: missing" in capsys.readouterr().out


def test_cli_download_without_network_is_a_clean_message(tmp_path, capsys):
    """A real connection failure (nothing listens on the port; the client retries for ~20 s)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = cli_main(["weights", "download", "--dest", str(tmp_path), "--endpoint", f"http://127.0.0.1:{port}",
                   "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "meddift: error: cannot download models/autoencoder_v1.pt: no connection" in err
    assert "MEDDIFT_WEIGHTS_DIR" in err and "Traceback" not in err
