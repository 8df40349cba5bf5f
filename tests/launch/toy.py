"""A toy LightningModule for in-process tests of the launch code (the multi-rank tests run the real CLI).

Deterministic the way the real module is: batch i is a pure function of (seed, i) and the stream starts where the
restored step counter says, the noise inside a step comes from a generator seeded by (seed, step), and the EMA
weights are a frozen submodule saved with the model.
"""

from __future__ import annotations

import copy
import os
import signal

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

FEATURES = 16


class StepStream(IterableDataset):
    """Endless batches; batch i depends only on (seed, i). Starts at batch `start`."""

    def __init__(self, seed: int, batch_size: int, start: int) -> None:
        self.seed, self.batch_size, self.start = seed, batch_size, start

    def __iter__(self):
        weights = torch.randn(FEATURES, 1, generator=torch.Generator().manual_seed(self.seed))
        index = self.start
        while True:
            x = torch.randn(self.batch_size, FEATURES, generator=torch.Generator().manual_seed(self.seed + index))
            yield {"x": x, "y": torch.sin(x @ weights)}
            index += 1


class ToyModule(pl.LightningModule):
    """MLP regression with AdamW, a warm-up/decay schedule and an EMA copy; can signal itself at a given step."""

    def __init__(self, seed: int = 0, signal_at_step: int = -1, signum: int = signal.SIGUSR1) -> None:
        super().__init__()
        self.seed, self.signal_at_step, self.signum = seed, signal_at_step, signum
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(FEATURES, 32), nn.GELU(), nn.Linear(32, 1))
        self.ema = copy.deepcopy(self.net).requires_grad_(False)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        noise = torch.Generator().manual_seed(self.seed + 7919 * self.global_step)
        x = batch["x"] + 0.01 * torch.randn(batch["x"].shape, generator=noise)
        if self.global_step == self.signal_at_step:
            # Arrives mid-step, as Slurm's warning (or scancel's SIGTERM) would.
            os.kill(os.getpid(), self.signum)
        return nn.functional.mse_loss(self.net(x), batch["y"])

    def optimizer_step(self, *args, **kwargs) -> None:
        # EMA here, not in on_train_batch_end: checkpoint callbacks run before that hook (as in the real module).
        super().optimizer_step(*args, **kwargs)
        with torch.no_grad():
            for ema, live in zip(self.ema.parameters(), self.net.parameters()):
                ema.lerp_(live, 0.1)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=1e-2)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 3) * 0.9**step)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def train_dataloader(self) -> DataLoader:
        start = self.trainer.global_step * self.trainer.accumulate_grad_batches
        return DataLoader(StepStream(self.seed, 8, start), batch_size=None)
