"""Rank and device discovery under a lone process, torchrun and srun; the plugins handed to the Trainer."""

from __future__ import annotations

import pytest
from lightning.fabric.plugins.environments import SLURMEnvironment

from moda_train.experiment import TrainConfig
from moda_train.launch.environment import build_plugins, trainer_devices, world_info_from_env

LAUNCH_VARS = (
    "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_JOB_NUM_NODES", "SLURM_NNODES",
    "SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE", "SLURM_JOB_NAME", "SLURM_JOB_ID",
    "TORCHELASTIC_RUN_ID", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
)  # fmt: skip


@pytest.fixture
def clean_env(monkeypatch):
    for name in LAUNCH_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_single_process(clean_env):
    info = world_info_from_env()
    assert (info.launcher, info.global_rank, info.world_size, info.num_nodes) == ("single", 0, 1, 1)
    assert trainer_devices(TrainConfig(devices=-1)) == ("auto", 1)
    assert trainer_devices(TrainConfig(devices=2, num_nodes=1)) == (2, 1)
    assert build_plugins(TrainConfig()) == []


def test_srun_task(clean_env):
    # task 3 of 4: 2 nodes x 2 tasks, as `srun` sets it up
    for name, value in {
        "SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NTASKS_PER_NODE": "2", "SLURM_TASKS_PER_NODE": "2(x2)",
        "SLURM_JOB_NAME": "moda-mmdit", "SLURM_JOB_ID": "77",
    }.items():  # fmt: skip
        clean_env.setenv(name, value)
    info = world_info_from_env()
    assert (info.launcher, info.local_rank, info.global_rank, info.world_size, info.num_nodes) == (
        "slurm", 1, 3, 4, 2,
    )  # fmt: skip
    # the allocation wins over the config's devices/num_nodes
    assert trainer_devices(TrainConfig(devices=8, num_nodes=1)) == (2, 2)
    (plugin,) = build_plugins(TrainConfig())
    assert isinstance(plugin, SLURMEnvironment)
    assert plugin.auto_requeue is False  # PreemptionCallback handles SIGUSR1 at a step boundary instead


def test_interactive_slurm_shell_is_not_a_task(clean_env):
    clean_env.setenv("SLURM_NTASKS", "2")
    clean_env.setenv("SLURM_JOB_NAME", "interactive")
    assert world_info_from_env().launcher == "single"


def test_torchrun(clean_env):
    for name, value in {
        "TORCHELASTIC_RUN_ID": "abc", "RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4",
    }.items():  # fmt: skip
        clean_env.setenv(name, value)
    info = world_info_from_env()
    assert (info.launcher, info.local_rank, info.global_rank, info.world_size, info.num_nodes) == (
        "torchrun", 1, 5, 8, 2,
    )  # fmt: skip
    assert trainer_devices(TrainConfig(devices=1)) == (4, 2)
    assert build_plugins(TrainConfig()) == []
