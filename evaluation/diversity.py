"""Diversity, in the two meanings the literature uses, named apart (DESIGN §6).

- `temporal_pose_spread`: how much the head moves within one video: the standard deviation over time of pitch,
  yaw and roll (degrees, population std), averaged over the three angles; the benchmark value is the mean over
  videos. A frozen head scores 0.
- `sample_diversity`: how different several samples for the same audio + photo are: the mean over all pairs of
  samples of the per-frame Euclidean distance between their motion sequences (raw motion units), averaged over
  frames, separately for expression (63 dims) and pose (7 dims). A deterministic method scores 0.

Both take motion [T, 70] in the layout of moda_train.core.motion_layout: re-extracted from videos by data_prep's
motion extractor (so any method's videos can be compared) or a method's own motion output.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from moda_train.core.motion_layout import EXPRESSION, MOTION_DIM, POSE, ROTATION


def _check(motion: np.ndarray, name: str = "motion") -> np.ndarray:
    motion = np.asarray(motion, np.float64)
    if motion.ndim != 2 or motion.shape[1] != MOTION_DIM:
        raise ValueError(f"{name} must be [T, {MOTION_DIM}], got {motion.shape}")
    return motion


def temporal_pose_spread(motion: np.ndarray) -> float:
    """Mean over pitch/yaw/roll of the std over time (degrees) of one motion sequence [T, 70]."""
    motion = _check(motion)
    return float(motion[:, ROTATION].std(axis=0).mean())


def sample_diversity(samples: list[np.ndarray]) -> dict[str, float]:
    """Mean pairwise per-frame distance between >= 2 samples [T, 70] (cut to the shortest), per group."""
    if len(samples) < 2:
        raise ValueError(f"sample diversity needs at least 2 samples, got {len(samples)}")
    samples = [_check(s, f"sample {i}") for i, s in enumerate(samples)]
    length = min(len(s) for s in samples)
    groups = {"expression": EXPRESSION, "pose": POSE}
    result = {}
    for name, dims in groups.items():
        pairs = [
            np.linalg.norm(a[:length, dims] - b[:length, dims], axis=1).mean() for a, b in combinations(samples, 2)
        ]
        result[name] = float(np.mean(pairs))
    return result
