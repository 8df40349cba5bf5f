"""ALSE, the Adaptive Lip-motion Sync Expert: a SyncNet that works on motion parameters instead of pixels.

Two encoders map a short window (cfg.window_frames, 5 like SyncNet) of each stream to an embedding:
  lip encoder    the 18 lip dimensions (motion_layout.LIP_DIMS) of normalised motion  -> [E]
  audio encoder  the shard's per-frame audio features (flattened)                      -> [E]
Each encoder is fully convolutional over time: a per-frame MLP, one temporal convolution whose kernel is exactly
the window (so output n sees frames n..n+K-1 and nothing else), then a pointwise MLP. One pass over a [B, T]
sequence therefore yields the embeddings of all N = T - K + 1 windows, and every (lip window, audio window) pair
of a clip, at every shift, is one dot product away.

Embeddings are made non-negative (ReLU) and then L2-normalised, so the cosine similarity of a pair lies in [0, 1]
and is read directly as the probability that the pair is in sync (Wav2Lip's expert does the same).

Objective: SyncNet-style binary cross-entropy on that cosine, not InfoNCE. Reasons:
  * MoDA describes ALSE as SyncNet-style, and the plug-in gates on a fixed cosine threshold (tau = 0.4). A BCE
    expert is calibrated in absolute terms (cos near 1 means "in sync", near 0 "not"), so a fixed threshold means
    the same thing for every clip and batch. InfoNCE only ranks a positive against its batch's negatives; its
    cosines drift with temperature and batch make-up, and a fixed tau would not be meaningful.
  * The generator's loss is then plain -log cos(lips(x0_hat), audio), as in Wav2Lip, with no batch coupling.
Negatives: the same clip's audio shifted by min_shift..max_shift frames both ways (hard: same voice, same face,
only timing differs), and other clips' audio at the same position (easy: different content). Positives and
negatives are weighted equally, whatever their counts.

The audio encoder starts with a per-channel BatchNorm without affine parameters: shards carry no audio statistics,
and unlike a per-frame LayerNorm it keeps the loudness of each frame, the strongest lip cue in log-mel features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from moda_train.core.motion_layout import LIP_DIMS, MOTION_DIM
from moda_train.models.alse_config import ALSEConfig

EPS = 1e-6  # keeps log() finite where a cosine reaches exactly 0 or 1


class WindowEncoder(nn.Module):
    """Per-frame features [B, T, C] -> one non-negative, unit-norm embedding per K-frame window [B, T-K+1, E]."""

    def __init__(
        self, in_dim: int, hidden_size: int, embed_dim: int, window_frames: int, standardize: bool
    ) -> None:
        super().__init__()
        self.standardize = nn.BatchNorm1d(in_dim, affine=False) if standardize else nn.Identity()
        self.frame = nn.Sequential(nn.Linear(in_dim, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size))
        self.window = nn.Conv1d(hidden_size, hidden_size, kernel_size=window_frames)
        self.head = nn.Sequential(
            nn.GELU(), nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, embed_dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = rearrange(self.standardize(rearrange(x, "B T C -> B C T")), "B C T -> B T C")
        h = rearrange(self.frame(x), "B T C -> B C T")  # [B, hidden, T]
        h = rearrange(self.window(h), "B C N -> B N C")  # [B, N, hidden], N = T - K + 1
        return F.normalize(F.relu(self.head(h)), dim=-1)  # [B, N, E]


class ALSE(nn.Module):
    """The sync expert. Motion must be normalised (z-scored with the statistics it was trained with)."""

    def __init__(self, cfg: ALSEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("lip_dims", torch.tensor(LIP_DIMS), persistent=False)
        self.lip_encoder = WindowEncoder(len(LIP_DIMS), cfg.hidden_size, cfg.embed_dim, cfg.window_frames, False)
        self.audio_encoder = WindowEncoder(cfg.audio_dim, cfg.hidden_size, cfg.embed_dim, cfg.window_frames, True)

    def check_inputs(self, motion: Tensor, audio: Tensor) -> None:
        """Raise a ValueError naming the problem when motion [B, T, 70] and audio [B, T, A] do not fit."""
        K, A = self.cfg.window_frames, self.cfg.audio_dim
        if motion.ndim != 3 or motion.shape[-1] != MOTION_DIM:
            raise ValueError(f"ALSE: motion must be [B, T, {MOTION_DIM}], got {list(motion.shape)}")
        if audio.ndim != 3 or audio.shape[-1] != A:
            raise ValueError(f"ALSE: audio must be [B, T, {A}] (alse.audio_dim={A}), got {list(audio.shape)}")
        if motion.shape[:2] != audio.shape[:2]:
            raise ValueError(f"ALSE: motion {list(motion.shape)} and audio {list(audio.shape)} differ in [B, T]")
        if motion.shape[1] < K:
            raise ValueError(f"ALSE: {motion.shape[1]} frames is shorter than one window (alse.window_frames={K})")

    def embed_lips(self, motion: Tensor) -> Tensor:
        """Normalised motion [B, T, 70] -> lip embeddings of every window [B, T - K + 1, E]."""
        return self.lip_encoder(motion.index_select(-1, self.lip_dims))

    def embed_audio(self, audio: Tensor) -> Tensor:
        """Audio features [B, T, A] -> audio embeddings of every window [B, T - K + 1, E]."""
        return self.audio_encoder(audio)

    def forward(self, motion: Tensor, audio: Tensor) -> Tensor:
        """In-sync probability (cosine) of each aligned window pair: [B, T, 70], [B, T, A] -> [B, T - K + 1]."""
        self.check_inputs(motion, audio)
        return (self.embed_lips(motion) * self.embed_audio(audio)).sum(-1)


def shift_similarities(lips: Tensor, audio: Tensor) -> Tensor:
    """Cosine of every lip window with every audio window of the same clip: [B, N, E] x2 -> [B, N, N].

    Entry [b, i, j] pairs lip window i with audio window j, i.e. the audio shifted by j - i frames.
    """
    return torch.einsum("bie,bje->bij", lips, audio)


def _shift_grid(n: int, device: torch.device) -> Tensor:
    index = torch.arange(n, device=device)
    return index[None, :] - index[:, None]  # [N, N]: shift j - i


def sync_loss(lips: Tensor, audio: Tensor, cfg: ALSEConfig, other_clip_ok: Tensor | None = None) -> dict:
    """SyncNet-style BCE on cosine (module doc) over every window of a batch of clips.

    lips, audio: [B, N, E] embeddings of the same N windows. `other_clip_ok` [B] says whether batch item b may use
    item (b + 1) mod B as its other-clip negative (False when both are windows of the same clip); None = all may.
    Returns loss, the positive and negative BCE terms, and the mean cosine of positives and of negatives.
    """
    B, N, _ = lips.shape
    cos = shift_similarities(lips, audio).clamp(EPS, 1 - EPS)  # [B, N, N]
    shift = _shift_grid(N, lips.device).abs()
    positives = cos.diagonal(dim1=1, dim2=2)  # [B, N]
    negatives = cos[:, (shift >= cfg.min_shift) & (shift <= cfg.max_shift)]  # [B, M]
    if cfg.other_clip_negatives and B > 1:
        other = (lips * audio.roll(1, dims=0)).sum(-1).clamp(EPS, 1 - EPS)  # [B, N]
        if other_clip_ok is not None:
            other = other[other_clip_ok]
        negatives = torch.cat([negatives.flatten(), other.flatten()])
    if negatives.numel() == 0:
        raise ValueError(
            f"ALSE: no negatives in windows of {N + cfg.window_frames - 1} frames; use data.window_frames >= "
            f"{cfg.min_frames()} (alse.window_frames + 2 * alse.max_shift)"
        )
    positive_bce = -positives.log().mean()
    negative_bce = -(1 - negatives).log().mean()
    return {
        "loss": 0.5 * (positive_bce + negative_bce),
        "bce_positive": positive_bce,
        "bce_negative": negative_bce,
        "cos_positive": positives.mean(),
        "cos_negative": negatives.mean(),
    }


def sync_accuracy(lips: Tensor, audio: Tensor, cfg: ALSEConfig) -> Tensor:
    """Fraction of lip windows whose best-scoring audio window, among the candidates at shift 0 and at shifts
    min_shift..max_shift either way (the ones training tells apart), is the aligned one. Chance is
    1 / (1 + 2 (max_shift - min_shift + 1)). Only windows with every candidate inside the clip count."""
    N = lips.shape[1]
    if N < 2 * cfg.max_shift + 1:
        raise ValueError(f"ALSE: sync accuracy needs windows of at least {cfg.min_frames()} frames")
    cos = shift_similarities(lips, audio)  # [B, N, N]
    shifts = torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(cfg.min_shift, cfg.max_shift + 1)])
    shifts = torch.cat([shifts, -shifts[1:]]).to(lips.device)  # candidate 0 is the aligned one
    rows = torch.arange(cfg.max_shift, N - cfg.max_shift, device=lips.device)  # every candidate in range
    candidates = cos[:, rows[:, None], rows[:, None] + shifts[None, :]]  # [B, R, S]
    return (candidates.argmax(-1) == 0).float().mean()
