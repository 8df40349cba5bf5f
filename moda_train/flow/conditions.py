"""Conditions as the network takes them, condition dropout for classifier-free guidance, and null conditions.

A condition dict holds `audio` [B, T, A], `identity` [B, I], `emotion` [B] int64, `prev_motion` [B, P, C] and
optionally `audio_null` [B] bool. A dropped audio sets `audio_null` (the network substitutes its null audio), a
dropped emotion becomes the null class, a dropped previous motion becomes zeros. Identity is never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from moda_train.flow.config import FlowConfig

CONDITION_KEYS = ("audio", "identity", "emotion", "prev_motion")


def select_conditions(batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The model's keyword arguments from a batch (extra keys such as `motion` or `key` are ignored)."""
    missing = [key for key in CONDITION_KEYS if key not in batch]
    if missing:
        raise KeyError(f"condition dict lacks {', '.join(missing)} (needs {', '.join(CONDITION_KEYS)})")
    cond = {key: batch[key] for key in CONDITION_KEYS}
    audio = cond["audio"]
    cond["audio_null"] = batch.get(
        "audio_null", torch.zeros(audio.shape[0], dtype=torch.bool, device=audio.device)
    )
    return cond


def drop_conditions(
    batch: Mapping[str, Tensor], cfg: FlowConfig, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """Drop audio, emotion and previous motion independently per sample with cfg's probabilities.

    Random numbers come from `generator` (on the conditions' device) or the global RNG.
    """
    cond = select_conditions(batch)
    B, device = cond["emotion"].shape[0], cond["emotion"].device
    u = torch.rand(3, B, generator=generator, device=device)
    drop_audio, drop_emotion, drop_prev = (
        u[0] < cfg.drop_audio,
        u[1] < cfg.drop_emotion,
        u[2] < cfg.drop_prev_motion,
    )
    cond["audio_null"] = cond["audio_null"] | drop_audio
    cond["emotion"] = cond["emotion"].masked_fill(drop_emotion, cfg.null_emotion)
    cond["prev_motion"] = cond["prev_motion"].masked_fill(drop_prev[:, None, None], 0.0)
    return cond


def null_conditions(
    cond: Mapping[str, Tensor], null_audio: bool, null_emotion: bool, null_emotion_id: int
) -> dict[str, Tensor]:
    """A copy of `cond` with the audio and/or the emotion replaced by their null versions for every sample."""
    out = select_conditions(cond)
    if null_audio:
        out["audio_null"] = torch.ones_like(out["audio_null"])
    if null_emotion:
        out["emotion"] = torch.full_like(out["emotion"], null_emotion_id)
    return out
