"""Preemption: on Slurm's warning signal or on SIGTERM, save `last` at the next step boundary and stop.

`#SBATCH --signal=SIGUSR1@90` makes Slurm send SIGUSR1 to every task 90 s before the time limit. Lightning's
own handler saves from inside the signal handler, i.e. wherever each rank happens to be; with DeepSpeed the save
is a collective, so ranks caught in different places deadlock or save a half-finished step. Here the handler only
sets a flag. After every optimizer step the ranks agree (one tiny all-reduce) whether any of them got a signal;
if so, all of them write the `last` checkpoint together and training stops. On SIGUSR1 rank 0 then runs
`scontrol requeue`; the requeued job keeps its job id, hence its run folder, and `train.resume=auto` continues
from `last`.

SIGTERM (`scancel`, a scheduler preemption, `kill`) comes with only `KillWait` seconds (30 by default) before
SIGKILL. It is handled the same way, without the requeue, and the process then exits with 143 (128 + SIGTERM), so
the job does not look finished. Lightning's own SIGTERM handler is replaced once training starts: it runs a
broadcast inside the signal handler, which pairs with whatever collective the other rank is in (a rank signalled
twice, by the launcher and by the sender, deadlocked inside a DeepSpeed save until the process-group timeout), and
its loops then end the process with exit code 0. If SIGKILL comes before the save is done, the atomic save
(`launch/checkpointing.py`) leaves the previous `last` and the periodic checkpoints as they were.
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
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException
from typing_extensions import override

TERMINATED_EXIT_CODE = 128 + signal.SIGTERM
"""Exit status after a SIGTERM stop: what a shell reports for a process that SIGTERM ended."""


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
    """Save `last` and stop when `signum` (then requeue) or SIGTERM (then exit 143) arrives; see the module
    docstring.

    Args:
        signum: the warning signal (Slurm's `--signal=SIGUSR1@<seconds>`).
        requeue: run `scontrol requeue` after saving on `signum`; `None` means "if this is a Slurm job".
        checkpoint_name: file (DeepSpeed: folder) written in the ModelCheckpoint's directory; keep it the name
            the resume logic looks for.
    """

    def __init__(
        self, signum: int = signal.SIGUSR1, requeue: bool | None = None, checkpoint_name: str = "last.ckpt"
    ) -> None:
        self.signum = signum
        self.requeue = requeue
        self.checkpoint_name = checkpoint_name
        self._received: set[int] = set()
        self._previous_handler: signal.Handlers | int | None = None
        self._last_checked_step = -1

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only a flag: anything heavier here (even a print, which is not reentrant) runs at an arbitrary point.
        self._received.add(signum)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or threading.current_thread() is not threading.main_thread():
            return
        self._received = set()
        self._previous_handler = signal.signal(self.signum, self._on_signal)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning installs its SIGTERM handler after `setup` (Trainer._run), recording the one it replaced, and
        # restores that one when fit ends, also after an exception; ours goes over Lightning's here.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)

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
        flags = torch.tensor(
            [self.signum in self._received, signal.SIGTERM in self._received],
            dtype=torch.int32,
            device=trainer.strategy.root_device,
        )
        warned, terminated = (bool(flag) for flag in trainer.strategy.reduce(flags, reduce_op="max").tolist())
        if not (warned or terminated):
            return
        path = self.checkpoint_path(trainer)
        name = signal.Signals(signal.SIGTERM if terminated else self.signum).name
        _say(trainer, f"preemption: {name} received; saving {path} at step {trainer.global_step}")
        trainer.save_checkpoint(path)
        # Every rank's shard must be on disk before the job can be killed by the requeue.
        trainer.strategy.barrier("preemption_checkpoint_saved")
        _say(trainer, f"preemption: saved {path}")
        if terminated:
            code = TERMINATED_EXIT_CODE
            _say(trainer, f"preemption: stopping on SIGTERM (exit code {code}); resubmit to continue from {path}")
            raise SIGTERMException(code)
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
