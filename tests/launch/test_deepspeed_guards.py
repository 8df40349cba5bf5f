"""A NaN in one gradient (the loss finite) under two-rank DeepSpeed ZeRO-2 in bf16-mixed, through the training
command: each such step is skipped by DeepSpeed's own partitioned overflow check, counted and printed by the
TrainingGuard, `train.max_bad_steps` in a row stop the run, and weights, EMA and checkpoints stay finite."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from moda_train.consolidate import consolidate

from .conftest import EXPERIMENT, REPO_ROOT, RUN_TIMEOUT_S, clean_env, training_overrides
from .nan_gradient_run import STEPS_ENV

pytestmark = pytest.mark.slow

NAN_STEPS = [2, 3, 5, 6, 7, 8, 9]  # global steps (the batch's step before it is taken); 4 is a good step between


def test_nan_gradient_skips_the_step_counts_it_and_stops_after_max_bad_steps(shards, tmp_path):
    overrides = training_overrides(shards, tmp_path, "nan") + [
        "train.precision=bf16-mixed",
        "train.max_steps=12",
        "train.checkpoint_every_n_steps=1",
        "train.max_bad_steps=3",
        "data.num_workers=0",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "tests.launch.nan_gradient_run", EXPERIMENT, *overrides],
        cwd=REPO_ROOT,
        env=clean_env() | {STEPS_ENV: ",".join(map(str, NAN_STEPS))},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    log = result.stdout + result.stderr
    (tmp_path / "nan.log").write_text(log)
    assert result.returncode != 0, log[-5000:]
    for count, step in enumerate([2, 3, 5, 6, 7], start=1):
        assert f"step {step}: non-finite gradient: batch skipped ({count} so far)" in log
    assert "3 training batches in a row had a non-finite gradient (train.max_bad_steps=3): stopping" in log
    assert "step 8: non-finite" not in log  # the run stopped at the third skip in a row

    checkpoints = tmp_path / "nan" / "checkpoints"
    # step-0000008 would hold the state after the batch of step 7: the stop came before its save
    assert sorted(p.name for p in checkpoints.glob("step-*.ckpt"))[-1] == "step-0000007.ckpt"
    states = {n: consolidate(checkpoints / f"step-{n:07d}.ckpt", tmp_path / f"{n}.pt") for n in (2, 3, 4, 5, 7)}
    for n, state in states.items():
        for name, tensor in state["state_dict"].items():
            assert not tensor.is_floating_point() or torch.isfinite(tensor).all(), f"step {n}: {name}"

    def model(n: int) -> dict[str, torch.Tensor]:
        return {k: v for k, v in states[n]["state_dict"].items() if k.startswith("model.")}

    def ema(n: int) -> torch.Tensor:
        return torch.cat([v.flatten() for k, v in states[n]["state_dict"].items() if k.startswith("ema.")])

    # Skipped steps leave the fp32 weights exactly as they were; good steps train.
    for before, after in ((2, 3), (3, 4), (5, 7)):
        assert all(torch.equal(model(before)[k], model(after)[k]) for k in model(before)), (before, after)
    assert not all(torch.equal(model(4)[k], model(5)[k]) for k in model(4))
    assert not torch.equal(ema(2), ema(3))  # the EMA still moves, towards the unchanged finite weights
    guard = next(v for k, v in states[7]["callbacks"].items() if k.startswith("TrainingGuard"))
    assert guard["skipped_steps"] == 4  # steps 2, 3, 5, 6; the one of step 7 stopped the run before its save
