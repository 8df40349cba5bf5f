"""The ALSE plug-in loss for MMDiT training: a frozen sync expert scores the lips of the predicted clean motion.

For each sample of a batch, over every K-frame window of its T frames:
    cos_pred = ALSE(lips of x0_hat, audio)    cos_true = ALSE(lips of x0, audio)        (in [0, 1])
    sync     = mean over windows of -log cos_pred                                      (Wav2Lip's expert loss)
    gate     = 1 if (mean over windows of cos_true) > tau else 0                       ("adaptive")
    w(t)     = (1 - t) ** noise_power                                                  (1 when noise_power = 0)
    loss     = weight * sum(gate * w(t) * sync) / max(1, number of gated samples)
The gate keeps the expert from pushing lips where it cannot explain the real ones (off-screen speech, silence
with a moving mouth, a corpus it never saw): if it does not find the ground truth in sync, it is not trusted on
the prediction either. The (1 - t) weighting softens the term at high noise, where x0_hat is a blurry average and
a sync gradient mostly fights the flow loss. The expert is a plain attribute, not a submodule: it stays out of the
MMDiT's checkpoints, optimizer, EMA and DeepSpeed sharding, and follows the inputs' device on first use.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from moda_train.core.stats import MotionStats
from moda_train.lit.alse_module import load_expert
from moda_train.models.alse import ALSE, EPS


class ALSELoss:
    """`loss_fn(x0_hat, x0, audio, t) -> {"loss", "sync", "gate_fraction", "cos_pred", "cos_true"}`."""

    def __init__(
        self,
        expert: ALSE,
        weight: float,
        tau: float = 0.4,
        noise_power: float = 0.0,
        renormalize: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        problems = []
        if weight < 0:
            problems.append(f"ALSE loss weight must be >= 0, got {weight}")
        if not 0.0 <= tau <= 1.0:
            problems.append(f"ALSE tau is a cosine in [0, 1], got {tau}")
        if noise_power < 0:
            problems.append(f"ALSE noise_power must be >= 0, got {noise_power}")
        if problems:
            raise ValueError("; ".join(problems))
        self.expert = expert.eval().requires_grad_(False)
        self.weight, self.tau, self.noise_power = weight, tau, noise_power
        # (scale, shift): MMDiT-normalised motion * scale + shift = expert-normalised motion.
        self.renormalize = renormalize

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        weight: float,
        tau: float = 0.4,
        noise_power: float = 0.0,
        motion_stats: MotionStats | None = None,
    ) -> ALSELoss:
        """Load a trained expert (an ALSE Lightning checkpoint file) and freeze it.

        `motion_stats` are the statistics the MMDiT normalises with; when given and different from the expert's,
        motion is converted to the expert's normalisation before scoring. None means they are the same shards.
        """
        module = load_expert(path)
        renormalize = None
        if motion_stats is not None:
            mean, std = torch.as_tensor(motion_stats.mean), torch.as_tensor(motion_stats.std)
            if not (torch.equal(mean, module.motion_mean) and torch.equal(std, module.motion_std)):
                renormalize = (std / module.motion_std, (mean - module.motion_mean) / module.motion_std)
        return cls(module.expert, weight, tau, noise_power, renormalize)

    def _to_expert_space(self, motion: Tensor) -> Tensor:
        if self.renormalize is None:
            return motion
        scale, shift = (x.to(motion) for x in self.renormalize)
        return motion * scale + shift

    def __call__(self, x0_hat: Tensor, x0: Tensor, audio: Tensor, t: Tensor) -> dict[str, Tensor]:
        """x0_hat, x0: normalised motion [B, T, 70]; audio [B, T, A]; t [B] in [0, 1] (1 = noise)."""
        if x0_hat.shape != x0.shape:
            raise ValueError(f"ALSE loss: x0_hat {list(x0_hat.shape)} and x0 {list(x0.shape)} differ")
        if t.shape != x0.shape[:1]:
            raise ValueError(f"ALSE loss: t must be [B] = {list(x0.shape[:1])}, got {list(t.shape)}")
        self.expert.check_inputs(x0_hat, audio)
        self.expert.to(x0_hat.device)
        # The expert runs in float32 whatever the trainer's autocast: its cosines feed a log.
        with torch.autocast(device_type=x0_hat.device.type, enabled=False):
            x0_hat, x0, audio = (
                self._to_expert_space(x0_hat.float()),
                self._to_expert_space(x0.float()),
                audio.float(),
            )
            sound = self.expert.embed_audio(audio)
            cos_pred = (self.expert.embed_lips(x0_hat) * sound).sum(-1)  # [B, N]
            with torch.no_grad():
                cos_true = (self.expert.embed_lips(x0) * sound).sum(-1)  # [B, N]
            sync = -cos_pred.clamp(EPS, 1 - EPS).log().mean(-1)  # [B]
            gate = (cos_true.mean(-1) > self.tau).float()  # [B]
            weights = gate * (1 - t.float()).clamp(min=0) ** self.noise_power
            term = (weights * sync).sum() / gate.sum().clamp(min=1)
        return {
            "loss": self.weight * term,
            "sync": term.detach(),
            "gate_fraction": gate.mean(),
            "cos_pred": cos_pred.detach().mean(),
            "cos_true": cos_true.mean(),
        }
