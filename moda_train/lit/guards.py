"""Training guards: a non-finite loss or gradient never reaches the weights, the EMA or a checkpoint, and the
samples the loader skipped are added up over workers and ranks.

- Non-finite loss: the modules pass their training loss through `guard_loss`. If the loss of any rank is NaN/inf
  (the ranks agree with one small all-reduce), every rank replaces it by `0 * sum(p.sum())` over the trainable
  parameters: the backward then gives exactly zero gradients, nothing of that batch reaches the weights, and DDP /
  DeepSpeed still see the same collectives on every rank. Without DeepSpeed the optimizer step itself is skipped
  too (the gradients are dropped, so AdamW leaves every parameter and its moments alone); under DeepSpeed the step
  runs on the zero gradients (AdamW's momentum moves the weights once more; the moments decay one step). Either
  way the step counter and the LR schedule advance, as for any step.
- Non-finite gradient with a finite loss: the optimizer step is skipped before clipping, so weights and optimizer
  state stay as they were (the EMA then moves towards those unchanged weights). Without DeepSpeed the guard checks
  the `.grad` tensors (one fused norm) and drops them. DeepSpeed keeps the gradients in its own partitioned
  buffers, and its optimizers (0.19, ZeRO stages 1-3; in bf16 through `bf16.check_grad_overflow`, on by default)
  check them for inf/NaN themselves, agree across ranks with one all-reduce and skip the step, leaving the fp32
  master weights and the optimizer state alone. The guard only reads the engine's verdict
  (`was_step_applied()`) after the step and counts it.
- `train.max_bad_steps` such batches in a row stop the run with an error: something is broken for good.
- `data/skipped_samples` is the running total of skipped samples (unreadable shards, bad samples, samples lost
  behind a damaged tar header) over all loader workers and ranks, reduced at every logging step and kept in the
  checkpoint; the total is printed when training ends.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import DeepSpeedStrategy
from typing_extensions import override


class TrainingGuard(pl.Callback):
    def __init__(self, max_bad_steps: int = 10) -> None:
        self.max_bad_steps = max_bad_steps
        self.bad_in_a_row = 0
        self.skipped_steps = 0
        self.skipped_samples = 0
        self._unreduced_samples = 0  # this rank's skips since the last reduction
        self._drop_gradients = False
        self._step_was_bad = False
        self._checked_step = -1  # the global step after the last optimizer step looked at

    def _skip(self, trainer: pl.Trainer, what: str, step: int) -> None:
        self._step_was_bad = True
        self.bad_in_a_row += 1
        self.skipped_steps += 1
        if trainer.is_global_zero:
            print(f"step {step}: non-finite {what}: batch skipped ({self.skipped_steps} so far)", flush=True)
        if self.max_bad_steps and self.bad_in_a_row >= self.max_bad_steps:
            raise RuntimeError(
                f"{self.bad_in_a_row} training batches in a row had a non-finite {what} (train.max_bad_steps="
                f"{self.max_bad_steps}): stopping. The weights are still finite; resume from the last checkpoint "
                "with a lower optim.lr, or check the data."
            )

    def check_loss(self, trainer: pl.Trainer, module: pl.LightningModule, loss: torch.Tensor) -> torch.Tensor:
        bad = not bool(torch.isfinite(loss.detach()).all())
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):
            return loss
        self._skip(trainer, "loss", trainer.global_step)
        self._drop_gradients = True
        trainable = [p for p in module.parameters() if p.requires_grad]
        return torch.stack([p.sum() for p in trainable]).sum() * 0.0

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        drop, self._drop_gradients = self._drop_gradients, False
        if isinstance(trainer.strategy, DeepSpeedStrategy):
            return  # ZeRO holds the gradients in its own partitions and checks them itself (on_train_batch_end)
        grads = [p.grad.detach() for p in pl_module.parameters() if p.grad is not None]
        if not drop:
            finite = not grads or bool(
                torch.isfinite(torch.stack([torch.linalg.vector_norm(g) for g in grads])).all()
            )
            if trainer.strategy.reduce_boolean_decision(not finite, all=False):
                self._skip(trainer, "gradient", trainer.global_step)
                drop = True
        if drop:
            for p in pl_module.parameters():
                p.grad = None  # torch optimizers skip parameters without a gradient

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._checked_step = trainer.global_step

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: object, batch: object, batch_idx: int
    ) -> None:
        # Before the checkpoint callbacks (Lightning runs those last): a stop here comes before that step's save.
        if trainer.global_step != self._checked_step:  # an optimizer step just finished
            self._checked_step = trainer.global_step
            deepspeed = isinstance(trainer.strategy, DeepSpeedStrategy)
            if deepspeed and not self._step_was_bad and not trainer.strategy.deepspeed_engine.was_step_applied():
                self._skip(trainer, "gradient", trainer.global_step - 1)
            if not self._step_was_bad:
                self.bad_in_a_row = 0
            self._step_was_bad = False
        if isinstance(batch, dict) and "num_skipped" in batch:
            self._unreduced_samples += int(batch["num_skipped"])
        # The same batches on every rank, so every rank joins the reduction.
        if batch_idx % (trainer.log_every_n_steps * trainer.accumulate_grad_batches) == 0:
            self._reduce_samples(trainer)
            pl_module.log("data/skipped_samples", float(self.skipped_samples), on_step=True, on_epoch=False)
            pl_module.log("train/skipped_steps", float(self.skipped_steps), on_step=True, on_epoch=False)

    def _reduce_samples(self, trainer: pl.Trainer) -> None:
        new = torch.tensor(self._unreduced_samples, dtype=torch.long, device=trainer.strategy.root_device)
        self.skipped_samples += int(trainer.strategy.reduce(new, reduce_op="sum"))
        self._unreduced_samples = 0

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reduce_samples(trainer)
        if trainer.is_global_zero:
            print(
                f"data: {self.skipped_samples} samples skipped in total (all ranks and loader workers); "
                f"{self.skipped_steps} training batches skipped for a non-finite loss or gradient"
            )

    @override
    def state_dict(self) -> dict:
        return {"skipped_samples": self.skipped_samples, "skipped_steps": self.skipped_steps}

    @override
    def load_state_dict(self, state_dict: dict) -> None:
        self.skipped_samples = state_dict.get("skipped_samples", 0)
        self.skipped_steps = state_dict.get("skipped_steps", 0)


def guard_loss(module: pl.LightningModule, loss: torch.Tensor) -> torch.Tensor:
    """`loss`, or a zero-gradient stand-in when it is not finite on some rank (see TrainingGuard); unchanged when
    the trainer has no TrainingGuard (a plain Lightning run of the module)."""
    for callback in module.trainer.callbacks:
        if isinstance(callback, TrainingGuard):
            return callback.check_loss(module.trainer, module, loss)
    return loss
