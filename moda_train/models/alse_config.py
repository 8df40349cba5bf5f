"""Configuration of ALSE, the motion-space lip-sync expert (`moda_train.models.alse`).

MoDA published neither the expert's architecture nor its training recipe; every default here is our choice, and
the reason is given under each field.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ALSEConfig:
    audio_dim: int = 9216
    """Audio feature size per video frame, flattened (HuBERT-base 12 x 768 = 9216; log-mel 4 x 80 = 320)."""
    window_frames: int = 5
    """Frames one sync window spans, for both the lip and the audio stream (5 = 0.2 s, as SyncNet)."""
    hidden_size: int = 512
    """Width of both encoders."""
    embed_dim: int = 512
    """Size of the L2-normalised embeddings the two encoders produce."""
    min_shift: int = 2
    """Smallest time shift (frames) used as a negative. Lip motion is smooth, so a 1-frame shift is nearly in
    sync; calling it a negative would fight the positive (SyncNet also samples offsets well away from 0)."""
    max_shift: int = 15
    """Largest time shift (frames) used as a negative, and the candidate range of the sync-accuracy metric."""
    other_clip_negatives: bool = True
    """Also use the audio of another clip in the batch, at the same position, as a negative."""
    vshift: int = 15
    """Offset range -vshift..vshift of the Sync-C / Sync-D analogue (syncnet_python uses 15)."""

    def __post_init__(self) -> None:
        problems = []
        if self.audio_dim < 1 or self.hidden_size < 1 or self.embed_dim < 1:
            problems.append("alse.audio_dim, alse.hidden_size and alse.embed_dim must be >= 1")
        if self.window_frames < 1:
            problems.append("alse.window_frames must be >= 1")
        if not 1 <= self.min_shift <= self.max_shift:
            problems.append(
                f"alse.min_shift={self.min_shift}, alse.max_shift={self.max_shift}: need 1 <= min_shift <= "
                "max_shift"
            )
        if self.vshift < 1:
            problems.append("alse.vshift must be >= 1")
        if problems:
            raise ValueError("; ".join(problems))

    def min_frames(self) -> int:
        """Shortest window a training batch may have: one sync window plus shifts up to max_shift both ways."""
        return self.window_frames + 2 * self.max_shift
