"""Evaluation during training: every `evaluation.every_n_steps` optimizer steps, generate motion for a small fixed
set of validation windows with the EMA weights and log motion-space metrics to TensorBoard.

The windows are the first `evaluation.windows` fixed windows of `data.val_shards` (read once, normalised with the
module's own statistics), each generated from its own audio, identity, emotion label and previous motion with the
module's sampler and guidance (`MoDALightningModule.sample`, seed `evaluation.seed`). No rendering. Logged under
`eval/`, the generated value and the ground truth's (`_gt`) side by side, in raw motion units:

- lip_mae: mean |generated - ground truth| over the lip dimensions
- pose_spread (_gt): `moda_train.metrics.motion.temporal_pose_spread`, mean over windows
- motion_jerk_expression, motion_jerk_pose (_gt): `moda_train.metrics.motion.motion_jerk`, mean over windows
- motion_sync_c, motion_sync_d, motion_offset_abs (_gt), with `evaluation.alse_checkpoint`: ALSE's Sync-C/D
  analogue (`moda_train.alse_score`) of each window against its audio, mean over windows
- emotion_accuracy (_gt), with `evaluation.emotion_checkpoint`: `moda_train.metrics.emotion` over the windows
  whose clip has a known emotion (the emotion the window is generated for)
Both judges must have been trained on shards of this run's motion backend (their checkpoints record it): another
one stops the run at its start, an unrecorded one is warned about.

Every rank generates (under DeepSpeed ZeRO-3 the EMA forward pass is collective); rank 0 computes and logs.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from moda_train.alse_score import ALSEScorer
from moda_train.core.checkpoint import check_motion_backend
from moda_train.core.motion_layout import LIP_DIMS, NULL_EMOTION
from moda_train.core.stats import MotionStats
from moda_train.data.config import DataConfig
from moda_train.data.wds import ValidationDataset, expand_urls
from moda_train.experiment import TrainingEvalConfig
from moda_train.lit.emotion_module import EmotionLightningModule, load_classifier
from moda_train.lit.shard_record import ShardBackendsRecord
from moda_train.metrics.emotion import emotion_accuracy
from moda_train.metrics.motion import motion_jerk, temporal_pose_spread

CONDITIONS = ("audio", "identity", "emotion", "prev_motion")


class TrainingEvaluation(Callback):
    def __init__(self, cfg: TrainingEvalConfig, data: DataConfig) -> None:
        if not data.val_shards:
            raise ValueError(
                f"evaluation.every_n_steps={cfg.every_n_steps} needs data.val_shards: the evaluation windows come "
                "from them"
            )
        self.cfg, self.data = cfg, data
        self.batch: dict | None = None
        self.alse: ALSEScorer | None = None
        self.emotion: EmotionLightningModule | None = None
        self.last_step = -1

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Loaded at the start, so a wrong path fails the run now rather than after `every_n_steps` steps.
        device = pl_module.device
        if trainer.is_global_zero and self.cfg.alse_checkpoint:
            self.alse = ALSEScorer.from_checkpoint(self.cfg.alse_checkpoint, device)
            self._check_judge(self.alse.module, f"the ALSE checkpoint {self.cfg.alse_checkpoint}")
        if trainer.is_global_zero and self.cfg.emotion_checkpoint:
            self.emotion = load_classifier(self.cfg.emotion_checkpoint, device)
            self._check_judge(self.emotion, f"the emotion classifier checkpoint {self.cfg.emotion_checkpoint}")
        stats = MotionStats.from_arrays(pl_module.motion_mean.cpu().numpy(), pl_module.motion_std.cpu().numpy())
        urls = [url for source in expand_urls(self.data.val_shards) for url in source.urls]
        windows = ValidationDataset(
            urls, stats, self.data.window_frames, self.data.prev_frames, self.cfg.windows, self.cfg.windows,
            self.data.audio_backend,
        )  # fmt: skip
        self.batch = next(iter(windows), None)
        if self.batch is None:
            raise ValueError(f"evaluation: no window of {self.data.window_frames} frames in data.val_shards")

    def _check_judge(self, module: ShardBackendsRecord, judge: str) -> None:
        """The generated motion lives in this run's shards' motion space: a judge trained on another motion
        backend's shards is refused (ValueError); one that records none, or shards that record none, warned
        about."""
        shards = MotionStats.load(self.data.stats_path).motion_backend or self.data.motion_backend
        if not shards:
            rank_zero_warn(f"{self.data.stats_path} records no motion backend: cannot check {judge} against it")
            return
        warning = check_motion_backend(module.shard_backends, shards, judge)
        if warning:
            rank_zero_warn(warning)

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.last_step = trainer.global_step  # a resumed run does not evaluate again at the step it stopped at

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Called per micro-batch: with accumulation the step number repeats, and evaluates only once.
        step = trainer.global_step
        if step == self.last_step or step % self.cfg.every_n_steps:
            return
        self.last_step = step
        pl_module.ema_shadow.copy_to_module()  # the EMA module holds the average as of this step
        cond = {key: self.batch[key].to(pl_module.device) for key in CONDITIONS}
        generated = pl_module.denormalize(
            pl_module.sample(cond, self.batch["motion"].shape[1], seed=self.cfg.seed)
        )
        if trainer.is_global_zero:
            truth = pl_module.denormalize(self.batch["motion"].to(pl_module.device))
            metrics = self.metrics(generated.float().cpu().numpy(), truth.float().cpu().numpy())
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)

    def metrics(self, generated: np.ndarray, truth: np.ndarray) -> dict[str, float]:
        """The `eval/` scalars of generated and ground-truth raw motion [B, T, 70] (module docstring)."""
        out = {"eval/lip_mae": float(np.abs(generated - truth)[..., list(LIP_DIMS)].mean())}
        audio = self.batch["audio"].float().numpy()
        emotions = self.batch["emotion"].numpy()
        for suffix, motion in (("", generated), ("_gt", truth)):
            out[f"eval/pose_spread{suffix}"] = float(np.mean([temporal_pose_spread(m) for m in motion]))
            jerks = [motion_jerk(m) for m in motion]
            for group in ("expression", "pose"):
                out[f"eval/motion_jerk_{group}{suffix}"] = float(np.mean([j[group] for j in jerks]))
            if self.alse is not None:
                scores = [self.alse.score_sync(m, a) for m, a in zip(motion, audio)]
                out[f"eval/motion_sync_c{suffix}"] = float(np.mean([s["confidence"] for s in scores]))
                out[f"eval/motion_sync_d{suffix}"] = float(np.mean([s["min_dist"] for s in scores]))
                out[f"eval/motion_offset_abs{suffix}"] = float(np.mean([abs(s["offset"]) for s in scores]))
            if self.emotion is not None and (emotions != NULL_EMOTION).any():
                accuracy = emotion_accuracy(emotions, self.emotion.predict(motion))["accuracy"]
                out[f"eval/emotion_accuracy{suffix}"] = accuracy
        return out
