"""The experiment schema: every config group a training job reads, with its defaults.

An experiment YAML fills this schema (`load_experiment`, through `moda_train.core.config_loader.load_config`);
`python -m moda_train.train --help` prints it. Recipes differ only in YAML, never in code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from moda_train.core.config_loader import load_config
from moda_train.data.config import DataConfig
from moda_train.flow.config import FlowConfig
from moda_train.models.alse_config import ALSEConfig
from moda_train.models.config import ModelConfig
from moda_train.models.emotion_classifier import EmotionClassifierConfig
from moda_train.models.vae_config import VAEConfig


@dataclass
class OptimConfig:
    lr: float = 1e-4
    """Peak learning rate of AdamW (MoDA's value is unpublished; 1e-4 is the DiT/SD3 default at this width)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    warmup_steps: int = 1000
    """Linear warm-up from 0 to lr over this many optimizer steps."""
    min_lr_ratio: float = 0.1
    """Cosine decay ends at lr * min_lr_ratio at train.max_steps."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables)."""
    ema_decay: float = 0.9999
    """EMA decay per optimizer step; the EMA weights are used for validation and sampling."""

    def __post_init__(self) -> None:
        problems = []
        if self.lr <= 0:
            problems.append("optim.lr must be > 0")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            problems.append("optim.betas must be two numbers in [0, 1)")
        if not 0.0 <= self.ema_decay < 1.0:
            problems.append("optim.ema_decay must lie in [0, 1)")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            problems.append("optim.min_lr_ratio must lie in [0, 1]")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class TrainConfig:
    out_dir: str = "runs"
    """Folder under which each run gets its own subfolder (logs, checkpoints, resolved config)."""
    run_name: str = ""
    """Name of the run's subfolder; empty means `<experiment>-<date>-<time>`, chosen on rank 0."""
    seed: int = 0
    """Global seed (each rank and loader worker derives its own from it)."""
    max_steps: int = 100000
    """Optimizer steps to train."""
    global_batch_size: int = 256
    """Windows per optimizer step over all ranks; per-device batch and accumulation are derived from it."""
    micro_batch_size: int = 32
    """Windows per device per forward pass; accumulation = global / (micro * world size) must be whole."""
    precision: str = "bf16-mixed"
    """Lightning precision: 32-true, bf16-mixed or 16-mixed (use 32-true on CPU)."""
    accelerator: str = "auto"
    """Lightning accelerator: auto, gpu, cpu."""
    devices: int = -1
    """Devices per node (-1 = all visible; under Slurm, tasks per node)."""
    num_nodes: int = 1
    """Nodes in the job (under Slurm, the allocation's node count)."""
    strategy: str = "auto"
    """auto, ddp, or deepspeed (then deepspeed_config is read)."""
    deepspeed_config: str = "configs/deepspeed/zero2.json"
    """DeepSpeed JSON used with strategy=deepspeed."""
    log_every_n_steps: int = 50
    """Scalar logging interval in optimizer steps."""
    val_every_n_steps: int = 2000
    """Validation interval in optimizer steps."""
    checkpoint_every_n_steps: int = 2000
    """Interval of step-numbered checkpoints (plus `last`, which is always kept current)."""
    keep_checkpoints: int = 3
    """Step-numbered checkpoints kept besides `last` and `best`."""
    dist_timeout_s: float = 1800.0
    """Seconds a rank waits in a collective before the job fails (a dead rank then ends the job, not hangs it)."""
    resume: str = "auto"
    """auto (continue from the newest complete checkpoint of the run folder, if there is one), never, or a
    checkpoint path."""
    max_bad_steps: int = 10
    """Training batches in a row with a non-finite loss or gradient (each one skipped) that stop the run."""
    init_from: str = ""
    """Fine-tune: start from the weights and EMA of this checkpoint (own or imported, same task and architecture)
    with a fresh optimizer, schedule and step count (`lit/init_from.py`); empty = fresh initialisation."""

    def __post_init__(self) -> None:
        problems = []
        if self.global_batch_size < 1 or self.micro_batch_size < 1:
            problems.append("train.global_batch_size and train.micro_batch_size must be >= 1")
        elif self.global_batch_size % self.micro_batch_size:
            problems.append(
                f"train.global_batch_size={self.global_batch_size} is not a multiple of "
                f"train.micro_batch_size={self.micro_batch_size}"
            )
        if self.precision not in ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true"):
            problems.append(f"train.precision={self.precision!r}: choose 32-true, bf16-mixed or 16-mixed")
        if self.strategy not in ("auto", "ddp", "deepspeed"):
            problems.append(f"train.strategy={self.strategy!r}: choose auto, ddp or deepspeed")
        if self.max_steps < 1:
            problems.append("train.max_steps must be >= 1")
        if problems:
            raise ValueError("; ".join(problems))

    def accumulation(self, world_size: int) -> int:
        """Gradient accumulation steps for `world_size` devices; raises if the batch does not divide."""
        per_step = self.micro_batch_size * world_size
        if self.global_batch_size % per_step:
            raise ValueError(
                f"train.global_batch_size={self.global_batch_size} is not divisible by micro_batch_size "
                f"({self.micro_batch_size}) x world size ({world_size}) = {per_step}"
            )
        return self.global_batch_size // per_step


@dataclass
class SyncLossConfig:
    checkpoint: str = ""
    """A trained ALSE checkpoint (from an `alse` experiment); empty = train without the ALSE loss."""
    weight: float = 0.1
    """Weight of the ALSE sync loss added to the flow loss."""
    tau: float = 0.4
    """Adaptive gate: a sample contributes only if the expert scores its ground-truth lips above this cosine."""
    noise_power: float = 2.0
    """Down-weight the loss at high noise by (1 - t) ** noise_power (0 = none). 2 helped in the demo ablation,
    where the undamped loss made sync worse (README, ALSE section)."""

    def __post_init__(self) -> None:
        if self.weight < 0 or not 0.0 <= self.tau <= 1.0 or self.noise_power < 0:
            raise ValueError("sync.weight and sync.noise_power must be >= 0 and sync.tau must lie in [0, 1]")


@dataclass
class TrainingEvalConfig:
    every_n_steps: int = 0
    """Evaluation during training (`moda_train.lit.eval_callback`): every this many optimizer steps, generate
    motion for the fixed evaluation windows with the EMA weights and log motion-space metrics under `eval/`;
    0 = off. Needs data.val_shards."""
    windows: int = 8
    """Evaluation windows: the first this many fixed windows of data.val_shards (the same at every evaluation)."""
    seed: int = 0
    """Seed of the sampling noise (the same at every evaluation, so the curves show the model, not the noise)."""
    alse_checkpoint: str = ""
    """A trained ALSE checkpoint: also log the motion-space lip sync of the generated windows (eval/motion_sync_c,
    eval/motion_sync_d, eval/motion_offset_abs); empty = not logged."""
    emotion_checkpoint: str = ""
    """A trained emotion classifier checkpoint (an `emotion` experiment): also log eval/emotion_accuracy, the share
    of windows with a known emotion whose generated motion the classifier assigns to that emotion; empty = not
    logged."""

    def __post_init__(self) -> None:
        if self.every_n_steps < 0 or self.windows < 1:
            raise ValueError("evaluation.every_n_steps must be >= 0 and evaluation.windows >= 1")


@dataclass
class MMDiTExperiment:
    task: str = "mmdit"
    """Which model this experiment trains."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The MMDiT's sizes."""
    flow: FlowConfig = field(default_factory=FlowConfig)
    """Rectified flow: time sampling, loss weights, condition dropout, sampler."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """AdamW, schedule, clipping, EMA."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Trainer, batch, precision, strategy, checkpointing."""
    data: DataConfig = field(default_factory=DataConfig)
    """Shards, windows, loader."""
    sync: SyncLossConfig = field(default_factory=SyncLossConfig)
    """The optional ALSE lip-sync loss on the predicted clean motion."""
    evaluation: TrainingEvalConfig = field(default_factory=TrainingEvalConfig)
    """Evaluation during training: motion-space metrics of generated windows, logged to TensorBoard."""


@dataclass
class VAEExperiment:
    task: str = "vae"
    """Which model this experiment trains."""
    vae: VAEConfig = field(default_factory=VAEConfig)
    """The motion VAE's sizes and loss weights."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """AdamW, schedule, clipping, EMA."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Trainer, batch, precision, strategy, checkpointing."""
    data: DataConfig = field(default_factory=DataConfig)
    """Shards, windows, loader."""


@dataclass
class ALSEExperiment:
    task: str = "alse"
    """Which model this experiment trains."""
    alse: ALSEConfig = field(default_factory=ALSEConfig)
    """The lip-sync expert's sizes, window and negatives."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """AdamW, schedule, clipping (ema_decay is unused: the expert keeps no EMA copy)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Trainer, batch, precision, strategy, checkpointing."""
    data: DataConfig = field(default_factory=DataConfig)
    """Shards, windows, loader."""


@dataclass
class EmotionExperiment:
    task: str = "emotion"
    """Which model this experiment trains."""
    classifier: EmotionClassifierConfig = field(default_factory=EmotionClassifierConfig)
    """The motion-space emotion classifier's sizes and loss."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """AdamW, schedule, clipping (ema_decay is unused: the classifier keeps no EMA copy)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Trainer, batch, precision, strategy, checkpointing."""
    data: DataConfig = field(default_factory=DataConfig)
    """Shards (with emotion labels in emotion.cls), windows, loader."""


# Task name -> schema. The `task` key of an experiment YAML picks the schema it is checked against.
EXPERIMENTS: dict[str, type] = {
    "mmdit": MMDiTExperiment,
    "vae": VAEExperiment,
    "alse": ALSEExperiment,
    "emotion": EmotionExperiment,
}


def load_experiment(
    path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
) -> tuple[Any, DictConfig]:
    """An experiment YAML (or the name of a shipped one) + overrides, typed by the schema its `task` key names
    (default: mmdit)."""
    return load_config(path, overrides, schema=EXPERIMENTS, group="experiments")
