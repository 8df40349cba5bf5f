"""Faults during a two-rank DeepSpeed ZeRO-2 save, through the real training command: a kill inside the save of
`last`, a damaged `last`, and a resume that continues from the newest complete checkpoint."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from moda_train.consolidate import consolidate
from moda_train.launch.checkpointing import FAULT_ENV, checkpoint_problem

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


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def test_kill_inside_save_of_last_then_resume_from_newest_valid(reference_run, shards, tmp_path):
    # From the reference's step-8 checkpoint; every rank SIGKILLs itself while saving `last` at step 12, once its
    # shard is written under the temporary name (step-0000012.ckpt was saved just before, as ModelCheckpoint does).
    command = train_command(training_overrides(shards, tmp_path, "killed"))
    last = start_from(reference_run, 2 * CHECKPOINT_EVERY, tmp_path, "killed")
    killed = _run(command, clean_env() | {FAULT_ENV: str(3 * CHECKPOINT_EVERY)})
    (tmp_path / "killed.log").write_text(killed.stdout + killed.stderr)
    assert killed.returncode == -9, (killed.stdout + killed.stderr)[-3000:]
    checkpoints = last.parent
    assert (checkpoints / "last.ckpt.tmp").is_dir()  # the interrupted save, never renamed into place
    assert checkpoint_step(last) == 2 * CHECKPOINT_EVERY  # the previous `last` is untouched
    assert checkpoint_problem(last).problem is None

    # Make `last` what an in-place save used to leave: rank 1's shard from another step.
    shard = "checkpoint/zero_pp_rank_1_mp_rank_00_optim_states.pt"
    shutil.copy(reference_run.run_dir / "checkpoints" / "step-0000004.ckpt" / shard, last / shard)
    assert "different optimizer steps" in checkpoint_problem(last).problem

    resumed = _run(command, clean_env())
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-5000:]
    assert f"not using {last}: the rank shards come from different optimizer steps" in log
    assert f"falling back to {checkpoints / 'step-0000012.ckpt'} (step 12)" in log
    assert checkpoint_step(last) == MAX_STEPS
    assert not (checkpoints / "last.ckpt.tmp").exists()  # the next save cleared the leftover
    weights = consolidate(last, tmp_path / "resumed.pt")["state_dict"]
    assert_same_weights(weights, reference_run.weights)  # the lost steps were replayed exactly
