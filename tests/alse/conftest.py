"""One tiny ALSE trained through the real CLI (subprocess) on synthetic shards, shared by the tests that need a
trained expert, plus held-out clips it never saw."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from moda_train.core.config_loader import CONFIGS_ROOT
from moda_train.core.stats import MotionStats
from moda_train.data.synthetic import synthetic_clip, write_synthetic_shards

REPO = CONFIGS_ROOT.parent
TINY_ALSE = CONFIGS_ROOT / "experiments" / "alse_tiny_cpu.yaml"
CLIP_FRAMES = 200
TRAIN_STEPS = 150


def run_train(shards: Path, out_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`python -m moda_train.train alse_tiny_cpu.yaml` on `shards` with one thread: CI cores are shared, and two
    threads on a loaded CPU are slower than one."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "moda_train.train",
        str(TINY_ALSE),
        f"data.train_shards={shards}/train-*.tar",
        f"data.val_shards={shards}/val-*.tar",
        f"data.stats_path={shards}/stats.json",
        "data.num_workers=0",
        f"train.out_dir={out_dir}",
        *overrides,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO, env=env)


@pytest.fixture(scope="session")
def alse_cli():
    """`run_train(shards, out_dir, *overrides)` for test modules (conftest helpers are not importable)."""
    return run_train


@pytest.fixture(scope="session")
def synthetic_shards(tmp_path_factory) -> Path:
    return write_synthetic_shards(
        tmp_path_factory.mktemp("alse_shards"), num_clips=32, frames=CLIP_FRAMES, clips_per_shard=8, val_clips=8
    )


@pytest.fixture(scope="session")
def trained_run(synthetic_shards, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The run folder of a tiny ALSE trained for TRAIN_STEPS steps, and the finished CLI process."""
    out_dir = tmp_path_factory.mktemp("alse_runs")
    result = run_train(
        synthetic_shards,
        out_dir,
        f"train.max_steps={TRAIN_STEPS}",
        f"train.val_every_n_steps={TRAIN_STEPS}",
        f"train.checkpoint_every_n_steps={TRAIN_STEPS}",
        "train.run_name=tiny",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out_dir / "tiny", result


@pytest.fixture(scope="session")
def checkpoint(trained_run) -> Path:
    return trained_run[0] / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def held_out(synthetic_shards) -> list[dict[str, np.ndarray]]:
    """Eight clips from a generator seed the shards never used: raw motion [T, 70], flattened audio [T, 320]."""
    rng = np.random.default_rng(12345)
    clips = [synthetic_clip(rng, CLIP_FRAMES) for _ in range(8)]
    return [
        {"motion": c["motion"], "audio": c["audio"].reshape(CLIP_FRAMES, -1).astype(np.float32)} for c in clips
    ]


@pytest.fixture(scope="session")
def stats(synthetic_shards) -> MotionStats:
    return MotionStats.load(synthetic_shards / "stats.json")
