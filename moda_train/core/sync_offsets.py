"""The SyncNet offset search (syncnet_python, DESIGN §6) on per-window embeddings of any sync expert.

Given one embedding per 5-frame (or K-frame) window for the mouth stream and for the audio stream, the audio
embeddings are zero-padded by `vshift` on both sides and, for every mouth window i, the Euclidean distance to the
audio windows at offsets -vshift..+vshift is taken:

    dists[i, k] = | video_i - audio_{i + k - vshift} |        (audio outside the clip is the zero vector)
    mdist[k]    = mean_i dists[i, k]
    Sync-D      = min(mdist)
    Sync-C      = median(mdist) - min(mdist)
    AV offset   = vshift - argmin(mdist)

A positive offset means the mouth lags the audio: mouth window i matches audio window i - offset. The same math
serves pixel SyncNet (evaluation) and the motion-space ALSE expert (training, validation, scoring), so it lives
here, in the training library, where both can import it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SyncResult:
    """One clip's sync scores and the mean distance per offset they come from."""

    offset: int
    """AV offset in frames (vshift - argmin); positive: the mouth lags the audio."""
    sync_c: float
    """Confidence: median(mdist) - min(mdist)."""
    sync_d: float
    """Distance at the best offset: min(mdist)."""
    mdist: list[float]
    """Mean distance per offset k = 0..2 vshift (offset vshift - k)."""
    windows: int
    """Windows the means are taken over."""


def sync_from_embeddings(video: torch.Tensor, audio: torch.Tensor, vshift: int = 15) -> SyncResult:
    """Offset search over -vshift..vshift on per-window embeddings video [N, D] and audio [N, D] (module doc)."""
    if video.ndim != 2 or video.shape != audio.shape or len(video) == 0:
        raise ValueError(f"need two non-empty [N, D] embeddings of equal shape, got {video.shape}, {audio.shape}")
    if vshift < 0:
        raise ValueError(f"vshift must be >= 0, got {vshift}")
    video, audio = video.double(), audio.double()
    padded = torch.nn.functional.pad(audio, (0, 0, vshift, vshift))  # [N + 2 vshift, D]
    windows = padded.unfold(0, 2 * vshift + 1, 1).permute(0, 2, 1)  # [N, 2 vshift + 1, D]
    dists = torch.linalg.vector_norm(video[:, None, :] - windows, dim=-1)
    mdist = dists.mean(dim=0)
    min_dist, argmin = torch.min(mdist, dim=0)
    # torch.median returns the lower of the two middle values, as syncnet_python does (31 offsets: no tie).
    return SyncResult(
        offset=int(vshift - argmin),
        sync_c=float(torch.median(mdist) - min_dist),
        sync_d=float(min_dist),
        mdist=mdist.tolist(),
        windows=len(video),
    )
