"""train.init_from: fine-tuning starts from a checkpoint's weights and EMA with a fresh optimizer and schedule."""

import json

import pytest
import torch
from omegaconf import OmegaConf

from moda_train.core.config_loader import CONFIGS_ROOT, ConfigError
from moda_train.core.stats import MotionStats
from moda_train.data.synthetic import write_synthetic_shards
from moda_train.experiment import load_experiment
from moda_train.launch.run import run_experiment
from moda_train.lit.init_from import load_initial_weights
from moda_train.lit.mmdit_module import MoDALightningModule

TINY = CONFIGS_ROOT / "experiments" / "mmdit_tiny_cpu.yaml"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_synthetic_shards(tmp_path_factory.mktemp("shards"), num_clips=4, frames=100, val_clips=1)


def _train(shards, out_dir, name, *overrides):
    cfg, tree = load_experiment(
        TINY,
        [
            f"data.train_shards={shards}/train-*.tar", "data.val_shards=", f"data.stats_path={shards}/stats.json",
            f"train.out_dir={out_dir}", f"train.run_name={name}", "data.num_workers=0",
            "train.global_batch_size=4", "train.micro_batch_size=4", "model.depth_single_stream=1",
            "model.depth_two_stream=1", "optim.warmup_steps=2", *overrides,
        ],
    )  # fmt: skip
    return run_experiment(cfg, tree, TINY) / "checkpoints" / "last.ckpt"


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def _distance(state, other, prefix):
    keys = [k for k in state if k.startswith(prefix)]
    return max(float((state[k] - other[k]).abs().max()) for k in keys)


@pytest.mark.slow
def test_fine_tune_starts_from_weights_and_ema_with_a_fresh_schedule(shards, tmp_path):
    # a first run whose EMA lags its weights (decay 0.5), so the two are different tensors in its checkpoint
    first = _load(_train(shards, tmp_path, "first", "train.max_steps=4", "optim.ema_decay=0.5", "optim.lr=1e-2"))
    weights_as_ema = {"ema." + k[6:]: v for k, v in first["state_dict"].items() if k.startswith("model.")}
    assert _distance(first["state_dict"], weights_as_ema, "ema.") > 1e-3
    second = _load(
        _train(
            shards, tmp_path, "second", "train.max_steps=2", "optim.ema_decay=0.999", "optim.lr=1e-6",
            f"train.init_from={tmp_path / 'first' / 'checkpoints' / 'last.ckpt'}",
        )
    )  # fmt: skip
    before, after = first["state_dict"], second["state_dict"]
    # EMA continued from the file's EMA (not from the weights, not from a fresh init), weights from its weights
    assert _distance(after, before, "ema.") < 1e-4
    assert _distance(after, before, "model.") < 1e-4
    fresh = _load(_train(shards, tmp_path, "fresh", "train.max_steps=2", "optim.ema_decay=0.999", "optim.lr=1e-6"))
    assert _distance(fresh["state_dict"], before, "model.") > 1e-2
    # fresh optimizer and schedule: the step counts and the LR schedule restart at 0
    assert second["global_step"] == 2
    assert second["lr_schedulers"][0]["last_epoch"] == 2
    assert second["hyper_parameters"]["config"]["train"]["init_from"].endswith("last.ckpt")


def test_statistics_and_architecture_must_match(shards, tmp_path):
    def module(stats_std_scale=1.0, *overrides):
        _, tree = load_experiment(
            TINY, [f"data.stats_path={shards}/stats.json", "model.depth_single_stream=1", *overrides]
        )
        stats = MotionStats.load(shards / "stats.json")
        stats.std = stats.std * stats_std_scale
        return MoDALightningModule(OmegaConf.to_container(tree, resolve=True), stats)

    source = module()
    path = tmp_path / "source.ckpt"
    torch.save({"state_dict": source.state_dict(), "hyper_parameters": dict(source.hparams)}, path)
    target = module()
    load_initial_weights(target, str(path), "mmdit")
    assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(), source.state_dict().values()))
    with pytest.raises(ValueError, match="motion statistics differ from data.stats_path"):
        load_initial_weights(module(2.0), str(path), "mmdit")
    with pytest.raises(
        ValueError, match=r"not the architecture of this experiment \(missing ema\.single_stream\.1"
    ):
        load_initial_weights(module(1.0, "model.depth_single_stream=2"), str(path), "mmdit")


def test_motion_convention_must_match(shards, tmp_path):
    """A model trained on LivePortrait-crop native-expression motion cannot be fine-tuned on canonical motion."""

    def module(convention):
        _, tree = load_experiment(
            TINY,
            [
                f"data.stats_path={shards}/stats.json",
                "model.depth_single_stream=1",
                f"data.motion_convention={convention}",
            ],
        )
        return MoDALightningModule(
            OmegaConf.to_container(tree, resolve=True), MotionStats.load(shards / "stats.json")
        )

    source = module("liveportrait-crop,native-expression")
    path = tmp_path / "source.ckpt"
    torch.save({"state_dict": source.state_dict(), "hyper_parameters": dict(source.hparams)}, path)
    load_initial_weights(module("liveportrait-crop,native-expression"), str(path), "mmdit")
    load_initial_weights(module(""), str(path), "mmdit")  # unrecorded shards (made before it was recorded)
    with pytest.raises(
        ValueError, match="trained on motion of the 'liveportrait-crop,native-expression' convention"
    ):
        load_initial_weights(module("liveportrait-crop,canonical-expression"), str(path), "mmdit")


def test_a_run_refuses_shards_of_another_motion_convention(shards, tmp_path):
    stats = MotionStats.load(shards / "stats.json")
    stats.motion_backend, stats.motion_convention = "liveportrait", "box-crop,canonical-expression"
    (tmp_path / "stats.json").write_text(json.dumps(stats.to_dict()))
    cfg, tree = load_experiment(
        TINY,
        [f"data.train_shards={shards}/train-*.tar", f"data.stats_path={tmp_path / 'stats.json'}",
         f"train.out_dir={tmp_path}", "data.motion_convention=liveportrait-crop,native-expression"],
    )  # fmt: skip
    with pytest.raises(ConfigError, match="records shards of the 'box-crop,canonical-expression' convention"):
        run_experiment(cfg, tree, TINY)
    assert not any(tmp_path.glob("*/config.yaml"))  # refused before a run folder was made


def test_liveportrait_shards_without_a_recorded_convention_are_named_at_run_start(shards, tmp_path):
    stats = MotionStats.load(shards / "stats.json")
    stats.motion_backend = "liveportrait"  # as written before conventions were recorded
    (tmp_path / "stats.json").write_text(json.dumps(stats.to_dict()))
    cfg, tree = load_experiment(
        TINY,
        [f"data.train_shards={tmp_path}/none-*.tar", f"data.stats_path={tmp_path / 'stats.json'}",
         f"train.out_dir={tmp_path}"],
    )  # fmt: skip
    with pytest.warns(UserWarning, match="records no motion convention .* Set data.motion_convention"):
        with pytest.raises(ConfigError, match="data.train_shards"):  # stops at the next check: nothing trains
            run_experiment(cfg, tree, TINY)
