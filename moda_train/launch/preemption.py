"""Preemption: on Slurm's warning signal, save at the next step boundary, requeue the job, stop.

`#SBATCH --signal=SIGUSR1@90` makes Slurm send SIGUSR1 to every task 90 s before the time limit. Lightning's
own handler saves from inside the signal handler, i.e. wherever each rank happens to be; with DeepSpeed the save
is a collective, so ranks caught in different places deadlock or save a half-finished step. Here the handler only
sets a flag. After every optimizer step the ranks agree (one tiny all-reduce) whether any of them got the signal;
if so, all of them write the `last` checkpoint together, rank 0 runs `scontrol requeue`, and training stops.
The requeued job keeps its job id, hence its run folder, and `train.resume=auto` continues from `last`.

A scheduler preemption (not the time limit) sends SIGTERM with only `KillWait` seconds of grace: that case is
covered by the periodic checkpoints, not by this callback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from typing_extensions import override


def _say(trainer: pl.Trainer, message: str) -> None:
    """Print on rank 0, unbuffered: the job log must show it (Python logging at INFO is not shown by default)."""
    if trainer.is_global_zero:
        print(message, flush=True)


def slurm_job_id() -> str | None:
    """The id `scontrol requeue` needs: `<array job>_<task>` for array jobs, else `SLURM_JOB_ID`."""
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


class PreemptionCallback(Callback):
    """Save `last`, requeue (under Slurm) and stop when `signum` arrives; see the module docstring.

    Args:
        signum: the warning signal (Slurm's `--signal=SIGUSR1@<seconds>`).
        requeue: run `scontrol requeue` after saving; `None` means "if this is a Slurm job".
        checkpoint_name: file (DeepSpeed: folder) written in the ModelCheckpoint's directory; keep it the name
            the resume logic looks for.
    """

    def __init__(
        self, signum: int = signal.SIGUSR1, requeue: bool | None = None, checkpoint_name: str = "last.ckpt"
    ) -> None:
        self.signum = signum
        self.requeue = requeue
        self.checkpoint_name = checkpoint_name
        self._requested = False
        self._previous_handler: signal.Handlers | int | None = None
        self._last_checked_step = -1

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only a flag: anything heavier here (even a print, which is not reentrant) runs at an arbitrary point.
        self._requested = True

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or threading.current_thread() is not threading.main_thread():
            return
        self._requested = False
        self._previous_handler = signal.signal(self.signum, self._on_signal)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._previous_handler is not None:
            signal.signal(self.signum, self._previous_handler)
            self._previous_handler = None

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: object, batch: object, batch_idx: int
    ) -> None:
        # Act only where an optimizer step just finished (not between accumulated micro-batches); every rank
        # reaches this point the same number of times, so the all-reduce below always has all participants.
        if trainer.global_step == self._last_checked_step:
            return
        self._last_checked_step = trainer.global_step
        if not trainer.strategy.reduce_boolean_decision(self._requested, all=False):
            return
        path = self.checkpoint_path(trainer)
        name = signal.Signals(self.signum).name
        _say(trainer, f"preemption: {name} received; saving {path} at step {trainer.global_step}")
        trainer.save_checkpoint(path)
        # Every rank's shard must be on disk before the job can be killed by the requeue.
        trainer.strategy.barrier("preemption_checkpoint_saved")
        _say(trainer, f"preemption: saved {path}")
        if trainer.is_global_zero and (slurm_job_id() is not None if self.requeue is None else self.requeue):
            self._requeue()
        trainer.should_stop = True

    def checkpoint_path(self, trainer: pl.Trainer) -> Path:
        """Where the preemption checkpoint goes: beside the periodic ones, under the `last` name."""
        callback = trainer.checkpoint_callback
        dirpath = getattr(callback, "dirpath", None)
        if dirpath is None:
            raise RuntimeError("PreemptionCallback needs a ModelCheckpoint callback with a dirpath to save beside")
        return Path(dirpath) / self.checkpoint_name

    @staticmethod
    def _requeue() -> None:
        job_id = slurm_job_id()
        if job_id is None:
            raise RuntimeError("requeue requested but this process is not part of a Slurm job (no SLURM_JOB_ID)")
        result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
        if result.returncode == 0:
            print(
                f"preemption: requeued Slurm job {job_id}; it resumes from `last` when it starts again", flush=True
            )
        else:
            message = f"scontrol requeue {job_id} failed ({result.returncode}): {result.stderr.strip()}"
            print(f"preemption: {message}", file=sys.stderr, flush=True)
