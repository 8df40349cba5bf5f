"""A tiny emotion classifier trained through the framework on synthetic shards whose expression depends on the
emotion label, shared by the classifier, metric and evaluation-during-training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from moda_train.core.config_loader import CONFIGS_ROOT
from moda_train.data.synthetic import write_synthetic_shards
from moda_train.experiment import load_experiment
from moda_train.launch.run import run_experiment

TINY_EMOTION = CONFIGS_ROOT / "experiments" / "emotion_tiny_cpu.yaml"
CLIP_FRAMES = 100
TRAIN_STEPS = 60


def shard_overrides(shards: Path) -> list[str]:
    return [
        f"data.train_shards={shards}/train-*.tar",
        f"data.val_shards={shards}/val-*.tar",
        f"data.stats_path={shards}/stats.json",
        "data.num_workers=0",
    ]


@pytest.fixture(scope="session")
def emotion_shards(tmp_path_factory) -> Path:
    return write_synthetic_shards(
        tmp_path_factory.mktemp("emotion_shards"), num_clips=48, frames=CLIP_FRAMES, clips_per_shard=16,
        val_clips=16, emotion_signal=0.5,
    )  # fmt: skip


@pytest.fixture(scope="session")
def emotion_checkpoint(emotion_shards, tmp_path_factory) -> Path:
    """`last.ckpt` of the tiny classifier trained for TRAIN_STEPS steps by `run_experiment`."""
    out_dir = tmp_path_factory.mktemp("emotion_runs")
    cfg, tree = load_experiment(
        TINY_EMOTION,
        [
            *shard_overrides(emotion_shards), f"train.out_dir={out_dir}", "train.run_name=tiny",
            f"train.max_steps={TRAIN_STEPS}", f"train.val_every_n_steps={TRAIN_STEPS}",
            f"train.checkpoint_every_n_steps={TRAIN_STEPS}",
        ],
    )  # fmt: skip
    run_dir = run_experiment(cfg, tree, TINY_EMOTION)
    return run_dir / "checkpoints" / "last.ckpt"
