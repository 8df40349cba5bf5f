"""Motion-space lip sync of any motion sequence with a trained ALSE: an offline Sync-C / Sync-D analogue.

Needs no external weights, only an ALSE checkpoint trained by this framework, so evaluation can score generated
motion before (or without) rendering it:

    scorer = ALSEScorer.from_checkpoint("runs/alse_tiny_cpu/checkpoints/last.ckpt")
    scorer.score_sync(motion, audio)   # motion [T, 70] in raw units, audio [T, A] or [T, L, D]
    -> {"offset": 0, "confidence": 0.41, "min_dist": 0.83, "mdist": [...31 values], "windows": 76}

The numbers follow syncnet_python's definitions (`moda_train.core.sync_offsets`) on ALSE's embeddings: confidence
= median - min of the mean distance over offsets -vshift..vshift, min_dist = that minimum, offset = the best
offset (positive: the mouth lags the audio). They live on ALSE's scale, not SyncNet's: compare them between
methods scored by the same ALSE checkpoint, never with pixel Sync-C/D values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from moda_train.core.sync_offsets import sync_from_embeddings
from moda_train.lit.alse_module import ALSELightningModule, load_expert


class ALSEScorer:
    """Wraps a trained, frozen ALSE and the motion statistics it was trained with."""

    def __init__(self, module: ALSELightningModule) -> None:
        self.module = module.eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> ALSEScorer:
        """Load an ALSE Lightning checkpoint file (see `moda_train.lit.alse_module.load_expert`)."""
        return cls(load_expert(path, device))

    @property
    def device(self) -> torch.device:
        return self.module.motion_mean.device

    @torch.inference_mode()
    def score_sync(
        self, motion: np.ndarray | torch.Tensor, audio: np.ndarray | torch.Tensor, normalized: bool = False
    ) -> dict:
        """Offset search on one clip: motion [T, 70] (raw units, or the expert's normalisation with
        normalized=True) against its audio features [T, A] or [T, L, D] (the backend the expert was trained on).

        Returns offset (frames), confidence (Sync-C analogue), min_dist (Sync-D analogue), mdist (mean distance
        per offset, from +vshift down to -vshift) and windows (how many K-frame windows were averaged).
        """
        motion = torch.as_tensor(np.asarray(motion), dtype=torch.float32, device=self.device)
        audio = torch.as_tensor(np.asarray(audio), dtype=torch.float32, device=self.device)
        if audio.ndim == 3:
            audio = audio.flatten(1)
        if motion.ndim != 2 or audio.ndim != 2:
            raise ValueError(
                f"score_sync takes one clip: motion [T, 70], audio [T, A]; got {list(motion.shape)}, "
                f"{list(audio.shape)}"
            )
        if not normalized:
            motion = (motion - self.module.motion_mean) / self.module.motion_std
        expert = self.module.expert
        expert.check_inputs(motion[None], audio[None])
        lips, sound = expert.embed_lips(motion[None])[0], expert.embed_audio(audio[None])[0]
        result = sync_from_embeddings(lips, sound, self.module.cfg.alse.vshift)
        return {
            "offset": result.offset,
            "confidence": result.sync_c,
            "min_dist": result.sync_d,
            "mdist": result.mdist,
            "windows": result.windows,
        }
