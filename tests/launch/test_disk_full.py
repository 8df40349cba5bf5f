"""A checkpoint save on a full disk (a small tmpfs): a clear error naming the path; the previous one intact."""

from __future__ import annotations

import os
import subprocess

import lightning.pytorch as pl
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

from moda_train.launch.checkpointing import AtomicCheckpointIO, checkpoint_problem

from .toy import ToyModule


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)]).returncode
    ):
        pytest.skip("needs root and permission to mount a tmpfs")
    yield mount
    # lazy: the failed save's exception (kept by pytest) may still hold a file of it open
    subprocess.run(["umount", "--lazy", str(mount)], check=True)


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
