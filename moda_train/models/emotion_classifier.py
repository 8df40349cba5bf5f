"""A motion-space emotion classifier: normalised 70-d motion windows -> logits over the 8 emotions.

It is the judge of the emotion-accuracy metric (`moda_train.metrics.emotion`), trained by this framework on shards
with emotion labels (an `emotion` experiment, `moda_train.lit.emotion_module`). A temporal convolution stack over
the expression dimensions, averaged over time, then a linear head: emotion is a sustained expression (mouth
corners, brows), so a mean over the window is what decides, and any window length works at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from moda_train.core.motion_layout import EMOTIONS, EXPRESSION, MOTION_DIM


@dataclass
class EmotionClassifierConfig:
    hidden_size: int = 256
    """Channels of every convolution."""
    num_layers: int = 3
    """Temporal convolutions (GELU after each)."""
    kernel_size: int = 5
    """Frames each convolution sees (odd; 5 = 0.2 s at 25 fps)."""
    dropout: float = 0.1
    """Dropout before the linear head."""
    label_smoothing: float = 0.0
    """Label smoothing of the cross-entropy loss."""
    expression_only: bool = True
    """Classify from the 63 expression dimensions only. Head pose is left out by default because in talking-head
    corpora it identifies the speaker more than the emotion, and a classifier that keys on it would reward a
    generator for copying pose instead of acting the emotion."""

    def __post_init__(self) -> None:
        problems = []
        if self.hidden_size < 1 or self.num_layers < 1:
            problems.append("classifier.hidden_size and classifier.num_layers must be >= 1")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            problems.append(f"classifier.kernel_size={self.kernel_size} must be odd and >= 1")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.label_smoothing < 1.0:
            problems.append("classifier.dropout and classifier.label_smoothing must lie in [0, 1)")
        if problems:
            raise ValueError("; ".join(problems))


class EmotionClassifier(nn.Module):
    def __init__(self, cfg: EmotionClassifierConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dims = range(EXPRESSION.start, EXPRESSION.stop) if cfg.expression_only else range(MOTION_DIM)
        self.register_buffer("input_dims", torch.tensor(list(dims)), persistent=False)
        layers: list[nn.Module] = []
        width = len(dims)
        for _ in range(cfg.num_layers):
            layers += [nn.Conv1d(width, cfg.hidden_size, cfg.kernel_size, padding=cfg.kernel_size // 2), nn.GELU()]
            width = cfg.hidden_size
        self.encoder = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Dropout(cfg.dropout), nn.Linear(width, len(EMOTIONS)))

    def forward(self, motion: Tensor) -> Tensor:
        """Normalised motion [B, T, 70] (any T >= 1) -> logits [B, 8]."""
        if motion.ndim != 3 or motion.shape[-1] != MOTION_DIM:
            raise ValueError(f"emotion classifier: motion must be [B, T, {MOTION_DIM}], got {list(motion.shape)}")
        features = self.encoder(motion.index_select(-1, self.input_dims).transpose(1, 2))
        return self.head(features.mean(-1))
