"""Training progress in optimizer steps, for a terminal and for a Slurm log; and less third-party noise.

Lightning's own bar counts batches per epoch, and our epochs are a fixed number of resampled windows, so it shows
`Epoch 78/-2 ... 4/4`. `StepProgress` counts what a run is configured by: optimizer steps out of
`train.max_steps`, with the training loss, windows per second (all ranks) and the time left. On a terminal it is
one tqdm bar; when stdout is not a terminal (a Slurm log, a pipe) it prints a plain line every `interval_s`
seconds, at the first step and at the last, so `tail -f` of a log reads like a table. Each validation gets one
line of its headline values. Only rank 0 reports.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from typing import IO, Any

import lightning as L
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from tqdm import tqdm
from typing_extensions import override


def format_duration(seconds: float) -> str:
    """`1h02m`, `4m05s`, `12s`; `?` while unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class StepProgress(ProgressBar):
    """Progress of a training run in optimizer steps (see the module docstring).

    `windows_per_step` is the global batch (windows per optimizer step over all ranks); `stream` and `tty`
    default to stdout and whether it is a terminal.
    """

    def __init__(
        self,
        windows_per_step: int,
        interval_s: float = 30.0,
        stream: IO[str] | None = None,
        tty: bool | None = None,
    ) -> None:
        super().__init__()
        self.windows_per_step = windows_per_step
        self.interval_s = interval_s
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self._enabled = True
        self._bar: tqdm | None = None
        self._start_time = 0.0
        self._start_step = 0
        self._last_step = 0
        self._last_line = -math.inf

    @override
    def disable(self) -> None:
        self._enabled = False

    @override
    def enable(self) -> None:
        self._enabled = True

    def _reporting(self, trainer: L.Trainer) -> bool:
        return self._enabled and trainer.is_global_zero

    def _loss(self, trainer: L.Trainer) -> float | None:
        value = trainer.progress_bar_metrics.get("train/loss")
        return None if value is None else float(value)

    def status(self, trainer: L.Trainer, now: float) -> dict[str, Any]:
        """step, max_steps, loss, windows/s and seconds left, measured since training (or the resume) began."""
        step, total = trainer.global_step, trainer.max_steps
        done = step - self._start_step
        elapsed = now - self._start_time
        rate = done / elapsed if done > 0 and elapsed > 0 else math.nan
        return {
            "step": step,
            "max_steps": total,
            "loss": self._loss(trainer),
            "windows_per_s": rate * self.windows_per_step,
            "elapsed_s": elapsed,
            "eta_s": (total - step) / rate if rate > 0 else math.nan,
        }

    def line(self, status: dict[str, Any]) -> str:
        """The plain-text report of `status`, one line."""
        loss = "?" if status["loss"] is None else f"{status['loss']:.4f}"
        speed = "?" if math.isnan(status["windows_per_s"]) else f"{status['windows_per_s']:.1f}"
        return (
            f"step {status['step']}/{status['max_steps']} ({100 * status['step'] / status['max_steps']:.0f}%)"
            f"  loss {loss}  {speed} windows/s  elapsed {format_duration(status['elapsed_s'])}"
            f"  ETA {format_duration(status['eta_s'])}"
        )

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_time = time.perf_counter()
        self._start_step = self._last_step = trainer.global_step
        if not self._reporting(trainer):
            return
        if self.tty:
            self._bar = tqdm(
                total=trainer.max_steps,
                initial=trainer.global_step,
                desc="train",
                unit="step",
                file=self.stream,
                dynamic_ncols=True,
                bar_format="{desc} {n_fmt}/{total_fmt} {bar} [{elapsed}<{remaining}] {postfix}",
            )
        else:
            print(f"training: step {trainer.global_step} of {trainer.max_steps}", file=self.stream, flush=True)

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step == self._last_step or not self._reporting(trainer):  # mid-accumulation: no optimizer step yet
            return
        now = time.perf_counter()
        status = self.status(trainer, now)
        if self._bar is not None:
            self._bar.update(step - self._last_step)
            loss = "?" if status["loss"] is None else f"{status['loss']:.4f}"
            speed = "?" if math.isnan(status["windows_per_s"]) else f"{status['windows_per_s']:.1f}"
            self._bar.set_postfix_str(f"loss {loss}, {speed} windows/s", refresh=False)
        elif now - self._last_line >= self.interval_s or step == trainer.max_steps or self._last_line < 0:
            print(self.line(status), file=self.stream, flush=True)
            self._last_line = now
        self._last_step = step

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self._reporting(trainer):
            return
        # the headline values (val/loss, val/velocity, ...), not every per-group term (those are in TensorBoard)
        scores = {
            key: float(value)
            for key, value in trainer.callback_metrics.items()
            if key.startswith("val/") and key.count("/") == 1 and value.numel() == 1
        }
        text = "  ".join(f"{key} {value:.4f}" for key, value in sorted(scores.items()))
        message = f"validation at step {trainer.global_step}: {text or 'no metrics'}"
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._reporting(trainer):
            elapsed = format_duration(time.perf_counter() - self._start_time)
            print(f"training done: step {trainer.global_step}/{trainer.max_steps} in {elapsed}", file=self.stream)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


def quiet_lightning() -> None:
    """Silence Lightning's advertising tips and two warnings that say nothing about the run.

    The frozen parts (the ALSE expert inside MMDiT training, the EMA copy) are in eval mode on purpose, so
    "Found N module(s) in eval mode at the start of training" is expected; Lightning 2.6's own pytree helper
    triggers a torch deprecation warning at every fit. Safe to call more than once.
    """
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropTips) for f in rank_zero.filters):
        rank_zero.addFilter(_DropTips())
    warnings.filterwarnings(
        "ignore", message=r".*module\(s\) in eval mode at the start of training", category=PossibleUserWarning
    )
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
