"""MAISI v1 (DDPM) networks exactly as MedDIFT uses them, built from MONAI.

The configuration mirrors NVIDIA's released MAISI v1 definition
(``config_maisi.json``: ``autoencoder_def``, ``diffusion_unet_def``,
``noise_scheduler``) so that the released checkpoints load strictly. Only
CPU-incompatible switches differ and they change no weights:
``use_flash_attention`` (CUDA only) and ``norm_float16`` (fails in float32 on
CPU) are chosen per device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch

BODY_REGIONS = ("head", "thorax", "abdomen", "pelvis")
"""MAISI's body-region one-hot order (head/neck, thorax, abdomen, pelvis/lower body)."""

REGION_SCALE = 100.0  # MAISI feeds one-hot regions and spacing times 100


@dataclass(frozen=True)
class MaisiConfig:
    """Network and schedule hyper-parameters; ``v1()`` is the released model."""

    vae_num_channels: tuple = (64, 128, 256)
    vae_num_res_blocks: tuple = (2, 2, 2)
    latent_channels: int = 4
    vae_norm_num_groups: int = 32
    norm_eps: float = 1e-6
    num_splits: int = 1  # MAISI's memory split of VAE convolutions (no weights)
    dim_split: int = 1
    unet_num_channels: tuple = (64, 128, 256, 512)
    unet_attention_levels: tuple = (False, False, True, True)
    unet_num_head_channels: tuple = (0, 0, 32, 32)
    unet_num_res_blocks: int = 2
    unet_norm_num_groups: int = 32
    num_train_timesteps: int = 1000
    beta_start: float = 0.0015
    beta_end: float = 0.0195
    schedule: str = "scaled_linear_beta"
    name: str = "maisi-v1-ddpm"

    @classmethod
    def v1(cls, **overrides) -> MaisiConfig:
        return replace(cls(), **overrides)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def level_channels(self) -> tuple:
        """Channels of the 4 decoder up-block outputs (deepest first)."""
        return tuple(reversed(self.unet_num_channels))


def build_autoencoder(cfg: MaisiConfig, device: torch.device | str = "cpu"):
    """``AutoencoderKlMaisi`` with MAISI v1's definition (no attention)."""
    from monai.apps.generation.maisi.networks.autoencoderkl_maisi import (
        AutoencoderKlMaisi,
    )

    return AutoencoderKlMaisi(
        spatial_dims=3,
        in_channels=1,
        out_channels=1,
        latent_channels=cfg.latent_channels,
        num_channels=list(cfg.vae_num_channels),
        num_res_blocks=list(cfg.vae_num_res_blocks),
        norm_num_groups=cfg.vae_norm_num_groups,
        norm_eps=cfg.norm_eps,
        attention_levels=[False] * len(cfg.vae_num_channels),
        with_encoder_nonlocal_attn=False,
        with_decoder_nonlocal_attn=False,
        use_checkpointing=False,
        use_convtranspose=False,
        norm_float16=torch.device(device).type == "cuda",
        num_splits=cfg.num_splits,
        dim_split=cfg.dim_split,
    )


def build_unet(cfg: MaisiConfig, device: torch.device | str = "cpu"):
    """``DiffusionModelUNetMaisi`` with MAISI v1 DDPM's definition."""
    from monai.apps.generation.maisi.networks.diffusion_model_unet_maisi import (
        DiffusionModelUNetMaisi,
    )

    return DiffusionModelUNetMaisi(
        spatial_dims=3,
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        num_channels=list(cfg.unet_num_channels),
        attention_levels=list(cfg.unet_attention_levels),
        num_head_channels=list(cfg.unet_num_head_channels),
        num_res_blocks=cfg.unet_num_res_blocks,
        norm_num_groups=cfg.unet_norm_num_groups,
        norm_eps=cfg.norm_eps,
        use_flash_attention=torch.device(device).type == "cuda",
        include_top_region_index_input=True,
        include_bottom_region_index_input=True,
        include_spacing_input=True,
    )


def build_scheduler(cfg: MaisiConfig):
    """MONAI's DDPM scheduler with MAISI v1's schedule (1000 steps, scaled-linear betas)."""
    from monai.networks.schedulers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        schedule=cfg.schedule,
        clip_sample=False,
    )


def region_one_hot(region: str) -> torch.Tensor:
    """(1, 4) one-hot body region times 100, as the UNet was trained."""
    if region not in BODY_REGIONS:
        from ...errors import InputError

        raise InputError(f"unknown body region {region!r}; choose one of {', '.join(BODY_REGIONS)}")
    t = torch.zeros(1, len(BODY_REGIONS))
    t[0, BODY_REGIONS.index(region)] = REGION_SCALE
    return t


@dataclass
class UpBlockRecorder:
    """Forward hooks capturing the outputs of the UNet's decoder up-blocks.

    Hooks, not patches: the MONAI module is used as released. ``keep`` limits
    which block indices are stored (the others are not kept in memory).
    """

    unet: torch.nn.Module
    keep: tuple = (0, 1, 2, 3)
    outputs: dict = field(default_factory=dict)

    def __enter__(self):
        self._handles = []
        for idx, block in enumerate(self.unet.up_blocks):
            if idx in self.keep:
                self._handles.append(block.register_forward_hook(self._hook(idx)))
        return self

    def _hook(self, idx):
        def fn(_module, _inputs, output):
            self.outputs[idx] = output.detach()

        return fn

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        return False
