"""AdamW with linear warm-up and cosine decay, shared by every LightningModule."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from moda_train.experiment import OptimConfig


def warmup_cosine(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """LR multiplier at an optimizer step: 0 -> 1 linearly over warm-up, then cosine down to min_lr_ratio."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def configure_adamw(params: Iterable[torch.nn.Parameter], cfg: OptimConfig, max_steps: int) -> dict:
    """The `configure_optimizers` return value: AdamW plus a per-step LambdaLR schedule."""
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, cfg.warmup_steps, max_steps, cfg.min_lr_ratio)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
