"""Motion extractors: face crops -> MoDA's 70-d motion per frame + the reference frame's identity keypoints.

extractor = get_motion_extractor("landmarks")
sequence = extractor.extract(crops)     # uint8 [T, 256, 256, 3] -> MotionSequence(motion, identity, valid)
"""

from __future__ import annotations

import inspect
from typing import Any

from .base import MotionExtractor, MotionSequence
from .landmarks import LandmarksMotionExtractor, NoFaceError
from .liveportrait import LivePortraitMotionExtractor
from .pose import motion_to_image_keypoints

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
]


def get_motion_extractor(name: str, **options: Any) -> MotionExtractor:
    """Build a motion backend by name (`landmarks`, `liveportrait`); options go to its constructor."""
    if name not in MOTION_EXTRACTORS:
        raise ValueError(f"unknown motion backend {name!r}: choose one of {', '.join(MOTION_EXTRACTORS)}")
    cls = MOTION_EXTRACTORS[name]
    known = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for the {name!r} motion backend; it takes {sorted(known)}")
    return cls(**options)
