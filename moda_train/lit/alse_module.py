"""The LightningModule that pre-trains ALSE, the motion-space lip-sync expert, on the MMDiT's own shards.

Batches are the shared data contract's windows (normalised motion [B, T, 70], audio [B, T, A]); every K-frame
window of every batch item is a positive with its aligned audio and a negative with shifted and other-clip audio
(`moda_train.models.alse.sync_loss`). Validation reports, on the fixed ground-truth validation windows:
  val/sync_acc     the aligned audio wins among the shifted candidates (chance 1 / (1 + 2 (max - min + 1)))
  val/sync_conf    Sync-C analogue: median - min of the mean embedding distance over offsets -vshift..vshift
  val/sync_dist    Sync-D analogue: the minimum of that curve
  val/offset_zero  fraction of windows whose best offset is 0 (the ground truth is in sync)
  val/offset_abs   mean |best offset| in frames
plus a TensorBoard figure of the mean distance curve.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import matplotlib

matplotlib.use("Agg")  # headless: figures go to TensorBoard, never to a screen
import matplotlib.pyplot as plt
import numpy as np
import torch
from typing_extensions import override

from moda_train.core.checkpoint import load_module
from moda_train.core.config_loader import config_from_dict
from moda_train.core.motion_layout import MOTION_DIM
from moda_train.core.stats import MotionStats
from moda_train.core.sync_offsets import SyncResult, sync_from_embeddings
from moda_train.experiment import ALSEExperiment
from moda_train.lit.guards import guard_loss
from moda_train.lit.optim import configure_adamw
from moda_train.lit.shard_record import ShardBackendsRecord
from moda_train.models.alse import ALSE, sync_accuracy, sync_loss


class ALSELightningModule(ShardBackendsRecord, L.LightningModule):
    """Holds `expert` and the motion statistics it was trained with (saved in every checkpoint).

    `config` is the resolved experiment as a plain dict (the checkpoint's hyper-parameters), so
    `load_expert(path)` rebuilds the expert from the checkpoint alone.
    """

    def __init__(self, config: dict[str, Any], stats: MotionStats | None = None) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.cfg: ALSEExperiment = config_from_dict(config, ALSEExperiment)
        if self.cfg.data.window_frames < self.cfg.alse.min_frames():
            raise ValueError(
                f"data.window_frames={self.cfg.data.window_frames} is too short for ALSE: need >= "
                f"{self.cfg.alse.min_frames()} (alse.window_frames + 2 * alse.max_shift)"
            )
        self.expert = ALSE(self.cfg.alse)
        self.record_shard_backends(stats, self.cfg.data)
        stats = stats or MotionStats.from_arrays([0.0] * MOTION_DIM, [1.0] * MOTION_DIM)
        self.register_buffer("motion_mean", torch.as_tensor(stats.mean))
        self.register_buffer("motion_std", torch.as_tensor(stats.std))

    def _shared_step(self, batch: dict, stage: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        motion, audio = batch["motion"], batch["audio"]
        self.expert.check_inputs(motion, audio)
        lips, sound = self.expert.embed_lips(motion), self.expert.embed_audio(audio)
        # Two windows of one clip in a batch are not negatives of each other at the same position.
        keys = batch["key"]
        other_ok = torch.tensor([a != b for a, b in zip(keys, keys[-1:] + keys[:-1])], device=motion.device)
        terms = sync_loss(lips, sound, self.cfg.alse, other_ok)
        terms["sync_acc"] = sync_accuracy(lips.detach(), sound.detach(), self.cfg.alse)
        self.log_dict(
            {f"{stage}/{name}": value for name, value in terms.items() if name != "loss"},
            prog_bar=False,
            on_step=stage == "train",
            on_epoch=stage != "train",
            batch_size=len(motion),
            sync_dist=stage != "train",
        )
        self.log(f"{stage}/loss", terms["loss"], prog_bar=True, batch_size=len(motion), sync_dist=stage != "train")
        return terms["loss"], lips, sound

    @override
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return guard_loss(self, self._shared_step(batch, "train")[0])

    @override
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        _, lips, sound = self._shared_step(batch, "val")
        results = [sync_from_embeddings(v, a, self.cfg.alse.vshift) for v, a in zip(lips, sound)]
        count = len(results)
        metrics = {
            "val/sync_conf": float(np.mean([r.sync_c for r in results])),
            "val/sync_dist": float(np.mean([r.sync_d for r in results])),
            "val/offset_zero": float(np.mean([r.offset == 0 for r in results])),
            "val/offset_abs": float(np.mean([abs(r.offset) for r in results])),
        }
        self.log_dict(metrics, on_epoch=True, batch_size=count, sync_dist=True)
        if batch_idx == 0:
            self._log_curve(results)

    def _log_curve(self, results: list[SyncResult]) -> None:
        """TensorBoard figure: mean embedding distance against offset, one line per validation window."""
        experiment = getattr(self.logger, "experiment", None)
        if self.global_rank != 0 or not hasattr(experiment, "add_figure"):
            return
        vshift = self.cfg.alse.vshift
        offsets = np.arange(vshift, -vshift - 1, -1)  # mdist[k] belongs to offset vshift - k
        figure, axis = plt.subplots(figsize=(6, 3.5))
        for index, result in enumerate(results[:8]):
            best = int(offsets[int(np.argmin(result.mdist))])
            axis.plot(offsets, result.mdist, alpha=0.7, label=f"window {index}: min at {best:+d}")
        axis.axvline(0, color="k", linewidth=0.8, linestyle=":", label="in sync (0)")
        axis.set(xlabel="offset (frames; + = mouth lags audio)", ylabel="mean embedding distance")
        axis.legend(fontsize=7, ncol=2)
        axis.set_title("ALSE offset search on ground-truth validation windows")
        figure.tight_layout()
        experiment.add_figure("val/sync_distance_curve", figure, global_step=self.global_step)
        plt.close(figure)

    @override
    def configure_optimizers(self) -> dict:
        return configure_adamw(self.expert.parameters(), self.cfg.optim, self.cfg.train.max_steps, self._trainer)


def load_expert(path: str | Path, map_location: str | torch.device = "cpu") -> ALSELightningModule:
    """A trained ALSE from its Lightning checkpoint file: eval mode, frozen, on `map_location`.

    Raises FileNotFoundError when the file is missing, and ValueError for a sharded DeepSpeed checkpoint folder
    (consolidate it first) or a checkpoint of another task.
    """
    return load_module(ALSELightningModule, path, "alse", map_location, frozen=True)
