"""build_strategy: the right Lightning strategy, DeepSpeed JSON checks, the CPU path's adjustments."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy

from moda_train.experiment import TrainConfig
from moda_train.launch.checkpointing import AtomicDeepSpeedStrategy
from moda_train.launch.strategies import (
    CPU_BUCKET_ELEMENTS,
    DEFAULT_TIMEOUT,
    REPO_ROOT,
    CPUDeepSpeedStrategy,
    build_strategy,
    load_deepspeed_config,
)

DEEPSPEED_CONFIGS = sorted((REPO_ROOT / "configs" / "deepspeed").glob("*.json"))


def test_auto_and_ddp():
    assert build_strategy(TrainConfig(strategy="auto")) == "auto"
    ddp = build_strategy(TrainConfig(strategy="ddp"), timeout=timedelta(seconds=42))
    assert isinstance(ddp, DDPStrategy) and not isinstance(ddp, DeepSpeedStrategy)
    assert ddp._timeout == timedelta(seconds=42)


@pytest.mark.parametrize("path", DEEPSPEED_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_deepspeed_config_builds_on_cpu(path: Path):
    train = TrainConfig(strategy="deepspeed", deepspeed_config=str(path), accelerator="cpu", micro_batch_size=4)
    strategy = build_strategy(train)
    assert type(strategy) is CPUDeepSpeedStrategy
    assert strategy._timeout == DEFAULT_TIMEOUT
    zero = strategy.config["zero_optimization"]
    assert zero["stage"] == json.loads(path.read_text())["zero_optimization"]["stage"]
    assert strategy.config["train_micro_batch_size_per_gpu"] == 4
    assert zero["reduce_bucket_size"] <= CPU_BUCKET_ELEMENTS
    assert zero.get("offload_optimizer", {}).get("pin_memory", False) is False


def test_gpu_deepspeed_keeps_the_json_as_written():
    train = TrainConfig(
        strategy="deepspeed", deepspeed_config="configs/deepspeed/zero2_offload.json", accelerator="gpu"
    )
    strategy = build_strategy(train)
    assert type(strategy) is AtomicDeepSpeedStrategy  # Lightning's, with atomic saves (launch/checkpointing.py)
    zero = strategy.config["zero_optimization"]
    assert zero["offload_optimizer"] == {"device": "cpu", "pin_memory": True}
    assert zero["reduce_bucket_size"] == 5e8


def test_config_path_falls_back_to_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_deepspeed_config("configs/deepspeed/zero3.json")["zero_optimization"]["stage"] == 3
    local = tmp_path / "configs" / "deepspeed" / "zero3.json"
    local.parent.mkdir(parents=True)
    local.write_text(json.dumps({"zero_optimization": {"stage": 1}}))
    # the current directory wins over the repository
    assert load_deepspeed_config("configs/deepspeed/zero3.json")["zero_optimization"]["stage"] == 1


def test_missing_config_names_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"train.deepspeed_config='nope.json'"):
        build_strategy(TrainConfig(strategy="deepspeed", deepspeed_config="nope.json"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"zero_optimization": {"stage": 4}}', "stage must be 0, 1, 2 or 3"),
        ('{"gradient_accumulation_steps": 4}', "gradient_accumulation_steps is set from the experiment"),
        ('{"bf16": {"enabled": true}}', "bf16 is set from the experiment"),
        ('{"gradient_clipping": 1.0}', "gradient_clipping is set from the experiment"),
    ],
)
def test_bad_deepspeed_config_is_rejected(tmp_path, content, message):
    path = tmp_path / "ds.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        load_deepspeed_config(path)
    assert str(path) in str(err.value)


def test_grad_clip_becomes_deepspeed_gradient_clipping():
    strategy = build_strategy(TrainConfig(strategy="deepspeed", accelerator="cpu"), grad_clip=0.5)
    assert strategy.config["gradient_clipping"] == 0.5


def test_cpu_root_device_is_indexed_by_local_rank(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    strategy = CPUDeepSpeedStrategy(
        config={"zero_optimization": {"stage": 2}},
        cluster_environment=LightningEnvironment(),
        parallel_devices=[torch.device("cpu")] * 2,
    )
    assert strategy.root_device == torch.device("cpu", 1)
