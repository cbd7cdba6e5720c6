"""The MedDIFT backbone: MAISI v1 (DDPM) decoder activations as descriptors.

Per volume: prepare (RAS, HU window, resize), VAE-encode and multiply by the
checkpoint's ``scale_factor``, add DDPM noise at timestep ``t`` from a seeded
generator, run the UNet once conditioned on body region and spacing, and keep
the outputs of its decoder up-blocks (captured by forward hooks). Optionally
average over an ensemble of noise draws (DIFT's variance reduction).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence

import numpy as np
import torch

from ...data.digest import volume_digest
from ...data.geometry import Volume, covering_grid
from ...errors import InputError, opt
from ...options import MAISI_LEVELS, BackboneName
from ...runtime import Cancel, Progress, check_cancel, report
from ..base import Backbone
from ..cache import MemoryLRU
from ..options import check_maisi_values, resolve_device  # one owner of the device and option rules
from ..preprocess import PREPROCESS_VERSION, PreparedImage, prepare, target_shape
from ..pyramid import FeatureLevel, FeaturePyramid, level_matrix
from .networks import (
    BODY_REGIONS,
    REGION_SCALE,
    MaisiConfig,
    UpBlockRecorder,
    build_autoencoder,
    build_scheduler,
    build_unet,
    region_one_hot,
)

log = logging.getLogger(__name__)

LEVEL_NAMES = MAISI_LEVELS
"""Decoder up-block outputs, deepest first: 512/256/128/64 channels at 1/16, 1/8, 1/4, 1/4."""


class MaisiBackbone(Backbone):
    """MAISI v1 diffusion features (the MedDIFT method).

    ``weights_dir`` is where the released checkpoints are (see
    :mod:`MedDIFTLib.features.maisi.weights`). ``random_init=True`` builds the same networks
    with random weights: an explicit *control* for ablations and timing,
    labelled as such in the identity, never a stand-in for pretrained ones.
    """

    name = BackboneName.MAISI.value
    wants_accelerator = True

    def __init__(
        self,
        weights_dir=None,
        device: str = "auto",
        timestep: int = 20,
        levels: Sequence[str] = LEVEL_NAMES,
        ensemble: int = 1,
        latent: str = "sample",
        region: str = "thorax",
        bottom_region: str | None = None,
        seed: int = 0,
        size_policy: str = "paper",
        target_spacing_mm: float = 1.5,
        config: MaisiConfig | None = None,
        random_init: bool = False,
        memory_limit_bytes: int | None = None,
        encodings: MemoryLRU | None = None,
        file_digests: dict | None = None,
    ):
        dev = resolve_device(device, self.wants_accelerator)
        # MAISI's memory splits of the VAE convolutions change no weights: 8 on a GPU as released,
        # 1 on the CPU (measured: splitting made the CPU encode slower and saved little memory)
        self.config = config or MaisiConfig.v1(num_splits=8 if dev.type == "cuda" else 1)
        check_maisi_values(timestep, ensemble, latent, region, seed, size_policy, tuple(levels))
        if (bottom_region or region) not in BODY_REGIONS:
            raise InputError(f"unknown body region {bottom_region!r}; choose one of {', '.join(BODY_REGIONS)}")
        self.weights_dir = weights_dir
        self.device = dev
        self.timestep = int(timestep)
        self.levels = tuple(levels)
        self.ensemble = int(ensemble)
        self.latent = latent
        self.region = region
        self.bottom_region = bottom_region or region
        self.seed = int(seed)
        self.size_policy = size_policy
        self.target_spacing_mm = float(target_spacing_mm)
        self.random_init = bool(random_init)
        self.memory_limit_bytes = memory_limit_bytes  # None: the memory free when a volume comes
        self.notices: list[str] = []  # fallbacks taken (CUDA out of memory), for the user
        self._nets = None  # (vae, unet, scale_factor), loaded on first use
        self._weights_id: dict | None = None  # the weights' identity, known without building the networks
        # owned by the session and passed in (shared by an ablation's backbones: they change t, not z)
        self.encodings = encodings if encodings is not None else MemoryLRU(8)
        self.file_digests = file_digests if file_digests is not None else {}

    @property
    def level_names(self) -> list[str]:
        return list(self.levels)

    # --- model -------------------------------------------------------------

    def weights_identity(self) -> dict:
        """Which weights: the files' names, sizes and digests (or the random-init control), found
        without building a network, so that a feature-cache hit never pays for loading the model."""
        if self._weights_id is None:
            if self.random_init:
                self._weights_id = {"random_init": True, "seed": self.seed}
            else:
                from . import weights

                self._weights_id = weights.weights_identity(
                    weights.find_weights(self.weights_dir), self.file_digests, self.config
                )
        return self._weights_id

    def load(self):
        """Build the networks and load the checkpoints once (kept for later volumes)."""
        if self._nets is not None:
            return self._nets
        if self.random_init:
            log.warning("MAISI backbone with RANDOM weights: a control, not the pretrained model")
            torch.manual_seed(self.seed)
            vae, unet = build_autoencoder(self.config, self.device), build_unet(self.config, self.device)
            scale_factor = 1.0
        else:
            from . import weights

            paths = weights.find_weights(self.weights_dir)
            vae, vae_report = weights.load_autoencoder_reported(paths.autoencoder, self.config, self.device)
            unet, scale_factor, unet_report = weights.load_unet_reported(paths.unet, self.config, self.device)
            for rep in (vae_report, unet_report):
                if not rep.clean:  # also in the identity; said here so that the CLI and Slicer logs show it
                    log.warning("MAISI weights: %s", rep.summary())
                    self.notices.append(f"MAISI weights: {rep.summary()}")
        vae.eval().requires_grad_(False).to(self.device)
        unet.eval().requires_grad_(False).to(self.device)
        self._nets = (vae, unet, float(scale_factor))
        return self._nets

    def load_note(self) -> str:
        """How the weight files load, in one sentence when it is not a clean strict load (else ""),
        found without building the networks; a WeightsError when they would be refused."""
        if self.random_init:
            return ""
        from . import weights

        reports = weights.inspect_weights(weights.find_weights(self.weights_dir), self.config, self.file_digests)
        return "; ".join(r.summary() for r in reports.values() if not r.clean)

    def identity(self) -> dict:
        ident = {
            "backbone": self.name,
            "config": self.config.to_dict(),
            "timestep": self.timestep,
            "levels": list(self.levels),
            "ensemble": self.ensemble,
            "latent": self.latent,
            "region": [self.region, self.bottom_region],
            "seed": self.seed,
            "size_policy": self.size_policy,
            "preprocess": PREPROCESS_VERSION,
        }
        if self.size_policy == "spacing":
            ident["target_spacing_mm"] = self.target_spacing_mm
        ident["weights"] = self.weights_identity()
        return ident

    # --- extraction ----------------------------------------------------------

    def check_memory(self, volume: Volume) -> None:
        """Refuse, before allocating anything, a volume whose CPU encoding would not fit in memory."""
        if self.device.type != "cpu":
            return  # CUDA: fp16 and split convolutions; an out-of-memory error falls back instead
        box = covering_grid(volume.grid)  # the shape after RAS reorientation (and resampling, if oblique)
        shape = target_shape(
            box.shape, np.linalg.norm(box.ijk_to_ras[:3, :3], axis=0), self.size_policy, self.target_spacing_mm
        )
        need = encode_memory_estimate(shape)
        free = self.memory_limit_bytes if self.memory_limit_bytes is not None else available_memory()
        if free is not None and need > free:
            raise InputError(
                f"volume {volume.name!r} {tuple(volume.shape)}: the MAISI encoder on the CPU would need about "
                f"{need / 1e9:.1f} GB for its network input of {shape} voxels, and {free / 1e9:.1f} GB is free. "
                f"Crop the volume to the region of interest, use {opt('size_policy', 'spacing')} (a coarser input), or run "
                "on a GPU."
            )

    def _fallback(self, what: str, run, can_split: bool = True):
        """``run(device, splits)`` on the backbone's device; after a CUDA out-of-memory error, again
        with twice the VAE splits (``can_split``), then on the CPU. Each fallback is logged and kept
        in ``notices``."""
        attempts: list[tuple[torch.device, int | None]] = [(self.device, None)]
        if self.device.type == "cuda":
            if can_split:
                attempts.append((self.device, 2 * max(1, self.config.num_splits)))
            attempts.append((torch.device("cpu"), None))
        for n, (dev, splits) in enumerate(attempts):
            try:
                return run(dev, splits)
            except torch.cuda.OutOfMemoryError:
                if n == len(attempts) - 1:
                    raise
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                nxt_dev, nxt_splits = attempts[n + 1]
                how = (
                    f"retrying with {nxt_splits} VAE splits"
                    if nxt_dev.type == "cuda"
                    else "running it on the CPU instead (slower)"
                )
                msg = f"CUDA out of memory during the {what}; {how}"
                log.warning(msg)
                self.notices.append(msg)

    def _encode(self, vae, prep, volume: Volume):
        """VAE posterior (mean, std) of a volume, remembered in ``self.encodings`` (the session's).

        The encoder is the expensive step on a CPU and does not depend on the
        timestep, ensemble or levels, so backbones that differ only in those
        (an ablation's, given one ``encodings``) share one encoding.
        """
        key = (
            json.dumps(self.weights_identity(), sort_keys=True, default=str),
            json.dumps(self.config.to_dict(), sort_keys=True, default=str),
            volume_digest(volume),
            self.size_policy,
            self.target_spacing_mm,
            str(self.device),
        )
        hit = self.encodings.get(key)
        if hit is not None:
            return tuple(z.to(self.device) for z in hit)

        def run(dev, splits):
            if splits:
                _set_vae_splits(vae, splits)
            model = vae if dev == self.device else vae.to(dev)
            try:
                with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.float16, enabled=dev.type == "cuda"):
                    z_mu, z_sigma = model.encode(prep.tensor.to(dev))
            finally:
                if dev != self.device:
                    vae.to(self.device)
            return z_mu.float().to(self.device), z_sigma.float().to(self.device)

        out = self._fallback("VAE encoding", run)
        self.encodings.put(key, tuple(z.cpu() for z in out))  # a few MB each, kept off the GPU
        return out

    def extract(self, volume: Volume, progress: Progress | None = None, cancel: Cancel | None = None) -> FeaturePyramid:
        prep, vae, unet, scale_factor = self._prepare_and_load(volume, progress, cancel)
        report(progress, "vae encode", 0.0)
        z_mu, z_sigma = self._encode(vae, prep, volume)
        report(progress, "vae encode", 1.0)
        check_cancel(cancel)
        sums = self._ensemble_sums(unet, z_mu, z_sigma, scale_factor, prep, progress, cancel)
        check_cancel(cancel)  # a cancel during the last pass stops here, before anything is cached
        report(progress, "unet", 1.0)
        return self._pyramid(sums, prep, volume)

    def _prepare_and_load(
        self, volume: Volume, progress: Progress | None, cancel: Cancel | None
    ) -> tuple[PreparedImage, torch.nn.Module, torch.nn.Module, float]:
        """The first two stages (network input, then the model), each reported and cancellable."""
        report(progress, "preprocess", 0.0)
        self.check_memory(volume)
        prep = prepare(volume, self.size_policy, self.target_spacing_mm)
        report(progress, "preprocess", 1.0)
        check_cancel(cancel)
        report(progress, "load model", 0.0)
        vae, unet, scale_factor = self.load()
        report(progress, "load model", 1.0)
        check_cancel(cancel)
        return prep, vae, unet, scale_factor

    def _ensemble_sums(
        self,
        unet: torch.nn.Module,
        z_mu: torch.Tensor,
        z_sigma: torch.Tensor,
        scale_factor: float,
        prep: PreparedImage,
        progress: Progress | None,
        cancel: Cancel | None,
    ) -> dict[int, torch.Tensor]:
        """Sum of the kept up-block outputs over the ensemble's seeded noise draws (the UNet stage)."""
        dev = self.device
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        scheduler = build_scheduler(self.config)
        t = torch.tensor([self.timestep], dtype=torch.long, device=dev)
        spacing = torch.tensor(prep.input_spacing * REGION_SCALE, dtype=torch.float32, device=dev)[None]
        top, bottom = region_one_hot(self.region).to(dev), region_one_hot(self.bottom_region).to(dev)
        keep = tuple(LEVEL_NAMES.index(n) for n in self.levels)
        sums: dict[int, torch.Tensor] = {}
        for draw in range(self.ensemble):
            check_cancel(cancel)
            report(progress, "unet", draw / self.ensemble)
            eps_latent = torch.randn(z_mu.shape, generator=gen).to(dev)
            eps_noise = torch.randn(z_mu.shape, generator=gen).to(dev)
            z = z_mu + z_sigma * eps_latent if self.latent == "sample" else z_mu
            noisy = scheduler.add_noise(original_samples=z * scale_factor, noise=eps_noise, timesteps=t)

            def run(d, _splits, noisy=noisy):
                return self._unet_pass(unet, d, noisy, (t, top, bottom, spacing), keep)

            for idx, out in self._fallback("UNet pass", run, can_split=False).items():
                sums[idx] = out if idx not in sums else sums[idx] + out
        return sums

    def _unet_pass(
        self,
        unet: torch.nn.Module,
        d: torch.device,
        noisy: torch.Tensor,
        cond: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
        keep: tuple[int, ...],
    ) -> dict[int, torch.Tensor]:
        """One conditioned UNet pass on device ``d`` (moving the UNet there and back when it differs),
        returning the recorded up-block outputs on the CPU; ``cond`` is (timesteps, top, bottom, spacing)."""
        t, top, bottom, spacing = cond
        dev = self.device
        model = unet if d == dev else unet.to(d)
        try:
            with (
                torch.inference_mode(),
                torch.autocast(d.type, dtype=torch.float16, enabled=d.type == "cuda"),
                UpBlockRecorder(model, keep) as rec,
            ):
                model(
                    noisy.to(d),
                    timesteps=t.to(d),
                    top_region_index_tensor=top.to(d),
                    bottom_region_index_tensor=bottom.to(d),
                    spacing_tensor=spacing.to(d),
                )
            return {idx: out[0].float().cpu() for idx, out in rec.outputs.items()}
        finally:
            if d != dev:
                unet.to(dev)

    def _pyramid(self, sums: dict[int, torch.Tensor], prep: PreparedImage, volume: Volume) -> FeaturePyramid:
        """Ensemble means of the kept levels with their world geometry, tagged with what made them."""
        levels = []
        for name in self.levels:
            feats = sums[LEVEL_NAMES.index(name)] / self.ensemble
            levels.append(FeatureLevel(name, feats.contiguous(), level_matrix(prep.grid, feats.shape[1:])))
        ident = dict(self.identity())
        ident["volume_sha256"] = volume_digest(volume)
        ident["input_shape"] = list(prep.input_grid.shape)
        return FeaturePyramid(levels, prep.grid, ident)


# CPU float32 peak of the v1 VAE encoder, fitted to Testing/Benchmarks/bench_extraction.py on this
# project's machine: 3.8 GB at 128^3 and 9.8 GB at 256x256x128 network input.
ENCODE_BYTES_FIXED = 1.8e9
ENCODE_BYTES_PER_VOXEL = 954.0


def encode_memory_estimate(input_shape) -> float:
    """Bytes the CPU encoder needs for a network input of ``input_shape`` voxels (see above)."""
    return ENCODE_BYTES_FIXED + ENCODE_BYTES_PER_VOXEL * float(np.prod(input_shape))


def available_memory() -> int | None:
    """Bytes of memory free now (psutil when installed, else the OS), or None when unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None


def _set_vae_splits(vae, splits: int) -> None:
    """MAISI's split convolutions trade speed for memory; the number of splits changes no weights."""
    for m in vae.modules():
        if hasattr(m, "num_splits"):
            m.num_splits = int(splits)


__all__ = ["MaisiBackbone", "LEVEL_NAMES", "resolve_device", "encode_memory_estimate"]
