"""One tiny VAE trained through the real CLI (subprocess) on synthetic shards, shared by the tests that need a
trained checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from vae_helpers import TRAIN_STEPS

from moda_train.config import CONFIGS_ROOT
from moda_train.data.synthetic import write_synthetic_shards

REPO = CONFIGS_ROOT.parent
TINY_VAE = CONFIGS_ROOT / "experiments" / "vae_tiny_cpu.yaml"


def run_train(shards: Path, out_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`python -m moda_train.train vae_tiny_cpu.yaml` on `shards` with one thread: CI cores are shared, and two
    threads on a loaded CPU are slower than one."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "moda_train.train",
        str(TINY_VAE),
        f"data.train_shards={shards}/train-*.tar",
        f"data.val_shards={shards}/val-*.tar",
        f"data.stats_path={shards}/stats.json",
        "data.num_workers=0",
        f"train.out_dir={out_dir}",
        *overrides,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO, env=env)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These models are tiny: on shared CI cores one thread is faster than two that wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
