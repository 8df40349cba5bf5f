"""Multi-rank runs of the real training command, in their own processes, on synthetic shards.

Lightning's ddp launcher re-runs the command line for the other ranks, which under pytest would be pytest itself,
so every multi-rank run here is `python -m moda_train.train ...` (or `sbatch`) in a subprocess. One uninterrupted
two-rank DeepSpeed ZeRO-2 run is shared by the tests that compare against it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from moda_train.consolidate import consolidate
from moda_train.data.synthetic import write_synthetic_shards

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "configs/experiments/mmdit_tiny_cpu.yaml"
MAX_STEPS = 16
CHECKPOINT_EVERY = 4
RUN_TIMEOUT_S = 420  # generous: the first run on a machine compiles DeepSpeed's CPU ops (about 45 s)


def training_overrides(shards: Path, out_dir: Path, run_name: str, strategy: str = "deepspeed") -> list[str]:
    """Two CPU ranks, ZeRO-2, 2 loader workers per rank over 3 shards (3 does not divide by 2 ranks x 2 workers),
    8-batch epochs so the run crosses epoch boundaries, a checkpoint every 4 steps."""
    return [
        f"data.train_shards={shards}/train-{{000000..000002}}.tar",
        "data.val_shards=",
        f"data.stats_path={shards}/stats.json",
        "data.num_workers=2",
        "data.samples_per_epoch=64",
        f"train.strategy={strategy}",
        "train.deepspeed_config=configs/deepspeed/zero2.json",
        "train.devices=2",
        "train.global_batch_size=8",
        "train.micro_batch_size=4",
        f"train.max_steps={MAX_STEPS}",
        f"train.checkpoint_every_n_steps={CHECKPOINT_EVERY}",
        "train.keep_checkpoints=10",
        "train.log_every_n_steps=4",
        f"train.out_dir={out_dir}",
        f"train.run_name={run_name}",
    ]


def clean_env() -> dict[str, str]:
    """The test process's environment without any launcher variables (pytest itself may run under Slurm)."""
    drop = ("SLURM_", "TORCHELASTIC_", "LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def train_command(overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "moda_train.train", EXPERIMENT, *overrides]


def model_states_files(checkpoint: Path) -> list[Path]:
    """The files of a DeepSpeed checkpoint folder that hold the Lightning state: rank 0's under ZeRO-1/2
    (`mp_rank_00_model_states.pt`), one per rank under ZeRO-3 (`zero_pp_rank_<r>_mp_rank_00_model_states.pt`)."""
    return sorted((checkpoint / "checkpoint").glob("*model_states.pt"))


def checkpoint_step(checkpoint: Path) -> int:
    """The global step stored in a (DeepSpeed folder) checkpoint."""
    files = model_states_files(checkpoint)
    if not files:
        raise FileNotFoundError(f"{checkpoint}: no model states yet")
    return int(torch.load(files[0], map_location="cpu", weights_only=False)["global_step"])


@dataclass
class Run:
    run_dir: Path
    log: str
    weights: dict[str, torch.Tensor]


@pytest.fixture(scope="session")
def shards(tmp_path_factory) -> Path:
    return write_synthetic_shards(tmp_path_factory.mktemp("shards"), num_clips=9, clips_per_shard=3, seed=0)


def run_training(overrides: list[str], expect_success: bool = True) -> str:
    """Run `python -m moda_train.train` in its own processes; returns its log, its exit code checked."""
    result = subprocess.run(
        train_command(overrides),
        cwd=REPO_ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    log = result.stdout + result.stderr
    if expect_success:
        assert result.returncode == 0, log[-5000:]
    else:
        assert result.returncode != 0, log[-5000:]
    return log


@pytest.fixture(scope="session")
def reference_run(shards, tmp_path_factory) -> Run:
    """An uninterrupted two-rank ZeRO-2 run of MAX_STEPS steps, consolidated to fp32."""
    out = tmp_path_factory.mktemp("runs")
    log = run_training(training_overrides(shards, out, "reference"))
    run_dir = out / "reference"
    weights = consolidate(run_dir / "checkpoints" / "last.ckpt", out / "reference.pt")["state_dict"]
    return Run(run_dir, log, weights)


def start_from(reference: Run, step: int, out_dir: Path, run_name: str) -> Path:
    """A run folder whose `last` checkpoint is the reference run's checkpoint at `step`.

    Runs that must end on the reference's weights start from its own checkpoint rather than from scratch, so the
    comparison checks resuming, not whether two fresh processes initialise the model identically.
    """
    source_dir = reference.run_dir / "checkpoints"
    target_dir = out_dir / run_name / "checkpoints"
    last = target_dir / "last.ckpt"
    shutil.copytree(source_dir / f"step-{step:07d}.ckpt", last)

    # Move the ModelCheckpoint state along with the files (as moving a run folder would need): it only trusts
    # its saved paths when they are in its own folder, and otherwise writes `last-v1` beside the old `last`.
    def move(path: str) -> str:
        return path.replace(str(source_dir.resolve()), str(target_dir.resolve()))

    for states in model_states_files(last):
        checkpoint = torch.load(states, map_location="cpu", weights_only=False)
        for state in checkpoint["callbacks"].values():
            for key, value in state.items():
                if isinstance(value, str):
                    state[key] = move(value)
                elif key == "best_k_models":
                    state[key] = {move(path): score for path, score in value.items()}
            if "last_model_path" in state:
                # a step-numbered checkpoint may predate the first `last`; this copy *is* `last` now
                state["last_model_path"] = str(last.resolve())
        torch.save(checkpoint, states)
    return last


def assert_same_weights(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
