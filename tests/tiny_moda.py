"""The tiny MoDA every test that needs a small MMDiT builds, and matching random inputs."""

from __future__ import annotations

import torch

from moda_train.models import MoDA, ModelConfig

TINY = dict(
    hidden_size=32,
    num_heads=4,
    depth_four_stream=1,
    depth_two_stream=1,
    depth_single_stream=2,
    audio_dim=24,
    motion_dim=10,
    identity_dim=6,
)


def tiny_model(seed: int = 0, perturb: bool = True, **overrides) -> MoDA:
    """A tiny MoDA; with `perturb` the zero-initialised adaLN and output weights get small random values so that
    every condition can reach the output (at init the network outputs exactly zero)."""
    torch.manual_seed(seed)
    model = MoDA(ModelConfig(**{**TINY, **overrides}))
    if perturb:
        with torch.no_grad():
            for p in model.parameters():
                if not p.any():
                    p.normal_(std=0.1)
    return model


def tiny_inputs(model: MoDA, batch: int = 3, frames: int = 7, seed: int = 1) -> dict[str, torch.Tensor]:
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    return dict(
        x_t=torch.randn(batch, frames, cfg.motion_dim, generator=g),
        t=torch.rand(batch, generator=g),
        audio=torch.randn(batch, frames, cfg.audio_dim, generator=g),
        identity=torch.randn(batch, cfg.identity_dim, generator=g),
        emotion=torch.randint(0, cfg.num_emotions, (batch,), generator=g),
        prev_motion=torch.randn(batch, cfg.prev_motion_frames, cfg.motion_dim, generator=g),
    )
