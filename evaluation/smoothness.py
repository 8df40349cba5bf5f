"""Smoothness: how much a video accelerates from frame to frame (lower is smoother; jitter raises it).

- `motion_jerk`: mean over frames of the Euclidean norm of the second temporal difference of the motion,
  m[t+1] - 2 m[t] + m[t-1] (raw motion units per frame^2), separately for expression (63) and pose (7). On motion
  re-extracted from the video by the perception layer's extractor, or on a method's motion output directly.
- `frame_acceleration`: the same second difference on pixels: mean absolute value over pixels and frames, in
  0..255 grey levels; needs no extractor and sees flicker the motion parameters cannot (texture, background).

A second difference, not a first one, so that a smoothly moving head is not penalised for moving; the ground
truth's value is the natural reference (evaluate the ground truth as its own "generated" set to get it).
`motion_jerk`'s formula lives in `moda_train.metrics.motion`, which evaluation during training uses too.
"""

from __future__ import annotations

import numpy as np

from moda_train.metrics.motion import motion_jerk

__all__ = ["frame_acceleration", "motion_jerk"]


def frame_acceleration(frames: np.ndarray) -> float:
    """Mean |f[t+1] - 2 f[t] + f[t-1]| over the pixels of uint8 frames [T >= 3, H, W, C]."""
    if frames.ndim != 4 or len(frames) < 3:
        raise ValueError(f"frames must be [T >= 3, H, W, C], got {frames.shape}")
    total = 0.0
    # Frame by frame in int16, so a long video never needs a float copy of all its frames.
    for t in range(1, len(frames) - 1):
        accel = frames[t + 1].astype(np.int16) - 2 * frames[t].astype(np.int16) + frames[t - 1].astype(np.int16)
        total += float(np.abs(accel).mean())
    return total / (len(frames) - 2)
