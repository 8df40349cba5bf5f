"""Faults during a two-rank DeepSpeed ZeRO-2 save, through the real training command: a SIGKILL and a SIGTERM
inside the save of `last`, a damaged `last`, and a resume that continues from the newest complete checkpoint."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from moda_train.consolidate import consolidate
from moda_train.launch.checkpointing import FAULT_ENV, checkpoint_problem
from moda_train.launch.preemption import TERMINATED_EXIT_CODE

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


def test_kill_and_sigterm_inside_save_of_last_then_resume_from_newest_valid(reference_run, shards, tmp_path):
    # One run folder through three launches (each launch costs a DeepSpeed start-up): SIGKILL inside a save, a
    # damaged `last`, SIGTERM inside a save, and a last resume that must end on the uninterrupted run's weights.
    command = train_command(training_overrides(shards, tmp_path, "faults"))
    last = start_from(reference_run, CHECKPOINT_EVERY, tmp_path, "faults")
    checkpoints = last.parent

    # 1. From the reference's step-4 checkpoint; every rank SIGKILLs itself while saving `last` at step 8, once its
    # shard is written under the temporary name (step-0000008.ckpt was saved just before, as ModelCheckpoint does).
    killed = _run(command, clean_env() | {FAULT_ENV: str(2 * CHECKPOINT_EVERY)})
    (tmp_path / "killed.log").write_text(killed.stdout + killed.stderr)
    assert killed.returncode == -9, (killed.stdout + killed.stderr)[-3000:]
    assert (checkpoints / "last.ckpt.tmp").is_dir()  # the interrupted save, never renamed into place
    assert checkpoint_step(last) == CHECKPOINT_EVERY  # the previous `last` is untouched
    assert checkpoint_problem(last).problem is None

    # 2. Make `last` what an in-place save used to leave: rank 1's shard from another step.
    shard = "checkpoint/zero_pp_rank_1_mp_rank_00_optim_states.pt"
    shutil.copy(reference_run.run_dir / "checkpoints" / "step-0000012.ckpt" / shard, last / shard)
    assert "different optimizer steps" in checkpoint_problem(last).problem

    # 3. Resume; every rank gets SIGTERM (as from scancel) while its shard of `last` at step 12 sits under the
    # temporary name. The save completes, the next step runs, the ranks save `last` at step 13 and stop, non-zero.
    stopped = _run(command, clean_env() | {FAULT_ENV: f"{3 * CHECKPOINT_EVERY}:SIGTERM"})
    log = stopped.stdout + stopped.stderr
    (tmp_path / "terminated.log").write_text(log)
    assert stopped.returncode == TERMINATED_EXIT_CODE, log[-5000:]
    assert f"not using {last}: the rank shards come from different optimizer steps" in log
    assert f"falling back to {checkpoints / 'step-0000008.ckpt'} (step 8)" in log
    assert f"preemption: SIGTERM received; saving {last} at step 13" in log
    assert "preemption: stopping on SIGTERM (exit code 143)" in log
    assert not (checkpoints / "last.ckpt.tmp").exists()  # the next save of `last` cleared the leftover
    assert checkpoint_problem(checkpoints / "step-0000012.ckpt").problem is None
    check = checkpoint_problem(last)
    assert check.problem is None and check.step == 3 * CHECKPOINT_EVERY + 1

    # 4. Resume from the newest valid checkpoint, `last` at step 13, to the end.
    resumed = _run(command, clean_env())
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-5000:]
    assert f"resume: continuing from {last} (step 13)" in log
    assert checkpoint_step(last) == MAX_STEPS
    weights = consolidate(last, tmp_path / "resumed.pt")["state_dict"]
    assert_same_weights(weights, reference_run.weights)  # the lost steps were replayed exactly
