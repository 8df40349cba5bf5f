"""A checkpoint save on a full disk (a small tmpfs): a clear error naming the path; the previous one intact. In
one process with single-file checkpoints, and through the training command with two DeepSpeed ZeRO-2 ranks."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import lightning.pytorch as pl
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

from moda_train.consolidate import consolidate
from moda_train.launch.checkpointing import AtomicCheckpointIO, checkpoint_problem, choose_resume

from .conftest import CHECKPOINT_EVERY, MAX_STEPS, run_training, start_from, training_overrides
from .toy import ToyModule


@contextmanager
def tmpfs(mount: Path, size_bytes: int):
    """A tmpfs of `size_bytes` at `mount`; skips the test where it cannot be mounted (not root, no permission)."""
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(mount)]).returncode
    ):
        pytest.skip("needs root and permission to mount a tmpfs")
    try:
        yield mount
    finally:
        # lazy: the failed save's exception (kept by pytest) may still hold a file of it open
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    with tmpfs(tmp_path / "disk", 1 << 20) as mount:
        yield mount


class FillDisk(pl.Callback):
    """Before the second checkpoint, fill the disk but for a few KB (less than one checkpoint). Lightning runs
    checkpoint callbacks after all others, so this comes first at the end of step 2."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 2:
            folder = trainer.checkpoint_callback.dirpath
            free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
            with open(os.path.join(folder, "filler"), "wb") as filler:
                filler.write(b"\0" * (free - 8192))


def test_full_disk_is_named_and_the_previous_checkpoint_survives(small_disk):
    checkpoints = ModelCheckpoint(
        dirpath=small_disk, filename="step-{step}", every_n_train_steps=1, save_last=True
    )
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=3, callbacks=[checkpoints, FillDisk()],
        plugins=[AtomicCheckpointIO()], logger=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    with pytest.raises(
        OSError, match=rf"saving checkpoint {small_disk}/step-step=2.ckpt failed: No space left on"
    ):
        trainer.fit(ToyModule())
    check = checkpoint_problem(small_disk / "last.ckpt")
    assert check.problem is None and check.step == 1
    assert not list(small_disk.glob("*.tmp"))  # the partial write was removed


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.mark.slow
def test_full_disk_under_deepspeed_is_named_and_the_previous_checkpoint_resumes(reference_run, shards, tmp_path):
    # Room for the copied `last` (the reference's step 12) and half another checkpoint: the saves at step 16 run
    # out of space part-way, on one rank or on both (whichever writes first); either way the ranks agree.
    step = MAX_STEPS - CHECKPOINT_EVERY
    one_checkpoint = _size(reference_run.run_dir / "checkpoints" / f"step-{step:07d}.ckpt")
    with tmpfs(tmp_path / "disk", one_checkpoint * 3 // 2) as disk:
        last = start_from(reference_run, step, disk, "full")
        log = run_training(training_overrides(shards, disk, "full"), expect_success=False)
        (tmp_path / "full.log").write_text(log)
        checkpoints = last.parent
        assert f"saving checkpoint {checkpoints}/step-{MAX_STEPS:07d}.ckpt failed: No space left on device" in log
        assert not list(checkpoints.glob("*.tmp"))  # the partial write was removed
        check = choose_resume(checkpoints)  # what the next launch would resume from
        assert check is not None and check.path == last and check.step == step
        state = consolidate(last, tmp_path / "previous.pt")  # every rank's shard still loads
        assert state["global_step"] == step
