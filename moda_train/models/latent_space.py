"""The space the flow model works in: normalised raw motion (identity) or the latents of a frozen motion VAE.

With `motion_space: vae` the MMDiT trains on `encode(motion)` and its samples go through `decode` back to
normalised motion. Latents are the VAE posterior means (deterministic, so a window always maps to the same
target), standardised per channel with statistics measured on data, so the flow sees unit-scale targets as it
does with raw z-scored motion.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor, nn

from moda_train.core.checkpoint import checkpoint_config, read_checkpoint
from moda_train.models.motion_vae import MotionVAE
from moda_train.models.vae_config import VAEConfig

# The VAE LightningModule keeps these beside its weights; EMA weights are the ones validated, so they are loaded.
WEIGHTS_PREFIX = "ema."
LATENT_STAT_KEYS = ("latent_mean", "latent_std", "latent_count")
MOTION_STAT_KEYS = ("motion_mean", "motion_std")
MIN_LATENT_STD = 1e-4


class LatentMoments:
    """Per-channel mean and standard deviation of latents [..., C], accumulated in float64.

    The running sums live in one tensor, `sums`, so a distributed caller sums them over ranks in one all-reduce.
    """

    def __init__(self, channels: int, device: torch.device | str | None = None) -> None:
        self.channels = channels
        self.sums = torch.zeros(2 * channels + 1, dtype=torch.float64, device=device)  # sum, sum of squares, n

    def update(self, latent: Tensor) -> None:
        flat = latent.detach().reshape(-1, latent.shape[-1]).double()
        self.sums += torch.cat([flat.sum(0), flat.square().sum(0), flat.new_tensor([len(flat)])])

    def compute(self) -> tuple[Tensor, Tensor, int]:
        """(mean [C], std [C], number of latent frames) as float32; raises if too little was accumulated."""
        total, total_sq, count = self.sums.split([self.channels, self.channels, 1])
        if count.item() < 2:
            raise ValueError("latent statistics need at least 2 latent frames; no (or too little) data was seen")
        mean = total / count
        std = (total_sq / count - mean.square()).clamp(min=0.0).sqrt().clamp(min=MIN_LATENT_STD)
        return mean.float(), std.float(), int(count.item())


@torch.no_grad()
def compute_latent_stats(vae: MotionVAE, dataloader: Iterable[dict], max_batches: int) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std [C] of the VAE's posterior means over up to `max_batches` batches of `motion`."""
    if max_batches < 1:
        raise ValueError(f"max_batches={max_batches} must be >= 1")
    device = next(vae.parameters()).device
    moments = LatentMoments(vae.latent_dim, device)
    for index, batch in enumerate(dataloader):
        if index == max_batches:
            break
        moments.update(vae.encode(batch["motion"].to(device))[0])
    mean, std, _ = moments.compute()
    return mean, std


