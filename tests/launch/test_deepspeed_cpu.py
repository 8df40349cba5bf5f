"""DeepSpeed ZeRO-2 with two CPU ranks through the real training command: sharded checkpoints, consolidation,
a rank killed with SIGKILL, and a relaunch that resumes exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from moda_train.consolidate import consolidate, main

from .conftest import (
    CHECKPOINT_EVERY,
    MAX_STEPS,
    REPO_ROOT,
    RUN_TIMEOUT_S,
    assert_same_weights,
    checkpoint_step,
    clean_env,
    start_from,
    train_command,
    training_overrides,
)

pytestmark = pytest.mark.slow


def test_zero2_trains_and_writes_one_optimizer_shard_per_rank(reference_run):
    # The run reads 3 shards with 2 ranks x 2 loader workers (uneven on purpose): finishing at all, within the
    # fixture's timeout, is the check that uneven shards do not hang a run.
    checkpoints = reference_run.run_dir / "checkpoints"
    for checkpoint in [checkpoints / "last.ckpt", *checkpoints.glob("step-*.ckpt")]:
        shards = sorted(p.name for p in (checkpoint / "checkpoint").glob("*optim_states.pt"))
        assert shards == ["zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"]
    assert checkpoint_step(checkpoints / "last.ckpt") == MAX_STEPS
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in reference_run.log  # rank 1 really ran
    # The client optimizer DeepSpeed steps on each rank's fp32 partition is the fused AdamW training picks.
    shard = torch.load(
        next((checkpoints / "last.ckpt" / "checkpoint").glob("*optim_states.pt")), weights_only=False
    )
    assert all(g["fused"] for g in shard["optimizer_state_dict"]["base_optimizer_state"]["param_groups"])


def test_consolidated_checkpoint_is_fp32_and_complete(reference_run, tmp_path):
    weights = reference_run.weights
    assert all(t.dtype == torch.float32 for t in weights.values() if t.is_floating_point())
    model = {k.removeprefix("model."): v for k, v in weights.items() if k.startswith("model.")}
    ema = {k.removeprefix("ema."): v for k, v in weights.items() if k.startswith("ema.")}
    assert model and model.keys() == ema.keys()  # the frozen EMA copy is in the file too
    assert any(not torch.equal(model[k], ema[k]) for k in model)  # and it is its own set of weights

    # The command line: the same file, and a clear error for something that is not a DeepSpeed folder.
    out = tmp_path / "cli.pt"
    assert main([str(reference_run.run_dir / "checkpoints" / "last.ckpt"), str(out)]) == 0
    assert_same_weights(torch.load(out, weights_only=False)["state_dict"], weights)
    with pytest.raises(ValueError, match="expected a DeepSpeed checkpoint folder"):
        consolidate(out, tmp_path / "again.pt")


def _rank1_pid(launcher_pid: int) -> int | None:
    """Lightning's launcher starts rank 1 as a child of rank 0 with LOCAL_RANK=1 (loader workers have none)."""
    children = Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children").read_text().split()
    for child in children:
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"LOCAL_RANK=1" in environ:
            return int(child)
    return None


def _wait_for_step(checkpoint: Path, step: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be interrupted"
        try:
            if checkpoint_step(checkpoint) >= step:
                return
        except (OSError, RuntimeError, EOFError, KeyError):
            pass  # not written yet, or being written
        time.sleep(0.1)
    raise TimeoutError(f"{checkpoint} did not reach step {step} in {timeout} s")


def test_killed_rank_fails_the_run_and_relaunch_resumes_exactly(reference_run, shards, tmp_path):
    # Resume from the reference's step-8 checkpoint, SIGKILL rank 1 once step 12 is saved, relaunch: the run must
    # fail promptly, lose at most one checkpoint interval, and end on the reference's weights.
    command = train_command(training_overrides(shards, tmp_path, "killed"))
    last = start_from(reference_run, 2 * CHECKPOINT_EVERY, tmp_path, "killed")
    log = (tmp_path / "first.log").open("w")
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_step(last, 3 * CHECKPOINT_EVERY, process, timeout=RUN_TIMEOUT_S)
        rank1 = _rank1_pid(process.pid)
        assert rank1 is not None, "rank 1 process not found"
        os.kill(rank1, signal.SIGKILL)
        killed_at = time.monotonic()
        returncode = process.wait(timeout=120)  # must fail, not hang
        failed_after = time.monotonic() - killed_at
    finally:
        if process.poll() is None:
            process.kill()
    assert returncode != 0
    print(f"run failed {failed_after:.1f} s after SIGKILL of rank 1")
    saved = checkpoint_step(last)
    assert 3 * CHECKPOINT_EVERY <= saved < MAX_STEPS  # killed mid-interval: at most one interval is lost

    resumed = subprocess.run(
        command, cwd=REPO_ROOT, env=clean_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-5000:]
    assert "Restoring states from the checkpoint path" in resumed.stdout + resumed.stderr
    assert checkpoint_step(last) == MAX_STEPS
    weights = consolidate(last, tmp_path / "resumed.pt")["state_dict"]
    assert_same_weights(weights, reference_run.weights)
