"""Motion normalisation statistics: per-dimension mean and std of raw motion over the training split.

Moments are merged with Chan et al.'s parallel formula in float64, so statistics of Slurm array tasks (or of any
partition of the clips) combine into exactly what one pass over all clips gives. stats.json stores the
population std (ddof 0); together with num_frames that is all a merge needs. A dimension that never varies (tz,
which MoDA keeps at 0) has std 0 here: flooring it is the normaliser's job, so the file states the data as is.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moda_train.core.motion_layout import MOTION_DIM
from moda_train.core.sample import MOTION, decode_npy


@dataclass
class Moments:
    """Running count, mean and sum of squared deviations per dimension."""

    count: int = 0
    clips: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None

    def add(self, motion: np.ndarray) -> Moments:
        """Fold in one clip's motion [T, D]."""
        motion = np.asarray(motion, dtype=np.float64)
        mean = motion.mean(axis=0)
        other = Moments(len(motion), 1, mean, ((motion - mean) ** 2).sum(axis=0))
        return self.merge(other)

    def merge(self, other: Moments) -> Moments:
        """Moments of the union of both sets."""
        if other.count == 0:
            return Moments(self.count, self.clips + other.clips, self.mean, self.m2)
        if self.count == 0:
            return Moments(other.count, self.clips + other.clips, other.mean, other.m2)
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / count
        m2 = self.m2 + other.m2 + delta**2 * self.count * other.count / count
        return Moments(count, self.clips + other.clips, mean, m2)

    def std(self) -> np.ndarray:
        """Population standard deviation per dimension."""
        return np.sqrt(self.m2 / self.count)


def shard_moments(shards: Iterable[Path]) -> Moments:
    """Moments of every `motion.npy` in the given shards (read with tarfile: other members are skipped)."""
    moments = Moments()
    for shard in shards:
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith("." + MOTION):
                    motion = decode_npy(tar.extractfile(member).read())
                    if motion.ndim != 2 or motion.shape[1] != MOTION_DIM:
                        raise ValueError(f"{shard}:{member.name}: motion has shape {motion.shape}, not [T, 70]")
                    moments = moments.add(motion)
    return moments


def stats_dict(moments: Moments, motion_backend: dict, audio_backend: dict, audio_frame_shape: list[int]) -> dict:
    """The stats.json content (contract in docs/CONTRACTS.md); mean/std are null when no training frame exists."""
    empty = moments.count == 0
    return {
        "mean": None if empty else moments.mean.tolist(),
        "std": None if empty else moments.std().tolist(),
        "num_frames": moments.count,
        "num_clips": moments.clips,
        "motion_backend": motion_backend,
        "audio_backend": audio_backend,
        "audio_frame_shape": list(audio_frame_shape),
    }


def moments_from_stats(stats: dict) -> Moments:
    """Recover mergeable moments from a stats.json dict."""
    if not stats["num_frames"]:
        return Moments(0, stats.get("num_clips", 0))
    mean = np.asarray(stats["mean"], dtype=np.float64)
    std = np.asarray(stats["std"], dtype=np.float64)
    return Moments(stats["num_frames"], stats["num_clips"], mean, std**2 * stats["num_frames"])


def merge_stats(stats_list: list[dict]) -> dict:
    """Merge stats.json dicts of several tasks; their backends must agree."""
    if not stats_list:
        raise ValueError("no statistics to merge")
    first = stats_list[0]
    for other in stats_list[1:]:
        for field in ("motion_backend", "audio_backend", "audio_frame_shape"):
            if other[field] != first[field]:
                raise ValueError(
                    f"cannot merge statistics made with different {field}: {first[field]} vs {other[field]}"
                )
    moments = Moments()
    for stats in stats_list:
        moments = moments.merge(moments_from_stats(stats))
    return stats_dict(moments, first["motion_backend"], first["audio_backend"], first["audio_frame_shape"])
