"""Exponential moving average of model weights, DiT style.

The EMA copy is a frozen deep copy in eval mode, synced with decay 0 before the first step and updated after
every optimizer step. It is a submodule of the LightningModule, so it is saved in (and restored from) every
checkpoint, and validation and sampling use it.

Under DeepSpeed ZeRO-1/2 every rank holds full parameters, so each rank updates its own identical EMA. Under
ZeRO-3 parameters are partitioned and the live weights seen here are shards: `update` would average shards into
an unsharded copy, so ZeRO-3 runs must either disable EMA (`optim.ema_decay=0`) or gather parameters first;
`update` refuses partitioned parameters rather than silently averaging the wrong tensors.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema(model: nn.Module) -> nn.Module:
    ema = copy.deepcopy(model).eval()
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema = decay * ema + (1 - decay) * model, parameter by parameter (buffers are copied)."""
    for ema_param, param in zip(ema.parameters(), model.parameters(), strict=True):
        if hasattr(param, "ds_id") and param.numel() == 0:
            raise RuntimeError("EMA update on ZeRO-3 partitioned parameters: set optim.ema_decay=0 (see ema.py)")
        ema_param.lerp_(param.detach().to(ema_param.dtype), 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers(), strict=True):
        ema_buffer.copy_(buffer)
