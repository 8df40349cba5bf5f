"""Motion extractors: face crops -> MoDA's 70-d motion per frame + the reference frame's identity keypoints.

extractor = get_motion_extractor("landmarks")
sequence = extractor.extract(crops)     # uint8 [T, 256, 256, 3] -> MotionSequence(motion, identity, valid)
"""

from __future__ import annotations

from typing import Any

from moda_train.perception.registry import build_backend

from .base import MotionExtractor, MotionSequence
from .landmarks import LandmarksMotionExtractor, NoFaceError
from .liveportrait import LivePortraitMotionExtractor
from .pose import motion_to_image_keypoints, motion_to_keypoints

MOTION_EXTRACTORS: dict[str, type[MotionExtractor]] = {
    "landmarks": LandmarksMotionExtractor,
    "liveportrait": LivePortraitMotionExtractor,
}

__all__ = [
    "MOTION_EXTRACTORS",
    "MotionExtractor",
    "MotionSequence",
    "NoFaceError",
    "get_motion_extractor",
    "motion_to_image_keypoints",
    "motion_to_keypoints",
]


def get_motion_extractor(name: str, **options: Any) -> MotionExtractor:
    """Build a motion backend by name (`landmarks`, `liveportrait`); options go to its constructor."""
    return build_backend("motion", MOTION_EXTRACTORS, name, options)
