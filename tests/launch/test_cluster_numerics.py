"""The cluster recipe's numerics through the real training command on two CPU ranks, in bf16-mixed: the fp32 EMA
under ZeRO-2 and under a ZeRO-3 run whose parameters really are partitioned, gradient clipping under DeepSpeed and
DDP, the logged grad norm, resuming, and what a resume on another number of ranks does.

Each training run is one subprocess shared by several tests (DeepSpeed on two CPU cores is slow). Every run
checkpoints after every step, so the fp32 weight trajectory can be read back and the EMA compared with its closed
form.
"""

from __future__ import annotations

import glob
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from moda_train.consolidate import consolidate

from .conftest import (
    REPO_ROOT,
    assert_same_weights,
    checkpoint_step,
    run_training,
    start_from,
    training_overrides,
)

pytestmark = pytest.mark.slow

DECAY = 0.999  # (1 - decay) * step is far below bf16's resolution: an EMA stored in bf16 would not move
CLIP = 0.01  # far below the tiny model's gradient norm (about 1), so every step is clipped
BETA1 = 0.9  # AdamW's default, as in OptimConfig


def numerics_overrides(shards: Path, out: Path, name: str, steps: int, **extra: str) -> list[str]:
    overrides = training_overrides(shards, out, name) + [
        "train.precision=bf16-mixed",
        f"train.max_steps={steps}",
        "train.checkpoint_every_n_steps=1",
        "train.log_every_n_steps=1",
        "optim.lr=1e-2",
        "optim.warmup_steps=1",
        f"optim.ema_decay={DECAY}",
        f"optim.grad_clip={CLIP}",
    ]
    return overrides + [f"{key}={value}" for key, value in extra.items()]


@dataclass
class NumericsRun:
    run_dir: Path
    log: str
    weights: dict[int, dict[str, torch.Tensor]]  # step -> consolidated fp32 state dict

    def scalars(self, tag: str) -> dict[int, float]:
        events = EventAccumulator(str(self.run_dir / "tensorboard"))
        events.Reload()
        return {event.step: event.value for event in events.Scalars(tag)}


def _trained(shards: Path, out: Path, name: str, steps: int, **extra: str) -> NumericsRun:
    log = run_training(numerics_overrides(shards, out, name, steps, **extra))
    checkpoints = out / name / "checkpoints"
    weights = {
        step: consolidate(checkpoints / f"step-{step:07d}.ckpt", out / f"{name}-{step}.pt")["state_dict"]
        for step in range(1, steps + 1)
    }
    return NumericsRun(out / name, log, weights)


@pytest.fixture(scope="module")
def zero2(shards, tmp_path_factory) -> NumericsRun:
    return _trained(shards, tmp_path_factory.mktemp("zero2"), "zero2", steps=6)


