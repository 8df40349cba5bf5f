"""What every LightningModule that trains `self.model` with AdamW and keeps an EMA copy shares (MMDiT, VAE)."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities import grad_norm
from typing_extensions import override

from moda_train.lit.ema import update_ema
from moda_train.lit.optim import configure_adamw


class EMATrainedModule(L.LightningModule):
    """Subclasses set `self.model`, `self.ema` (see lit/ema.py), `self.cfg` (with `optim` and `train` groups) and
    the `motion_mean` / `motion_std` buffers of the statistics they train on."""

    def normalize(self, motion: torch.Tensor) -> torch.Tensor:
        return (motion - self.motion_mean) / self.motion_std

    def denormalize(self, motion: torch.Tensor) -> torch.Tensor:
        return motion * self.motion_std + self.motion_mean

    @override
    def optimizer_step(self, *args, **kwargs) -> None:
        # Here rather than in on_train_batch_end: checkpoint callbacks run before that hook, and would save an
        # EMA one update behind the weights. Called once per optimizer step, so accumulation is respected.
        super().optimizer_step(*args, **kwargs)
        update_ema(self.ema, self.model, self.cfg.optim.ema_decay)

    @override
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.global_step % self.trainer.log_every_n_steps == 0:
            norms = grad_norm(self.model, norm_type=2)
            if norms:
                self.log("train/grad_norm", norms["grad_2.0_norm_total"])

    @override
    def configure_optimizers(self) -> dict:
        return configure_adamw(self.model.parameters(), self.cfg.optim, self.cfg.train.max_steps)
