"""One short training run on poisoned data, then resumes against changed configs (one process, single file
checkpoints): bad samples skipped and totalled, weights finite, an architecture change refused by name."""

from __future__ import annotations

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from moda_train.core.config_loader import CONFIGS_ROOT, ConfigError
from moda_train.data.synthetic import write_synthetic_shards
from moda_train.experiment import load_experiment
from moda_train.launch.run import run_experiment
from tests.data.test_integrity import _header_corrupt_copy, _poisoned_shard

TINY = CONFIGS_ROOT / "experiments" / "mmdit_tiny_cpu.yaml"
pytestmark = pytest.mark.slow


def _train(data, out_dir, *overrides):
    cfg, tree = load_experiment(
        TINY,
        [
            f"data.train_shards={data['train']}", "data.val_shards=", f"data.stats_path={data['stats']}",
            f"train.out_dir={out_dir}", "train.run_name=run", "data.num_workers=0", "train.log_every_n_steps=1",
            "model.depth_single_stream=1", "train.checkpoint_every_n_steps=3", "data.shuffle_buffer=2",
            *overrides,
        ],
    )  # fmt: skip
    return run_experiment(cfg, tree, TINY)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = write_synthetic_shards(tmp_path_factory.mktemp("shards"), num_clips=4, frames=100, clips_per_shard=4)
    poisoned = _poisoned_shard(root / "poisoned.tar", good=1)
    corrupt = _header_corrupt_copy(root / "train-000000.tar", root / "corrupt.tar", "train_00001")
    # Mostly bad shards, so that the few steps below meet them.
    return {"train": f"{poisoned}@3::{corrupt}@3::{root}/train-000000.tar@1", "stats": root / "stats.json"}


@pytest.fixture(scope="module")
def poisoned_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    run_dir = _train(data, out, "train.max_steps=3")
    return run_dir


def test_poisoned_samples_are_skipped_counted_and_weights_stay_finite(poisoned_run):
    state = torch.load(poisoned_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] == 3
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values() if t.is_floating_point())
    events = EventAccumulator(str(poisoned_run / "tensorboard")).Reload()
    totals = [e.value for e in events.Scalars("data/skipped_samples")]
    assert totals == sorted(totals) and totals[-1] >= 2  # a running total, never reset
    guard = next(v for k, v in state["callbacks"].items() if k.startswith("TrainingGuard"))
    assert guard["skipped_samples"] >= totals[-1]


def test_architecture_change_on_resume_is_refused_and_config_kept(data, poisoned_run):
    before = (poisoned_run / "config.yaml").read_bytes()
    with pytest.raises(ConfigError, match=r"architecture differs .*: model.rope_theta: 256.0 -> 1000.0\. Keep"):
        _train(data, poisoned_run.parent, "train.max_steps=6", "model.rope_theta=1000")
    assert (poisoned_run / "config.yaml").read_bytes() == before

    # A safe change resumes, and is reported and recorded.
    _train(data, poisoned_run.parent, "train.max_steps=4", "optim.lr=5e-4")
    assert "optim.lr: 0.001 -> 0.0005" in (poisoned_run / "config_changes.log").read_text()
    assert "lr: 0.0005" in (poisoned_run / "config.yaml").read_text()
    state = torch.load(poisoned_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] == 4


def test_bad_shard_list_fails_before_any_run_folder(data, tmp_path):
    with pytest.raises(ConfigError, match=r"data.train_shards: 1 of 1 shards unusable: .*train-00000.tar \(no"):
        _train({**data, "train": f"{data['stats'].parent}/train-00000.tar"}, tmp_path, "train.max_steps=1")
    assert not (tmp_path / "run").exists()
