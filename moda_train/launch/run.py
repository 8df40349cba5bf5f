"""One training run: run folder, config record, datamodule, module, callbacks, logger, Trainer, resume."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn
from omegaconf import DictConfig, OmegaConf

from moda_train.core.config_loader import ConfigError, save_config
from moda_train.core.stats import MotionStats
from moda_train.data.datamodule import MotionDataModule
from moda_train.data.shard_check import check_shard_spec
from moda_train.experiment import TrainConfig
from moda_train.launch.checkpointing import (
    AtomicCheckpointIO,
    FiniteWeightsCheck,
    check_resume_config,
    resume_checkpoint,
)
from moda_train.launch.environment import build_plugins, trainer_devices, world_info_from_env
from moda_train.launch.preemption import PreemptionCallback
from moda_train.launch.resume import check_resume_world_size
from moda_train.launch.strategies import build_strategy
from moda_train.lit.alse_module import ALSELightningModule
from moda_train.lit.callbacks import FinalCheckpoint, ThroughputLogger
from moda_train.lit.emotion_module import EmotionLightningModule
from moda_train.lit.eval_callback import TrainingEvaluation
from moda_train.lit.guards import TrainingGuard
from moda_train.lit.init_from import load_initial_weights
from moda_train.lit.mmdit_module import MoDALightningModule
from moda_train.lit.progress import StepProgress, quiet_lightning
from moda_train.lit.vae_module import MotionVAELightningModule

# task -> LightningModule class; every module takes (config dict, motion stats).
MODULES: dict[str, type[L.LightningModule]] = {
    "mmdit": MoDALightningModule,
    "vae": MotionVAELightningModule,
    "alse": ALSELightningModule,
    "emotion": EmotionLightningModule,
}


def run_name(train: TrainConfig, experiment_path: str | Path) -> str:
    """The run's folder name. It must be the same on every rank without talking to the others, so it comes from
    the launcher's job id when there is one (Slurm, torchrun) and only falls back to the clock for one process."""
    if train.run_name:
        return train.run_name
    job = os.environ.get("SLURM_JOB_ID") or os.environ.get("TORCHELASTIC_RUN_ID", "")
    if job and job != "none":
        return f"{Path(experiment_path).stem}-job{job}"
    return f"{Path(experiment_path).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def build_trainer(cfg: Any, run_dir: Path) -> L.Trainer:
    train = cfg.train
    checkpoint_dir = run_dir / "checkpoints"
    # step-numbered checkpoints plus `last`, which resume=auto continues from
    step_checkpoints = ModelCheckpoint(
        dirpath=checkpoint_dir,
        filename="step-{step:07d}",
        every_n_train_steps=train.checkpoint_every_n_steps,
        save_top_k=train.keep_checkpoints,
        monitor="step",
        mode="max",
        save_last=True,
        enable_version_counter=False,  # never `last-v1.ckpt`: resume=auto must find the newest as `last`
        auto_insert_metric_name=False,
    )
    callbacks = [
        step_checkpoints,
        FinalCheckpoint(step_checkpoints),
        LearningRateMonitor(logging_interval="step"),
        ThroughputLogger(),
        PreemptionCallback(),
        FiniteWeightsCheck(),
        TrainingGuard(train.max_bad_steps),
        StepProgress(windows_per_step=train.global_batch_size),
    ]
    if cfg.data.val_shards:
        callbacks.append(
            ModelCheckpoint(dirpath=checkpoint_dir, filename="best", monitor="val/loss", mode="min", save_top_k=1)
        )
    if getattr(cfg, "evaluation", None) is not None and cfg.evaluation.every_n_steps:
        callbacks.append(TrainingEvaluation(cfg.evaluation, cfg.data))
    devices, num_nodes = trainer_devices(train)
    quiet_lightning()
    trainer = L.Trainer(
        default_root_dir=run_dir,
        max_steps=train.max_steps,
        accelerator=train.accelerator,
        devices=devices,
        num_nodes=num_nodes,
        precision=train.precision,
        strategy=build_strategy(
            train, timeout=timedelta(seconds=train.dist_timeout_s), grad_clip=cfg.optim.grad_clip
        ),
        # DeepSpeed writes its own folders (AtomicDeepSpeedStrategy); every other strategy saves through this.
        plugins=build_plugins(train) + ([] if train.strategy == "deepspeed" else [AtomicCheckpointIO()]),
        logger=TensorBoardLogger(save_dir=run_dir, name="tensorboard", version="", default_hp_metric=False),
        callbacks=callbacks,
        log_every_n_steps=train.log_every_n_steps,
        check_val_every_n_epoch=None,
        use_distributed_sampler=False,  # the WebDataset pipeline splits data by rank itself
        num_sanity_val_steps=0,
        enable_model_summary=world_info_from_env().global_rank == 0,
    )
    # The global batch is the input; accumulation follows from the world size, known only now.
    trainer.accumulate_grad_batches = train.accumulation(trainer.world_size)
    trainer.val_check_interval = train.val_every_n_steps * trainer.accumulate_grad_batches
    if train.strategy != "deepspeed" and cfg.optim.grad_clip > 0:
        trainer.gradient_clip_val = cfg.optim.grad_clip
    return trainer