@pytest.fixture(scope="module")
def zero3(shards, tmp_path_factory) -> NumericsRun:
    out = tmp_path_factory.mktemp("zero3")
    config = json.loads((REPO_ROOT / "configs/deepspeed/zero3.json").read_text())
    # Threshold 0: every tensor is partitioned, however small (by default the tiny model's would all persist).
    config["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    (out / "zero3.json").write_text(json.dumps(config))
    return _trained(shards, out, "zero3", steps=4, **{"train.deepspeed_config": out / "zero3.json"})


def _split(state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    model = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    ema = {k.removeprefix("ema."): v for k, v in state.items() if k.startswith("ema.")}
    return model, ema


def expected_ema(start: dict[str, torch.Tensor], later: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """EMA after k more steps = decay**k * EMA_start + sum_j (1 - decay) decay**(k-j) w_j, over the fp32 weights
    w_j of the k later checkpoints (float64)."""
    _, ema_start = _split(start)
    expected = {}
    for name, value in ema_start.items():
        expected[name] = value.double()
        for state in later:
            expected[name] = DECAY * expected[name] + (1 - DECAY) * state[f"model.{name}"].double()
    return expected


def assert_ema_is_the_closed_form(start: dict[str, torch.Tensor], later: list[dict[str, torch.Tensor]]) -> None:
    """The tolerance is what bf16 allows (each update reads the bf16 weights: 2**-9 relative), and the EMA must
    have moved by far more than that."""
    decayed = 1 - DECAY ** len(later)
    _, ema_start = _split(start)
    _, ema_end = _split(later[-1])
    error = moved = bound = 0.0
    for name, expected in expected_ema(start, later).items():
        scale = torch.stack([state[f"model.{name}"].abs() for state in later]).amax(0).double()  # per element
        error += (ema_end[name].double() - expected).pow(2).sum().item()
        moved += (ema_end[name].double() - ema_start[name].double()).pow(2).sum().item()
        bound += (decayed * 2**-8 * scale).pow(2).sum().item()
    assert math.sqrt(error) <= math.sqrt(bound), (math.sqrt(error), math.sqrt(bound))
    assert math.sqrt(moved) > 5 * math.sqrt(bound), (math.sqrt(moved), math.sqrt(bound))


def test_zero2_bf16_loss_falls_and_grad_norm_is_logged_at_every_step(zero2):
    loss, grad_norm = zero2.scalars("train/loss"), zero2.scalars("train/grad_norm")
    assert sorted(grad_norm) == sorted(loss) == list(range(6))  # log_every_n_steps=1
    assert all(value > 0 for value in grad_norm.values())
    assert (loss[4] + loss[5]) / 2 < (loss[0] + loss[1]) / 2


def test_zero2_bf16_ema_is_fp32_and_follows_the_closed_form(zero2):
    # The module itself was cast to bf16 (the case this is about) ...
    module_states = zero2.run_dir / "checkpoints/step-0000006.ckpt/checkpoint/mp_rank_00_model_states.pt"
    saved = torch.load(module_states, map_location="cpu", weights_only=False)
    assert {t.dtype for k, t in saved["module"].items() if k.startswith("ema.")} == {torch.bfloat16}
    assert saved["ema_fp32"]["layout"] == "full"
    # ... while the consolidated EMA holds fp32 values that bf16 cannot represent.
    _, ema = _split(zero2.weights[6])
    values = torch.cat([t.reshape(-1) for t in ema.values()])
    assert values.dtype == torch.float32
    assert (values != values.bfloat16().float()).float().mean() > 0.9
    assert_ema_is_the_closed_form(zero2.weights[1], [zero2.weights[s] for s in range(2, 7)])


def test_deepspeed_clipping_bounds_the_update(zero2):
    # After AdamW's first step exp_avg = (1 - beta1) * g, with g the gradient the optimizer received: its global
    # norm over both ranks' partitions must be the clip value, while the norm before clipping was far above it.
    shards = glob.glob(str(zero2.run_dir / "checkpoints/step-0000001.ckpt/checkpoint/*optim_states.pt"))
    assert len(shards) == 2
    squares = 0.0
    for shard in shards:
        state = torch.load(shard, map_location="cpu", weights_only=False)["optimizer_state_dict"]
        assert state["clip_grad"] == CLIP  # the engine's gradient_clipping
        squares += sum(
            s["exp_avg"].double().pow(2).sum().item() for s in state["base_optimizer_state"]["state"].values()
        )
    assert math.sqrt(squares) / (1 - BETA1) == pytest.approx(CLIP, rel=1e-3)
    assert zero2.scalars("train/grad_norm")[0] > 10 * CLIP


def test_zero2_bf16_resume_continues_weights_and_ema(zero2, shards, tmp_path):
    last = start_from(zero2, 3, tmp_path, "resumed")
    run_training(numerics_overrides(shards, tmp_path, "resumed", steps=6))
    assert checkpoint_step(last) == 6
    assert_same_weights(consolidate(last, tmp_path / "resumed.pt")["state_dict"], zero2.weights[6])


def test_zero3_partitions_everything_and_keeps_a_per_rank_fp32_ema(zero3):
    partitioned, total = map(
        int, re.search(r"EMA: ZeRO-3, (\d+) of (\d+) parameters partitioned", zero3.log).groups()
    )
    assert partitioned == total > 0  # every parameter was really partitioned (local data of 0 elements)
    checkpoint = zero3.run_dir / "checkpoints/step-0000004.ckpt/checkpoint"
    states = [
        torch.load(
            checkpoint / f"zero_pp_rank_{r}_mp_rank_00_model_states.pt", map_location="cpu", weights_only=False
        )
        for r in (0, 1)
    ]
    model, ema = _split(zero3.weights[4])
    for rank, state in enumerate(states):
        saved = state["ema_fp32"]
        assert (saved["layout"], saved["rank"], saved["world_size"]) == ("zero3", rank, 2)
        for name, tensor in saved["tensors"].items():  # each rank holds half of every tensor (rounded up)
            assert tensor.dtype == torch.float32 and tensor.numel() == math.ceil(model[name].numel() / 2)
    assert {k: v.shape for k, v in ema.items()} == {k: v.shape for k, v in model.items()}
    assert_ema_is_the_closed_form(zero3.weights[1], [zero3.weights[s] for s in range(2, 5)])
    loss = zero3.scalars("train/loss")
    assert sorted(zero3.scalars("train/grad_norm")) == sorted(loss) == list(range(4))


def test_zero3_resume_continues_weights_and_ema(zero3, shards, tmp_path):
    last = start_from(zero3, 2, tmp_path, "resumed")
    overrides = numerics_overrides(
        shards, tmp_path, "resumed", steps=4, **{"train.deepspeed_config": zero3.run_dir.parent / "zero3.json"}
    )
    run_training(overrides)
    assert checkpoint_step(last) == 4
    assert_same_weights(consolidate(last, tmp_path / "resumed.pt")["state_dict"], zero3.weights[4])


def test_ddp_clipping_bounds_the_update(shards, tmp_path):
    run_training(numerics_overrides(shards, tmp_path, "ddp", steps=1, **{"train.strategy": "ddp"}))
    checkpoint = torch.load(tmp_path / "ddp/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    state = checkpoint["optimizer_states"][0]["state"].values()
    norm = math.sqrt(sum(s["exp_avg"].double().pow(2).sum().item() for s in state)) / (1 - BETA1)
    assert norm == pytest.approx(CLIP, rel=1e-4)
    run = NumericsRun(tmp_path / "ddp", "", {})
    assert run.scalars("train/grad_norm")[0] > 10 * CLIP


def test_resume_on_another_world_size_stops_with_the_recipe(zero2, shards, tmp_path):
    last = start_from(zero2, 6, tmp_path, "shrunk")
    overrides = numerics_overrides(shards, tmp_path, "shrunk", steps=7, **{"train.devices": 1})
    log = run_training(overrides, expect_success=False)
    assert "was written by 2 ranks but this job has 1" in log
    assert "python -m moda_train.consolidate" in log and "train.init_from=" in log
    assert checkpoint_step(last) == 6 and not (tmp_path / "shrunk/tensorboard").exists()  # no work was done

    # The recipe: consolidate, then a new run (here one process) starts from those weights, EMA included.
    init = tmp_path / "model_fp32.pt"
    consolidate(last, init)
    grown = numerics_overrides(
        shards,
        tmp_path,
        "continued",
        steps=1,
        **{"train.devices": 1, "train.strategy": "auto", "train.precision": "32-true", "train.init_from": init},
    )
    assert "initialised from" in run_training(grown)
    after = torch.load(tmp_path / "continued/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    _, ema = _split(after["state_dict"])
    for name, expected in expected_ema(zero2.weights[6], [after["state_dict"]]).items():
        torch.testing.assert_close(ema[name].double(), expected, rtol=1e-6, atol=1e-8)
