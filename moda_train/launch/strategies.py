"""The Lightning strategy a run uses, from `train.strategy` (auto, ddp, deepspeed) and `train.deepspeed_config`.

DeepSpeed reads one of the JSON files in `configs/deepspeed/` (ZeRO stage 1, 2, 2 with CPU-offloaded optimizer
state, 3). Lightning fills in what it owns: micro batch size, gradient accumulation, gradient clipping and the
bf16/fp16 section follow the Trainer arguments, so those keys stay out of the JSON.

The CPU path: Lightning 2.6's `DeepSpeedStrategy` refuses every accelerator but CUDA, although DeepSpeed itself
trains on CPU processes (its CPU accelerator communicates over gloo when oneCCL is missing). `CPUDeepSpeedStrategy`
removes only that refusal, so tests and laptops run the same ZeRO sharding, optimizer partitioning and sharded
checkpoints as a GPU cluster, not an imitation of them. On CPU the optimizer must be a plain torch optimizer
(fused CUDA optimizers do not exist there); the JSON files allow such a client optimizer.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.strategies import DDPStrategy, Strategy
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from typing_extensions import override

from moda_train.core.config_loader import ConfigError, find_config_file
from moda_train.experiment import TrainConfig
from moda_train.launch.checkpointing import AtomicDeepSpeedStrategy

REPO_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_TIMEOUT = timedelta(minutes=30)
"""How long a collective waits for a silent rank before the job fails (NCCL/gloo process-group timeout).

A rank that dies mid-step leaves the others blocked in their next all-reduce; with this timeout they raise and
the job ends (and Slurm can requeue it) instead of holding the allocation forever. 30 minutes covers the slowest
legitimate wait we know of (rank 0 writing a large sharded checkpoint while the others wait at the barrier)."""

CPU_BUCKET_ELEMENTS = 10_000_000
"""Cap on ZeRO's reduce/all-gather bucket sizes on the CPU path (elements; 40 MB in fp32).

The GPU configs use DeepSpeed's 5e8-element buckets. On CPU those 2 GB host buffers are re-faulted every step,
which made a two-rank ZeRO-2 step of a small model take 10 s instead of 0.1 s on this kind of machine."""

# Keys Lightning derives from the Trainer; a value in the JSON would silently disagree with the config.
_TRAINER_OWNED_KEYS = (
    "gradient_accumulation_steps",
    "train_batch_size",
    "train_micro_batch_size_per_gpu",
    "fp16",
    "bf16",
    "gradient_clipping",
)


class CPUDeepSpeedStrategy(AtomicDeepSpeedStrategy):
    """DeepSpeed ZeRO on CPU processes (gloo backend): the CPU path used by tests and laptops.

    Differs from Lightning's `DeepSpeedStrategy` only where that one assumes CUDA: no accelerator check, no
    CUDA device-index validation, and the root device is `cpu:<local rank>` (DeepSpeed takes the device index
    as the process's rank on the node).
    """

    strategy_name = "deepspeed_cpu"

    @override
    def setup_environment(self) -> None:
        # DeepSpeedStrategy.setup_environment = CUDA check + DDPStrategy.setup_environment; keep the latter.
        DDPStrategy.setup_environment(self)

    @override
    def setup_distributed(self) -> None:
        # As DeepSpeedStrategy.setup_distributed, minus `_validate_device_index_selection` (CUDA indices).
        self.set_world_ranks()
        self._init_deepspeed_distributed()

    @property
    @override
    def root_device(self) -> torch.device:
        return torch.device("cpu", self.local_rank)


def resolve_config_path(path: str | Path) -> Path:
    """Find a DeepSpeed JSON relative to the current directory or, for `configs/...`, among the shipped configs."""
    try:
        return find_config_file(path)
    except ConfigError as err:
        raise FileNotFoundError(f"train.deepspeed_config={str(path)!r}: {err}") from err


def load_deepspeed_config(path: str | Path) -> dict[str, Any]:
    """Read and check a DeepSpeed JSON config; raise `ValueError` naming the file and the offending key."""
    resolved = resolve_config_path(path)
    try:
        config = json.loads(resolved.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{resolved}: not valid JSON: {err}") from err
    problems = []
    zero = config.get("zero_optimization", {})
    if not isinstance(zero, dict) or zero.get("stage", 0) not in (0, 1, 2, 3):
        problems.append("zero_optimization.stage must be 0, 1, 2 or 3")
    for key in _TRAINER_OWNED_KEYS:
        if key in config:
            problems.append(
                f"{key} is set from the experiment (train.* batch sizes and precision, optim.grad_clip); remove it"
            )
    if problems:
        raise ValueError(f"{resolved}: " + "; ".join(problems))
    return config


def _on_cpu(train: TrainConfig) -> bool:
    if train.accelerator == "cpu":
        return True
    return train.accelerator == "auto" and not torch.cuda.is_available()


def build_strategy(
    train: TrainConfig, timeout: timedelta = DEFAULT_TIMEOUT, grad_clip: float = 0.0
) -> str | Strategy:
    """The strategy for `lightning.Trainer(strategy=...)`.

    `auto` is passed through (one device, or Lightning's choice). `ddp` and `deepspeed` get an explicit
    process-group `timeout`, so a dead rank fails the job rather than hanging it. `grad_clip` (optim.grad_clip)
    becomes DeepSpeed's `gradient_clipping`: the engine clips the global norm of its partitioned gradients, which
    Lightning's own clipping cannot see. The other strategies clip through `Trainer(gradient_clip_val=...)`.
    """
    if train.strategy == "auto":
        return "auto"
    if train.strategy == "ddp":
        # Every parameter receives a gradient in our models; skipping the unused-parameter search saves a pass.
        return DDPStrategy(timeout=timeout, find_unused_parameters=False)
    if train.strategy == "deepspeed":
        config = load_deepspeed_config(train.deepspeed_config)
        # DeepSpeed uses this only for its throughput log; without it Lightning guesses from the loader's
        # batch_sampler, which pipelines that batch inside the dataset (WebLoader(batch_size=None)) do not have.
        config["train_micro_batch_size_per_gpu"] = train.micro_batch_size
        config["gradient_clipping"] = grad_clip
        stage = config.get("zero_optimization", {}).get("stage", 0)
        if _on_cpu(train):
            offload = config["zero_optimization"].get("offload_optimizer")
            if isinstance(offload, dict):
                offload["pin_memory"] = False  # page-locked host memory needs a CUDA driver
            for key in ("reduce_bucket_size", "allgather_bucket_size", "stage3_prefetch_bucket_size"):
                if key in config["zero_optimization"]:
                    config["zero_optimization"][key] = min(
                        int(config["zero_optimization"][key]), CPU_BUCKET_ELEMENTS
                    )
            config["zero_optimization"].setdefault("reduce_bucket_size", CPU_BUCKET_ELEMENTS)
            rank_zero_info(f"DeepSpeed ZeRO-{stage} on CPU processes (gloo), config {train.deepspeed_config}")
            return CPUDeepSpeedStrategy(config=config, timeout=timeout)
        rank_zero_info(f"DeepSpeed ZeRO-{stage}, config {train.deepspeed_config}")
        return AtomicDeepSpeedStrategy(config=config, timeout=timeout)
    raise ValueError(f"train.strategy={train.strategy!r}: choose auto, ddp or deepspeed")