def run_experiment(cfg: Any, tree: DictConfig, experiment_path: str | Path) -> Path:
    """Train `cfg` (a typed experiment); returns the run folder."""
    try:  # before the run folder exists: a wrong path is a config error, not a half-made run
        stats = MotionStats.load(cfg.data.stats_path)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"data.stats_path={cfg.data.stats_path!r}: {err}") from err
    if cfg.data.motion_backend and stats.motion_backend not in ("", cfg.data.motion_backend):
        raise ConfigError(
            f"data.motion_backend={cfg.data.motion_backend!r} but {cfg.data.stats_path} records shards made with "
            f"the {stats.motion_backend!r} motion backend"
        )
    if cfg.data.motion_convention and stats.motion_convention not in ("", cfg.data.motion_convention):
        raise ConfigError(
            f"data.motion_convention={cfg.data.motion_convention!r} but {cfg.data.stats_path} records shards of "
            f"the {stats.motion_convention!r} convention"
        )
    if stats.motion_backend == "liveportrait" and not (stats.motion_convention or cfg.data.motion_convention):
        rank_zero_warn(
            f"{cfg.data.stats_path} records no motion convention (made before it was recorded; liveportrait "
            "shards of that time used the box crop and, unless native_expression was set, the canonical "
            "expression): generation cannot check it. Set data.motion_convention (e.g. "
            "box-crop,canonical-expression) or rebuild the shards"
        )
    tree.data.motion_convention = cfg.data.motion_convention or stats.motion_convention  # saved in checkpoints
    # Before any work: a folder or a typo in a shard list is a config error now, not a reader retrying it.
    check_shard_spec(cfg.data.train_shards, "data.train_shards")
    if cfg.data.val_shards:
        check_shard_spec(cfg.data.val_shards, "data.val_shards")
    L.seed_everything(cfg.train.seed, workers=True)
    run_dir = Path(cfg.train.out_dir) / run_name(cfg.train, experiment_path)
    tree.train.run_name = run_dir.name
    resume = resume_checkpoint(cfg.train.resume, run_dir / "checkpoints")
    if resume is not None:
        check_resume_config(resume, OmegaConf.to_container(tree, resolve=True), run_dir)
    if world_info_from_env().global_rank == 0:  # only once the resume checks passed
        save_config(tree, run_dir / "config.yaml")
    datamodule = MotionDataModule(cfg.data, cfg.train.micro_batch_size, cfg.train.seed)
    trainer = build_trainer(cfg, run_dir)
    # Not under trainer.init_module(empty_init=True): that turns the model's nn.init calls into no-ops. ZeRO-3
    # still partitions at construction, because Lightning wraps DeepSpeed model setup in deepspeed.zero.Init.
    module = MODULES[cfg.task](OmegaConf.to_container(tree, resolve=True), stats)
    ckpt_path = None if resume is None else str(resume.path)
    check_resume_world_size(ckpt_path, trainer.world_size)
    if ckpt_path is None and cfg.train.init_from:  # a requeued init_from run resumes from its own `last` instead
        load_initial_weights(module, cfg.train.init_from, cfg.task)
        if world_info_from_env().global_rank == 0:
            print(f"initialised from {cfg.train.init_from}; optimizer, schedule and step start afresh")
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    if trainer.is_global_zero:
        print(f"run folder:   {run_dir}")
        print(f"checkpoints:  {run_dir / 'checkpoints'}")
        print(f"tensorboard:  {run_dir / 'tensorboard'}")
    return run_dir
