"""Smooth random motion windows and a tiny VAE overfitted to them, shared by the model-level tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from torch.nn import functional as F

from moda_train.core.config_loader import CONFIGS_ROOT
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


REPO = CONFIGS_ROOT.parent
TINY_VAE = CONFIGS_ROOT / "experiments" / "vae_tiny_cpu.yaml"


def run_train(shards: Path, out_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`python -m moda_train.train vae_tiny_cpu.yaml` on `shards` with one thread: CI cores are shared, and two
    threads on a loaded CPU are slower than one."""
    # no launcher variables from the outside (pytest itself may run under Slurm or torchrun)
    launcher = ("SLURM_", "TORCHELASTIC_", "LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(launcher)}
    env["OMP_NUM_THREADS"] = "1"
    command = [
        sys.executable,
        "-m",
        "moda_train.train",
        str(TINY_VAE),
        f"data.train_shards={shards}/train-*.tar",
        f"data.val_shards={shards}/val-*.tar",
        f"data.stats_path={shards}/stats.json",
        "data.num_workers=0",
        f"train.out_dir={out_dir}",
        *overrides,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO, env=env)
