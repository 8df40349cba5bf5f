"""Smooth random motion windows and a tiny VAE overfitted to them, shared by the model-level tests."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from moda_train.lit.vae_module import vae_loss
from moda_train.models.motion_vae import MotionVAE
from moda_train.models.vae_config import VAEConfig

TINY = dict(hidden_size=64, latent_dim=16, blocks_per_level=1)
TRAIN_STEPS = 60  # steps of the CLI-trained VAE the slow tests share (conftest `trained_run`)


def smooth_windows(count: int, frames: int, seed: int = 0, dim: int = 70) -> torch.Tensor:
    """Unit-variance [count, frames, dim] windows of low-pass noise: smooth like real (normalised) motion."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(count, dim, frames + 8, generator=generator)
    smooth = F.conv1d(noise, torch.ones(dim, 1, 9) / 9, groups=dim)  # 9-frame moving average
    smooth = smooth.transpose(1, 2)[:, :frames]
    return smooth / smooth.std()


def overfit_vae(windows: torch.Tensor, steps: int, downsample: int = 4, seed: int = 0) -> MotionVAE:
    """A tiny VAE trained with Adam on exactly `windows` for `steps` steps (seeded, so repeatable)."""
    torch.manual_seed(seed)
    cfg = VAEConfig(**TINY, downsample=downsample, kl_weight=1e-5)
    model = MotionVAE(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    weights = torch.ones(cfg.motion_dim)
    for step in range(steps):
        terms = vae_loss(model, windows, cfg, weights, cfg.kl_weight, torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    return model.eval()
