"""One tiny VAE trained through the real CLI (subprocess) on synthetic shards, shared by the tests that need a
trained checkpoint."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from moda_train.data.synthetic import write_synthetic_shards

from .vae_helpers import TRAIN_STEPS, run_train


@pytest.fixture(scope="session")
def synthetic_shards(tmp_path_factory) -> Path:
    return write_synthetic_shards(
        tmp_path_factory.mktemp("vae_shards"), num_clips=16, frames=160, clips_per_shard=4, val_clips=4
    )


@pytest.fixture(scope="session")
def trained_run(synthetic_shards, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The run folder of a tiny VAE trained for TRAIN_STEPS steps (validated twice), and the finished process."""
    out_dir = tmp_path_factory.mktemp("vae_runs")
    result = run_train(
        synthetic_shards,
        out_dir,
        f"train.max_steps={TRAIN_STEPS}",
        f"train.val_every_n_steps={TRAIN_STEPS // 2}",
        f"train.checkpoint_every_n_steps={TRAIN_STEPS // 2}",
        "train.run_name=tiny",
    )
    assert result.returncode == 0, f"training failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return out_dir / "tiny", result


@pytest.fixture(scope="session")
def checkpoint(trained_run) -> Path:
    return trained_run[0] / "checkpoints" / "last.ckpt"
