"""Motion-space formulas on motion [T, 70] in the layout of `moda_train.core.motion_layout` (raw units).

- `temporal_pose_spread`: how much the head moves within one sequence: the standard deviation over time of
  pitch, yaw and roll (degrees, population std), averaged over the three angles. A frozen head scores 0.
- `sample_diversity`: how different several samples for the same audio + photo are: the mean over all pairs of
  samples of the per-frame Euclidean distance between their motion sequences, averaged over frames, separately
  for expression (63 dims) and pose (7 dims). A deterministic method scores 0.
- `motion_jerk`: mean over frames of the Euclidean norm of the second temporal difference
  m[t+1] - 2 m[t] + m[t-1] (units per frame^2), separately for expression and pose; lower is smoother. A second
  difference, not a first one, so that a smoothly moving head is not penalised for moving.
- `mouth_opening`: the inner-lip gap per frame, lower inner lip minus upper inner lip (keypoints 17 and 12, y).
  In the `landmarks` backend these are FaceMesh landmarks 14 and 13 in the canonical face frame, relative to the
  reference frame (0 = as open as the reference frame); for motion of other backends the number has no meaning.
- `mouth_amplitude`: a generated mouth opening [T] against the ground truth's [T] of the same clip: the ratio of
  their standard deviations over time (population std; 1 = the same amplitude), the share of frames each has
  open (above the midpoint between the ground truth's 10th and 90th percentiles) and the Pearson correlation of
  the two (timing; amplitude does not change it).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from moda_train.core.motion_layout import EXPRESSION, MOTION_DIM, POSE, ROTATION

UPPER_INNER_LIP, LOWER_INNER_LIP = 12, 17  # keypoints; FaceMesh 13 and 14 in the `landmarks` backend


def _check(motion: np.ndarray, name: str = "motion", min_frames: int = 1) -> np.ndarray:
    motion = np.asarray(motion, np.float64)
    if motion.ndim != 2 or motion.shape[1] != MOTION_DIM or len(motion) < min_frames:
        raise ValueError(f"{name} must be [T >= {min_frames}, {MOTION_DIM}], got {motion.shape}")
    return motion


def temporal_pose_spread(motion: np.ndarray) -> float:
    """Mean over pitch/yaw/roll of the std over time (degrees) of one motion sequence [T, 70]."""
    return float(_check(motion)[:, ROTATION].std(axis=0).mean())


def sample_diversity(samples: list[np.ndarray]) -> dict[str, float]:
    """Mean pairwise per-frame distance between >= 2 samples [T, 70] (cut to the shortest), per group."""
    if len(samples) < 2:
        raise ValueError(f"sample diversity needs at least 2 samples, got {len(samples)}")
    samples = [_check(s, f"sample {i}") for i, s in enumerate(samples)]
    length = min(len(s) for s in samples)
    result = {}
    for name, dims in (("expression", EXPRESSION), ("pose", POSE)):
        pairs = [
            np.linalg.norm(a[:length, dims] - b[:length, dims], axis=1).mean() for a, b in combinations(samples, 2)
        ]
        result[name] = float(np.mean(pairs))
    return result


def motion_jerk(motion: np.ndarray) -> dict[str, float]:
    """Mean norm of the second temporal difference of motion [T >= 3, 70], per group (expression, pose)."""
    accel = np.diff(_check(motion, min_frames=3), n=2, axis=0)
    return {
        name: float(np.linalg.norm(accel[:, dims], axis=1).mean())
        for name, dims in (("expression", EXPRESSION), ("pose", POSE))
    }


def mouth_opening(motion: np.ndarray) -> np.ndarray:
    """Inner-lip gap per frame [T] of motion [T, 70]: lower inner lip minus upper inner lip, y (see above)."""
    motion = _check(motion)
    return motion[:, 3 * LOWER_INNER_LIP + 1] - motion[:, 3 * UPPER_INNER_LIP + 1]


def mouth_amplitude(opening: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Amplitude and timing of a mouth opening [T] against the ground truth's [T] (both cut to the shorter):
    `std`, `std_truth`, `std_ratio` (std / std_truth), `open_share`, `open_share_truth` and `timing_r`."""
    opening, truth = np.asarray(opening, np.float64).ravel(), np.asarray(truth, np.float64).ravel()
    length = min(len(opening), len(truth))
    if length < 2:
        raise ValueError(
            f"mouth amplitude needs >= 2 frames of both openings, got {len(opening)} and {len(truth)}"
        )
    opening, truth = opening[:length], truth[:length]
    if truth.std() == 0:
        raise ValueError("the ground-truth mouth opening does not move: its amplitude is no reference")
    low, high = np.percentile(truth, [10, 90])
    threshold = (low + high) / 2
    spread = np.sqrt(((opening - opening.mean()) ** 2).sum() * ((truth - truth.mean()) ** 2).sum())
    return {
        "std": float(opening.std()),
        "std_truth": float(truth.std()),
        "std_ratio": float(opening.std() / truth.std()),
        "open_share": float((opening > threshold).mean()),
        "open_share_truth": float((truth > threshold).mean()),
        "timing_r": float(((opening - opening.mean()) * (truth - truth.mean())).sum() / spread) if spread else 0.0,
    }
