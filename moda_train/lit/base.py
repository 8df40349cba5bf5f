"""What every LightningModule that trains `self.model` with AdamW and keeps an EMA copy shares (MMDiT, VAE)."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.strategies import DeepSpeedStrategy
from typing_extensions import override

from moda_train.lit.ema import EMA_CHECKPOINT_KEY, EMAShadow
from moda_train.lit.optim import configure_adamw


class EMATrainedModule(L.LightningModule):
    """Subclasses set `self.model`, `self.ema` (see lit/ema.py), `self.cfg` (with `optim` and `train` groups) and
    the `motion_mean` / `motion_std` buffers of the statistics they train on. A subclass that overrides `setup`
    calls `super().setup(stage)`."""

    def normalize(self, motion: torch.Tensor) -> torch.Tensor:
        return (motion - self.motion_mean) / self.motion_std

    def denormalize(self, motion: torch.Tensor) -> torch.Tensor:
        return motion * self.motion_std + self.motion_mean

    @property
    def ema_shadow(self) -> EMAShadow:
        # Built on first use, so subclasses only have to set `self.ema`. A plain attribute, not a submodule:
        # nothing that casts or moves the module tree reaches the fp32 accumulator.
        if "_ema_shadow" not in self.__dict__:
            self.__dict__["_ema_shadow"] = EMAShadow(self.ema, self.cfg.optim.ema_decay)
        return self.__dict__["_ema_shadow"]

    def _deepspeed(self) -> bool:
        return self._trainer is not None and isinstance(self.trainer.strategy, DeepSpeedStrategy)

    @override
    def setup(self, stage: str) -> None:
        # Before the strategy's setup: DeepSpeed has not cast the weights to bf16 (or partitioned them) yet.
        if stage == "fit" and self._deepspeed():
            self.ema_shadow.snapshot()

    @override
    def on_fit_start(self) -> None:
        self.ema_shadow.attach(self.model, self.global_rank, self.trainer.world_size)

    @override
    def on_validation_start(self) -> None:
        self.ema_shadow.copy_to_module()

    @override
    def on_train_end(self) -> None:
        self.ema_shadow.copy_to_module()

    @override
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        shadow = self.ema_shadow
        if shadow.layout in ("full", "zero3"):
            shadow.copy_to_module()
            checkpoint[EMA_CHECKPOINT_KEY] = shadow.state_dict()

    @override
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if EMA_CHECKPOINT_KEY in checkpoint:
            world_size = self.trainer.world_size if self._trainer is not None else 1
            self.ema_shadow.load_state_dict(checkpoint[EMA_CHECKPOINT_KEY], self.global_rank, world_size)

    @override
    def optimizer_step(self, *args, **kwargs) -> None:
        # Here rather than in on_train_batch_end: checkpoint callbacks run before that hook, and would save an
        # EMA one update behind the weights. Called once per optimizer step, so accumulation is respected.
        super().optimizer_step(*args, **kwargs)
        if self._deepspeed():
            # ZeRO keeps gradients in its own partitioned buffers; the engine computed the global norm (before
            # clipping) during its step.
            norm = self.trainer.strategy.deepspeed_engine.get_global_grad_norm()
            if norm is not None:
                self.log("train/grad_norm", float(norm), on_step=True, on_epoch=False)
        self.ema_shadow.update(self.model)

    @override
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Every step (one fused norm, cheap): Lightning writes the value at each of its log steps. Before clipping.
        if not self._deepspeed():
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            if grads:
                self.log("train/grad_norm", torch.nn.utils.get_total_norm(grads), on_step=True, on_epoch=False)

    @override
    def configure_optimizers(self) -> dict:
        return configure_adamw(self.model.parameters(), self.cfg.optim, self.cfg.train.max_steps, self._trainer)
