"""Smoothness: how much a video accelerates from frame to frame (lower is smoother; jitter raises it).

- `motion_jerk`: mean over frames of the Euclidean norm of the second temporal difference of the motion,
  m[t+1] - 2 m[t] + m[t-1] (raw motion units per frame^2), separately for expression (63) and pose (7). On motion
  re-extracted from the video by the perception layer's extractor, or on a method's motion output directly.
- `frame_acceleration`: the same second difference on pixels: mean absolute value over pixels and frames, in
  0..255 grey levels; needs no extractor and sees flicker the motion parameters cannot (texture, background).

A second difference, not a first one, so that a smoothly moving head is not penalised for moving; the ground
truth's value is the natural reference (evaluate the ground truth as its own "generated" set to get it).
"""

from __future__ import annotations

import numpy as np

from moda_train.core.motion_layout import EXPRESSION, MOTION_DIM, POSE


def motion_jerk(motion: np.ndarray) -> dict[str, float]:
    """Mean norm of the second temporal difference of motion [T >= 3, 70], per group (expression, pose)."""
    motion = np.asarray(motion, np.float64)
    if motion.ndim != 2 or motion.shape[1] != MOTION_DIM or len(motion) < 3:
        raise ValueError(f"motion must be [T >= 3, {MOTION_DIM}], got {motion.shape}")
    accel = np.diff(motion, n=2, axis=0)
    return {
        name: float(np.linalg.norm(accel[:, dims], axis=1).mean())
        for name, dims in (("expression", EXPRESSION), ("pose", POSE))
    }


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
