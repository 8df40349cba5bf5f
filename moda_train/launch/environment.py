"""Where the processes of a run come from: a single process, torchrun, or Slurm's `srun`.

One command (`python -m moda_train.train ...`) runs under all three. Ranks are read from the environment the
launcher sets, the way open_clip's `world_info_from_env` does; Lightning's cluster environments do the same for
the Trainer, and `build_plugins` picks the Slurm one with our preemption settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

from moda_train.experiment import TrainConfig


@dataclass(frozen=True)
class WorldInfo:
    """This process's place in the job."""

    local_rank: int
    """Rank among the processes on this node (the GPU index on a GPU node)."""
    global_rank: int
    """Rank among all processes of the job."""
    world_size: int
    """Processes in the job."""
    num_nodes: int
    """Nodes in the job."""
    launcher: str
    """`slurm`, `torchrun` or `single` (one process, or Lightning spawns the others itself)."""


def _int_env(*names: str, default: int) -> int:
    for name in names:
        if os.environ.get(name):
            return int(os.environ[name].split("(")[0])  # SLURM_TASKS_PER_NODE looks like "2(x3)"
    return default


def under_slurm_srun() -> bool:
    """True inside an `srun` step of a Slurm job (the processes are Slurm's tasks, one per device)."""
    return SLURMEnvironment.detect()


def under_torchrun() -> bool:
    """True in a process started by torchrun / torch.distributed.elastic."""
    return TorchElasticEnvironment.detect()


def world_info_from_env() -> WorldInfo:
    """Ranks and sizes from Slurm's or torchrun's variables; a lone process is rank 0 of 1."""
    if under_slurm_srun():
        world_size = _int_env("SLURM_NTASKS", default=1)
        return WorldInfo(
            local_rank=_int_env("SLURM_LOCALID", default=0),
            global_rank=_int_env("SLURM_PROCID", default=0),
            world_size=world_size,
            num_nodes=_int_env("SLURM_JOB_NUM_NODES", "SLURM_NNODES", default=1),
            launcher="slurm",
        )
    if under_torchrun():
        world_size = _int_env("WORLD_SIZE", default=1)
        local_world = _int_env("LOCAL_WORLD_SIZE", default=world_size)
        return WorldInfo(
            local_rank=_int_env("LOCAL_RANK", default=0),
            global_rank=_int_env("RANK", default=0),
            world_size=world_size,
            num_nodes=max(1, world_size // local_world),
            launcher="torchrun",
        )
    return WorldInfo(local_rank=0, global_rank=0, world_size=1, num_nodes=1, launcher="single")


def trainer_devices(train: TrainConfig) -> tuple[int | str, int]:
    """`(devices, num_nodes)` for `lightning.Trainer`.

    Under srun or torchrun the launcher already fixed how many processes run on each node and how many nodes
    there are; Lightning insists that `devices` and `num_nodes` match that, so the launcher's numbers win over
    the config (a config written for 8 GPUs then runs unchanged on a 4-GPU allocation). Elsewhere the config
    decides: `train.devices=-1` means every visible device, which Lightning calls "auto".
    """
    info = world_info_from_env()
    if info.launcher == "slurm":
        per_node = _int_env("SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE", default=info.world_size)
        return per_node, info.num_nodes
    if info.launcher == "torchrun":
        return _int_env("LOCAL_WORLD_SIZE", default=info.world_size), info.num_nodes
    return ("auto" if train.devices == -1 else train.devices), train.num_nodes


def build_plugins(train: TrainConfig) -> list:
    """Plugins for `lightning.Trainer(plugins=...)`: the cluster environment under Slurm, nothing elsewhere.

    Lightning's own Slurm auto-requeue is switched off on purpose: its SIGUSR1 handler writes the checkpoint
    from inside the signal handler, i.e. at whatever instruction each rank happens to be, and a DeepSpeed save is
    a collective, so ranks interrupted in different places deadlock or save half a step. `PreemptionCallback`
    (moda_train.launch.preemption) takes the signal instead and saves at the next optimizer-step boundary.
    """
    del train  # the choice depends only on how the process was launched
    if under_slurm_srun():
        return [SLURMEnvironment(auto_requeue=False)]
    return []
