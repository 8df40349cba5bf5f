"""Callbacks shared by every training job."""

from __future__ import annotations

import time

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from typing_extensions import override


class ThroughputLogger(L.Callback):
    """Logs windows/s (overall and per device) and how much of each step was spent waiting for data.

    `data_time` is the gap between the end of one training batch and the start of the next (the loader's share);
    `step_time` is forward + backward + optimizer. If data_time is a large share, the loader limits training.
    """

    def __init__(self) -> None:
        self._batch_end: float | None = None
        self._batch_start = 0.0

    @override
    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int
    ) -> None:
        self._batch_start = time.perf_counter()
        if self._batch_end is not None:
            pl_module.log("perf/data_time", self._batch_start - self._batch_end, on_step=True, on_epoch=False)

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx
    ) -> None:
        now = time.perf_counter()
        step_time = now - self._batch_start
        windows = len(batch["motion"])
        pl_module.log("perf/step_time", step_time, on_step=True, on_epoch=False)
        pl_module.log("perf/windows_per_sec_per_device", windows / step_time, on_step=True, on_epoch=False)
        if self._batch_end is not None:
            overall = windows * trainer.world_size / (now - self._batch_end)
            pl_module.log("perf/windows_per_sec", overall, on_step=True, on_epoch=False)
        self._batch_end = now

    @override
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._batch_end = None  # the epoch boundary (validation, worker restart) is not loader time


class FinalCheckpoint(L.Callback):
    """Writes `last` when training ends on a step no periodic checkpoint covered (max_steps off the interval).

    Every rank calls it (a DeepSpeed save is a collective). A stop that a callback requested (preemption) has
    already saved what it needs, so it is left alone.
    """

    def __init__(self, periodic: ModelCheckpoint) -> None:
        self.periodic = periodic

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.should_stop or self.periodic.dirpath is None:
            return
        if self.periodic._last_global_step_saved < trainer.global_step:  # Lightning's own record of its saves
            trainer.save_checkpoint(f"{self.periodic.dirpath}/{self.periodic.CHECKPOINT_NAME_LAST}.ckpt")
