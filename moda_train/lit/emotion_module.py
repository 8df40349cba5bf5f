"""The LightningModule that trains the motion-space emotion classifier (`moda_train.models.emotion_classifier`).

Batches are the shared data contract's windows (normalised motion [B, T, 70] and the clip's `emotion.cls`); windows
of clips with unknown emotion (class 8) are left out of the loss and the accuracy. Logged: train/loss, train/acc,
val/loss, val/acc (val/acc on the fixed validation windows with a known emotion; chance is 1/8 for balanced
classes). No EMA copy: the classifier is small and its best checkpoint is chosen by val/loss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from typing_extensions import override

from moda_train.core.checkpoint import load_module
from moda_train.core.config_loader import config_from_dict
from moda_train.core.motion_layout import MOTION_DIM, NULL_EMOTION
from moda_train.core.stats import MotionStats
from moda_train.experiment import EmotionExperiment
from moda_train.lit.guards import guard_loss
from moda_train.lit.optim import configure_adamw
from moda_train.lit.shard_record import ShardBackendsRecord
from moda_train.models.emotion_classifier import EmotionClassifier


class EmotionLightningModule(ShardBackendsRecord, L.LightningModule):
    """Holds `classifier` and the motion statistics it was trained with (saved in every checkpoint, so raw motion
    from anywhere is normalised the same way before it is classified)."""

    def __init__(self, config: dict[str, Any], stats: MotionStats | None = None) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.cfg: EmotionExperiment = config_from_dict(config, EmotionExperiment)
        self.classifier = EmotionClassifier(self.cfg.classifier)
        self.record_shard_backends(stats, self.cfg.data)
        stats = stats or MotionStats.from_arrays([0.0] * MOTION_DIM, [1.0] * MOTION_DIM)
        self.register_buffer("motion_mean", torch.as_tensor(stats.mean))
        self.register_buffer("motion_std", torch.as_tensor(stats.std))

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        labels = batch["emotion"]
        known = labels < NULL_EMOTION
        logits = self.classifier(batch["motion"])
        count = int(known.sum())
        if count:
            loss = F.cross_entropy(
                logits[known], labels[known], label_smoothing=self.cfg.classifier.label_smoothing
            )
            accuracy = (logits[known].argmax(-1) == labels[known]).float().mean()
        else:  # a batch of unlabelled windows only: nothing to learn, but every rank must still step
            loss, accuracy = logits.sum() * 0.0, torch.zeros((), device=logits.device)
        on_step, sync = stage == "train", stage != "train"
        options = {"on_step": on_step, "on_epoch": not on_step, "batch_size": max(count, 1), "sync_dist": sync}
        self.log(f"{stage}/loss", loss, prog_bar=True, **options)
        self.log(f"{stage}/acc", accuracy, **options)
        return loss

    @override
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return guard_loss(self, self._shared_step(batch, "train"))

    @override
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    @override
    def configure_optimizers(self) -> dict:
        return configure_adamw(
            self.classifier.parameters(), self.cfg.optim, self.cfg.train.max_steps, self._trainer
        )

    @torch.inference_mode()
    def probabilities(self, motion: torch.Tensor | np.ndarray, normalized: bool = False) -> torch.Tensor:
        """Class probabilities [B, 8] of motion [B, T, 70] (or one sequence [T, 70] -> [1, 8]), raw units unless
        `normalized` (then in this classifier's own normalisation). The whole sequence is classified at once:
        the features are averaged over all its frames."""
        motion = torch.as_tensor(np.asarray(motion) if not torch.is_tensor(motion) else motion)
        motion = motion.to(self.motion_mean.device, torch.float32)
        if motion.ndim == 2:
            motion = motion[None]
        if not normalized:
            motion = (motion - self.motion_mean) / self.motion_std
        return self.classifier(motion).softmax(-1)

    def predict(self, motion: torch.Tensor | np.ndarray, normalized: bool = False) -> list[int]:
        """The most likely emotion class of each sequence (see `probabilities`)."""
        return self.probabilities(motion, normalized).argmax(-1).tolist()


def load_classifier(path: str | Path, map_location: str | torch.device = "cpu") -> EmotionLightningModule:
    """A trained emotion classifier from its Lightning checkpoint file: eval mode, frozen, on `map_location`.

    Raises FileNotFoundError when the file is missing, and ValueError for a sharded DeepSpeed checkpoint folder
    (consolidate it first) or a checkpoint of another task.
    """
    return load_module(EmotionLightningModule, path, "emotion", map_location, frozen=True)
