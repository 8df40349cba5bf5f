"""AdamW with linear warm-up and cosine decay, shared by every LightningModule, and the one place that picks the
AdamW implementation (`make_adamw`), so that training and `benchmarks/bench_mmdit.py` step the same optimizer."""

from __future__ import annotations

import math
from collections.abc import Iterable

import lightning as L
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from moda_train.experiment import OptimConfig


def warmup_cosine(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """LR multiplier at an optimizer step: 0 -> 1 linearly over warm-up, then cosine down to min_lr_ratio."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_adamw(
    params: Iterable[torch.nn.Parameter], allow_fused: bool = True, **hyper: object
) -> tuple[torch.optim.AdamW, str]:
    """The fastest correct AdamW for the parameters' device and its name: `fused` (one kernel over all
    parameters; torch has it on CPU and CUDA) where torch accepts it and `allow_fused`, else `foreach` (a few
    multi-tensor ops).

    Never torch's default: on CPU that is the per-parameter for-loop, which took 0.78 s of a 2.4 s MoDA-B step
    where fused took 0.25 s (docs/model.md). Under DeepSpeed ZeRO this is the client optimizer and steps each
    rank's flat fp32 partition, which fused accepts on CPU and CUDA alike (tests/launch/test_deepspeed_cpu.py).
    """
    params = list(params)
    optimizer, implementation = None, "foreach"
    if allow_fused:
        try:
            optimizer, implementation = torch.optim.AdamW(params, fused=True, **hyper), "fused"
        except RuntimeError:  # torch refuses fused for this device or dtype (its message lists the supported ones)
            pass
    if optimizer is None:
        optimizer = torch.optim.AdamW(params, foreach=True, **hyper)
    optimizer.register_load_state_dict_post_hook(_keep_implementation)
    return optimizer, implementation


def _keep_implementation(optimizer: torch.optim.Optimizer) -> None:
    """After loading a state dict: torch restores the saved groups' `fused`/`foreach` flags, so a checkpoint
    from another implementation (older runs: the for-loop) would silently switch this run to it. Keep the one
    chosen here; fused wants its step counters as fp32 tensors on the parameter's device."""
    fused = bool(optimizer.defaults["fused"])
    for group in optimizer.param_groups:
        group["fused"], group["foreach"] = optimizer.defaults["fused"], optimizer.defaults["foreach"]
    if fused:
        for param, state in optimizer.state.items():
            if "step" in state:
                state["step"] = torch.as_tensor(state["step"], dtype=torch.float32, device=param.device)


def fused_allowed(trainer: L.Trainer | None) -> bool:
    """Whether fused AdamW composes with how `trainer` clips: Lightning refuses to clip the gradients of an
    optimizer that unscales them itself (fused) under a mixed-precision plugin; DeepSpeed clips in its engine."""
    if trainer is None or not (trainer.gradient_clip_val or 0) > 0:
        return True
    return not isinstance(trainer.precision_plugin, MixedPrecision)


def configure_adamw(
    params: Iterable[torch.nn.Parameter], cfg: OptimConfig, max_steps: int, trainer: L.Trainer | None = None
) -> dict:
    """The `configure_optimizers` return value: AdamW (`make_adamw`) plus a per-step LambdaLR schedule.

    `trainer` (the module's, when attached) decides whether fused AdamW may be used (`fused_allowed`).

    The implementation is logged on rank 0 and stays in the optimizer's state (`fused` / `foreach` of its
    param groups, saved in every checkpoint)."""
    optimizer, implementation = make_adamw(
        params, fused_allowed(trainer), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay
    )
    rank_zero_info(f"AdamW implementation: {implementation}")
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, cfg.warmup_steps, max_steps, cfg.min_lr_ratio)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
