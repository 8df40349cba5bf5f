"""Diversity, in the two meanings the literature uses, named apart (DESIGN §6).

- `temporal_pose_spread`: how much the head moves within one video: the standard deviation over time of pitch,
  yaw and roll (degrees, population std), averaged over the three angles; the benchmark value is the mean over
  videos. A frozen head scores 0.
- `sample_diversity`: how different several samples for the same audio + photo are: the mean over all pairs of
  samples of the per-frame Euclidean distance between their motion sequences (raw motion units), averaged over
  frames, separately for expression (63 dims) and pose (7 dims). A deterministic method scores 0.

Both take motion [T, 70] in the layout of moda_train.core.motion_layout: re-extracted from videos by the
perception layer's motion extractor (so any method's videos can be compared) or a method's own motion output.
The formulas live in `moda_train.metrics.motion`, which evaluation during training uses too.
"""

from __future__ import annotations

from moda_train.metrics.motion import sample_diversity, temporal_pose_spread

__all__ = ["sample_diversity", "temporal_pose_spread"]
