"""The `liveportrait` motion backend: LivePortrait's motion extractor (implicit keypoints, expression, pose).

The checkpoint comes from a local path (the `path` option or the MODA_LIVEPORTRAIT_PATH environment variable):
LivePortrait's `motion_extractor.pth` (or the folder that holds it). Nothing is downloaded.

FIXME(data_prep): the network (ConvNeXt-V2 backbone; heads for 21 canonical keypoints, 63 expression deltas,
66-bin pitch/yaw/roll, scale and translation) arrives with the neural renderer work. Until then this backend
checks its weights and then refuses to run, saying so, rather than producing motion of another kind.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import MotionExtractor, MotionSequence

LIVEPORTRAIT_PATH_ENV = "MODA_LIVEPORTRAIT_PATH"
CHECKPOINT_NAME = "motion_extractor.pth"


def resolve_checkpoint(path: str | os.PathLike | None) -> Path:
    """The motion-extractor weights file from an option, a folder or the environment; a clear error if missing."""
    path = path or os.environ.get(LIVEPORTRAIT_PATH_ENV)
    if not path:
        raise FileNotFoundError(
            f"the liveportrait motion backend needs LivePortrait's {CHECKPOINT_NAME}: set the extractor's `path` "
            f"option or the {LIVEPORTRAIT_PATH_ENV} environment variable (nothing is downloaded)"
        )
    path = Path(path)
    candidate = path / CHECKPOINT_NAME if path.is_dir() else path
    if not candidate.is_file():
        raise FileNotFoundError(
            f"LivePortrait motion-extractor weights not found at {candidate} (set the `path` option or "
            f"{LIVEPORTRAIT_PATH_ENV} to {CHECKPOINT_NAME} or the folder holding it)"
        )
    return candidate


class LivePortraitMotionExtractor(MotionExtractor):
    """LivePortrait's motion extractor behind the common interface (weights required; see the module FIXME)."""

    name = "liveportrait"

    def __init__(self, path: str | os.PathLike | None = None, device: str = "cpu") -> None:
        self.checkpoint = resolve_checkpoint(path)
        self.device = device
        self.version = f"liveportrait:{self.checkpoint.name}"
        raise NotImplementedError(
            f"found LivePortrait weights at {self.checkpoint}, but the LivePortrait motion-extractor network is "
            "not implemented in this release; use the `landmarks` motion backend"
        )

    def extract(self, frames: np.ndarray, ref_index: int = 0) -> MotionSequence:
        raise NotImplementedError("the LivePortrait motion-extractor network is not implemented in this release")
