"""A temporal VAE over normalised motion windows: 1-D convolutions, 1x/2x/4x downsampling in time.

    encode(motion [B, T, 70]) -> posterior mean, log-variance [B, T / f, C]
    decode(z [B, T / f, C])   -> motion [B, T, 70]
    embed(motion [B, T, 70])  -> [B, 2C] one vector per window (evaluation's Fréchet motion distance, diversity)

Convolutions (not attention) keep the model translation-invariant in time, so any window length that is a
multiple of f works, and the MMDiT's RoPE over latent frames still means "time".
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.nn import functional as F

from moda_train.models.vae_config import VAEConfig

# exp(logvar) over- or underflows beyond these; the bounds sit far outside any trained posterior.
LOGVAR_RANGE = (-30.0, 20.0)
NORM_GROUPS = 8


class ResBlock1d(nn.Module):
    """Norm, SiLU, dilated conv, norm, SiLU, conv, plus the input. The last conv starts at zero (identity)."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(NORM_GROUPS, channels)
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.norm2 = nn.GroupNorm(NORM_GROUPS, channels)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


def _res_stack(channels: int, blocks: int) -> list[nn.Module]:
    return [ResBlock1d(channels, dilation=3**index) for index in range(blocks)]


class MotionEncoder(nn.Module):
    """[B, D, T] -> [B, 2C, T / f]: residual stacks with a stride-2 convolution between resolutions."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        h = cfg.hidden_size
        layers: list[nn.Module] = [nn.Conv1d(cfg.motion_dim, h, 3, padding=1)]
        for _ in range(int(math.log2(cfg.downsample))):
            layers += [*_res_stack(h, cfg.blocks_per_level), nn.Conv1d(h, h, 3, stride=2, padding=1)]
        layers += [*_res_stack(h, cfg.blocks_per_level), nn.GroupNorm(NORM_GROUPS, h), nn.SiLU()]
        layers.append(nn.Conv1d(h, 2 * cfg.latent_dim, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MotionDecoder(nn.Module):
    """[B, C, T / f] -> [B, D, T]: the encoder mirrored; nearest upsampling + conv between resolutions."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        h = cfg.hidden_size
        layers: list[nn.Module] = [
            nn.Conv1d(cfg.latent_dim, h, 3, padding=1),
            *_res_stack(h, cfg.blocks_per_level),
        ]
        for _ in range(int(math.log2(cfg.downsample))):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv1d(h, h, 3, padding=1)]
            layers += _res_stack(h, cfg.blocks_per_level)
        layers += [nn.GroupNorm(NORM_GROUPS, h), nn.SiLU(), nn.Conv1d(h, cfg.motion_dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class MotionVAE(nn.Module):
    """Gaussian-posterior VAE over normalised motion windows (entry points: see the module docstring)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = MotionEncoder(cfg)
        self.decoder = MotionDecoder(cfg)

    @property
    def latent_dim(self) -> int:
        return self.cfg.latent_dim

    @property
    def downsample(self) -> int:
        return self.cfg.downsample

    def check_window(self, motion: Tensor) -> None:
        """Raise a ValueError naming the problem if `motion` is not [B, T, D] with T a multiple of the factor."""
        if motion.ndim != 3 or motion.shape[-1] != self.cfg.motion_dim:
            raise ValueError(f"motion must be [B, T, {self.cfg.motion_dim}], got {list(motion.shape)}")
        frames, factor = motion.shape[1], self.cfg.downsample
        if frames == 0 or frames % factor:
            raise ValueError(
                f"window of {frames} frames: the VAE downsamples time by {factor}, so windows must be a positive "
                f"multiple of {factor} frames"
            )

    def encode(self, motion: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance [B, T / f, C] of normalised motion [B, T, D]."""
        self.check_window(motion)
        stats = self.encoder(rearrange(motion, "B T C -> B C T"))  # [B, 2C, T/f]
        mean, logvar = rearrange(stats, "B C T -> B T C").chunk(2, dim=-1)  # [B, T/f, C] each
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def decode(self, z: Tensor) -> Tensor:
        """Normalised motion [B, T, D] from latents [B, T / f, C]."""
        if z.ndim != 3 or z.shape[-1] != self.cfg.latent_dim:
            raise ValueError(f"latent must be [B, T', {self.cfg.latent_dim}], got {list(z.shape)}")
        return rearrange(self.decoder(rearrange(z, "B T C -> B C T")), "B C T -> B T C")

    def forward(self, motion: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Reconstruct through a posterior sample: (reconstruction [B, T, D], mean, logvar [B, T / f, C])."""
        mean, logvar = self.encode(motion)
        z = reparameterize(mean, logvar, generator)
        return self.decode(z), mean, logvar

    def embed(self, motion: Tensor) -> Tensor:
        """One feature vector per window [B, 2C]: temporal mean and spread of the posterior means.

        Deterministic (no sampling) so that metrics built on it are repeatable; the spread term keeps how much
        a window moves, which the mean alone would average away.
        """
        mean, _ = self.encode(motion)
        return torch.cat([mean.mean(dim=1), mean.std(dim=1, unbiased=False)], dim=-1)


def reparameterize(mean: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """z = mean + sigma * eps with eps ~ N(0, I) drawn from `generator` (so training noise is reproducible)."""
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(0.5 * logvar) * eps


def kl_to_standard_normal(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per latent number, in nats (same shape as the inputs)."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar)
