"""The motion-extractor interface: RGB face crops in, 70-d motion per frame + identity keypoints out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from moda_train.core.motion_layout import MOTION_DIM, NUM_KEYPOINTS, motion_convention


@dataclass
class MotionSequence:
    """The motion of one clip, in the layout of `moda_train.core.motion_layout` (raw units, not normalised)."""

    motion: np.ndarray
    """float32 [T, 70]: expression (63), scale, tx, ty, tz, pitch, yaw, roll (degrees)."""
    identity: np.ndarray
    """float32 [63]: canonical keypoints of the reference frame (keypoint-major x, y, z)."""
    valid: np.ndarray
    """bool [T]: False where no face was found (that frame's motion is interpolated from its neighbours)."""

    def __post_init__(self) -> None:
        num_frames = len(self.motion)
        problems = []
        if self.motion.shape != (num_frames, MOTION_DIM):
            problems.append(f"motion must be [T, {MOTION_DIM}], got {self.motion.shape}")
        if self.identity.shape != (3 * NUM_KEYPOINTS,):
            problems.append(f"identity must be [{3 * NUM_KEYPOINTS}], got {self.identity.shape}")
        if self.valid.shape != (num_frames,):
            problems.append(f"valid must be [T={num_frames}], got {self.valid.shape}")
        if problems:
            raise ValueError("; ".join(problems))


class MotionExtractor(ABC):
    """Turns a clip of RGB face crops into a `MotionSequence`; the same frames always give the same output.

    `crop` (one of `core.motion_layout.CROP_CONVENTIONS`) says how the caller must cut the crops it passes;
    `expression` (one of `EXPRESSION_FRAMES` there) where the motion's expression offsets live. Together they
    are the backend's `convention`, recorded in shards and checked at training and generation time.
    """

    name: str
    version: str
    crop: str = "box"
    expression: str = "canonical"

    @property
    def convention(self) -> str:
        return motion_convention(self.crop, self.expression)

    @abstractmethod
    def extract(self, frames: np.ndarray, ref_index: int = 0) -> MotionSequence:
        """Motion of uint8 RGB crops [T, S, S, 3] (S = 256 in shards); identity comes from frame `ref_index`."""


def check_frames(frames: np.ndarray, ref_index: int) -> np.ndarray:
    """Validate a clip of square uint8 RGB crops and the reference index; return the frames as an array."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[1] != frames.shape[2]:
        raise ValueError(f"frames must be square uint8 RGB crops [T, S, S, 3], got {frames.dtype} {frames.shape}")
    if len(frames) == 0:
        raise ValueError("frames is empty: a clip needs at least one frame")
    if not 0 <= ref_index < len(frames):
        raise ValueError(f"ref_index {ref_index} is outside the clip's {len(frames)} frames")
    return frames