class LatentSpace(nn.Module):
    """encode: normalised motion [B, T, 70] -> latent [B, T / f, C]; decode: the way back. Frozen.

    `LatentSpace.raw()` is the identity (f = 1, C = 70); `LatentSpace.from_checkpoint(path)` wraps a trained VAE.
    As a submodule of the MMDiT module its VAE weights and statistics are saved in the MMDiT's checkpoints too.
    """

    def __init__(self, vae: MotionVAE | None = None, motion_dim: int = 70) -> None:
        super().__init__()
        self.vae = vae
        self.motion_dim = vae.cfg.motion_dim if vae is not None else motion_dim
        if vae is not None:
            vae.requires_grad_(False).eval()
            channels = vae.latent_dim
            self.register_buffer("latent_mean", torch.zeros(channels))
            self.register_buffer("latent_std", torch.ones(channels))
            # latent frames the statistics were measured on (1 when set by hand); 0 = not set yet
            self.register_buffer("latent_count", torch.zeros(()))
            # The normalisation the VAE was trained under: a flow model must normalise its motion the same way.
            self.register_buffer("motion_mean", torch.zeros(self.motion_dim))
            self.register_buffer("motion_std", torch.ones(self.motion_dim))

    def train(self, mode: bool = True) -> LatentSpace:
        """Frozen means eval mode too, whatever mode the module that holds this one is switched to."""
        super().train(mode)
        if self.vae is not None:
            self.vae.eval()
        return self

    @classmethod
    def raw(cls, motion_dim: int = 70) -> LatentSpace:
        """The identity space: the flow works on normalised 70-d motion directly."""
        return cls(None, motion_dim)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> LatentSpace:
        """Load a frozen VAE (EMA weights) and its stored latent statistics from a VAE training checkpoint."""
        checkpoint = _read_vae_checkpoint(Path(path))
        vae = MotionVAE(VAEConfig(**checkpoint_config(checkpoint)["vae"]))
        state = checkpoint["state_dict"]
        weights = {k[len(WEIGHTS_PREFIX) :]: v for k, v in state.items() if k.startswith(WEIGHTS_PREFIX)}
        vae.load_state_dict(weights)
        space = cls(vae)
        for key in (*LATENT_STAT_KEYS, *MOTION_STAT_KEYS):
            getattr(space, key).copy_(state[key])
        return space

    @classmethod
    def from_config(cls, vae_config: dict) -> LatentSpace:
        """The space of a VAE with config `vae_config` (`vae_config()` of a loaded one), weights and statistics
        unset: they come from the state dict of a checkpoint that holds this space."""
        return cls(MotionVAE(VAEConfig(**vae_config)))

    def vae_config(self) -> dict:
        """The VAE's config as a plain dict (what `from_config` takes)."""
        if self.vae is None:
            raise ValueError("raw motion space has no VAE")
        return dataclasses.asdict(self.vae.cfg)

    @property
    def is_raw(self) -> bool:
        return self.vae is None

    @property
    def latent_dim(self) -> int:
        """Channels per latent frame (70 in raw mode)."""
        return self.motion_dim if self.vae is None else self.vae.latent_dim

    @property
    def downsample(self) -> int:
        """Motion frames per latent frame (1 in raw mode)."""
        return 1 if self.vae is None else self.vae.downsample

    @property
    def has_stats(self) -> bool:
        """Whether latent statistics are set (stored by a VAE run that validated, or via `set_stats`)."""
        return self.vae is None or bool(self.latent_count > 0)

    def set_stats(self, mean: Tensor, std: Tensor) -> None:
        """Set the per-channel latent statistics (e.g. from `compute_latent_stats` on the flow model's data)."""
        if self.vae is None:
            raise ValueError("raw motion space has no latent statistics")
        if mean.shape != self.latent_mean.shape or std.shape != self.latent_std.shape:
            raise ValueError(
                f"latent stats must be [{self.latent_dim}], got {list(mean.shape)}, {list(std.shape)}"
            )
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std.clamp(min=MIN_LATENT_STD))
        self.latent_count.fill_(1)

    def check_motion_stats(self, mean: Tensor, std: Tensor, rtol: float = 1e-3) -> None:
        """Raise if the flow model's motion normalisation differs from the one the VAE was trained with."""
        if self.vae is None:
            return
        same = torch.allclose(
            mean.to(self.motion_mean), self.motion_mean, rtol=rtol, atol=rtol
        ) and torch.allclose(std.to(self.motion_std), self.motion_std, rtol=rtol, atol=rtol)
        if not same:
            raise ValueError(
                "the VAE was trained with different motion statistics (stats.json) than this run uses: latents "
                "would not mean the same motion; train the VAE on the same shards, or point data.stats_path at "
                "the VAE's statistics"
            )

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames for a window of `num_frames` motion frames (which must be a multiple of the factor)."""
        if num_frames % self.downsample:
            raise ValueError(f"{num_frames} frames is not a multiple of the VAE's downsampling {self.downsample}")
        return num_frames // self.downsample

    def prev_latent_frames(self, prev_frames: int) -> int:
        """Latent frames that `encode_prev` makes from `prev_frames` previous motion frames."""
        return math.ceil(prev_frames / self.downsample)

    @torch.no_grad()
    def encode(self, motion: Tensor) -> Tensor:
        """Normalised motion [B, T, D] -> standardised latent [B, T / f, C]."""
        if self.vae is None:
            return motion
        self._require_stats()
        mean, _ = self.vae.encode(motion)
        return (mean - self.latent_mean) / self.latent_std

    def decode(self, latent: Tensor) -> Tensor:
        """Standardised latent [B, T / f, C] -> normalised motion [B, T, D].

        Not under no_grad: the weights are frozen, but a loss on decoded motion (e.g. ALSE on the predicted clean
        motion) must reach the latent that the flow model predicted.
        """
        if self.vae is None:
            return latent
        self._require_stats()
        return self.vae.decode(latent * self.latent_std + self.latent_mean)

    @torch.no_grad()
    def encode_prev(self, prev_motion: Tensor) -> Tensor:
        """Previous-motion condition [B, P, D] -> [B, ceil(P / f), C].

        P is usually 1, shorter than one latent frame: the earliest frame is repeated in front until the length
        is a multiple of f, i.e. the frames before are taken as held still, and that padded stretch is encoded.
        """
        if self.vae is None or prev_motion.shape[1] == 0:
            return prev_motion if self.vae is None else prev_motion.new_zeros(len(prev_motion), 0, self.latent_dim)
        pad = -prev_motion.shape[1] % self.downsample
        padded = torch.cat([prev_motion[:, :1].expand(-1, pad, -1), prev_motion], dim=1)
        return self.encode(padded)

    def stack_frames(self, features: Tensor) -> Tensor:
        """Per-frame features [B, T, A] -> per-latent-frame features [B, T / f, f * A] (the f frames side by side).

        Conditions given per video frame (audio) must line up with latent frames one to one; stacking keeps all
        of their detail, so the MMDiT's audio input becomes f * A wide (`stacked_dim`).
        """
        self.latent_frames(features.shape[1])  # a clear error for a length that is not a multiple of f
        return rearrange(features, "B (T f) A -> B T (f A)", f=self.downsample)

    def stacked_dim(self, feature_dim: int) -> int:
        """Width of `stack_frames` output for per-frame features of width `feature_dim`."""
        return feature_dim * self.downsample

    def _require_stats(self) -> None:
        if not self.has_stats:
            raise RuntimeError(
                "the VAE checkpoint has no latent statistics (its run never validated): compute them with "
                "`space.set_stats(*compute_latent_stats(space.vae, loader, max_batches))`"
            )


def _read_vae_checkpoint(path: Path) -> dict:
    checkpoint = read_checkpoint(path, "vae", weights_only=True)
    missing = [key for key in (*LATENT_STAT_KEYS, *MOTION_STAT_KEYS) if key not in checkpoint["state_dict"]]
    if missing:
        raise ValueError(f"{path}: VAE checkpoint lacks {', '.join(missing)}")
    return checkpoint
