"""Training-time sampling of the flow time t (t = 0 data, t = 1 noise)."""

from __future__ import annotations

import torch
from torch import Tensor

from moda_train.flow.config import FlowConfig


def sample_t(
    batch_size: int,
    cfg: FlowConfig,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draw t [batch_size] in [cfg.t_min, cfg.t_max].

    `uniform` is MoDA's choice. `logit_normal` (SD3) draws sigmoid(N(mean, std)), which puts more samples at
    mid-range t where the velocity is hardest to predict, then maps [0, 1] linearly onto [t_min, t_max].
    """
    if cfg.time_sampling == "uniform":
        u = torch.rand(batch_size, generator=generator, device=device)
    elif cfg.time_sampling == "logit_normal":
        normal = torch.randn(batch_size, generator=generator, device=device)
        u = torch.sigmoid(cfg.logit_normal_mean + cfg.logit_normal_std * normal)
    else:
        raise ValueError(f"flow.time_sampling={cfg.time_sampling!r}: choose uniform or logit_normal")
    return cfg.t_min + (cfg.t_max - cfg.t_min) * u
