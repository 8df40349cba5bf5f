"""PreemptionCallback in one process: the signal lands mid-step, the save happens at the step boundary, and
resuming from it ends on exactly the weights of an uninterrupted run."""

from __future__ import annotations

import signal

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from moda_train.launch.preemption import TERMINATED_EXIT_CODE, PreemptionCallback

from .toy import ToyModule

MAX_STEPS = 10


def _fit(root, module: ToyModule, ckpt_path: str | None = None) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=MAX_STEPS,
        callbacks=[ModelCheckpoint(dirpath=root / "checkpoints", save_last=True), PreemptionCallback()],
        default_root_dir=root,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    trainer.fit(module, ckpt_path=ckpt_path)
    return trainer


@pytest.fixture
def no_slurm(monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)


def test_signal_saves_at_step_boundary_and_resume_is_exact(tmp_path, no_slurm):
    reference = ToyModule()
    _fit(tmp_path / "reference", reference)

    handler_before = signal.getsignal(signal.SIGUSR1)
    interrupted = ToyModule(signal_at_step=4)
    trainer = _fit(tmp_path / "run", interrupted)
    # The signal arrived during step 4's forward; step 4 still finished, then the run saved and stopped.
    assert trainer.global_step == 5
    assert signal.getsignal(signal.SIGUSR1) == handler_before
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 5

    resumed = ToyModule()
    trainer = _fit(tmp_path / "run", resumed, ckpt_path=str(last))
    assert trainer.global_step == MAX_STEPS
    for (name, want), got in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(want, got), f"{name} differs from the uninterrupted run"
    # and the interruption did change something: the partial run's weights are not the final ones
    assert not torch.equal(interrupted.net[0].weight, reference.net[0].weight)


def test_sigterm_saves_at_step_boundary_and_exits_143(tmp_path, no_slurm, capsys):
    handler_before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop:
        _fit(tmp_path / "run", ToyModule(signal_at_step=4, signum=signal.SIGTERM))
    assert stop.value.code == TERMINATED_EXIT_CODE  # not 0: the run did not finish
    assert signal.getsignal(signal.SIGTERM) == handler_before  # restored, on this exception path too
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 5  # step 4 finished, then the save
    assert "preemption: stopping on SIGTERM (exit code 143)" in capsys.readouterr().out


def test_no_checkpoint_callback_is_a_clear_error(tmp_path, no_slurm):
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=3,
        callbacks=[PreemptionCallback()],
        enable_checkpointing=False,
        logger=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    with pytest.raises(RuntimeError, match="needs a ModelCheckpoint"):
        trainer.fit(ToyModule(signal_at_step=1))
