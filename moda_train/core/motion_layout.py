"""The 70 numbers that describe one frame of motion (MoDA's joint parameter space).

This is the only place these indices are written down; every other module imports them from here.

    [0:63]   expression: offsets of 21 implicit 3-D keypoints, keypoint-major (k0.x, k0.y, k0.z, k1.x, ...)
    [63]     scale
    [64:67]  translation tx, ty, tz (tz is kept at 0, as in MoDA)
    [67:70]  rotation pitch, yaw, roll in degrees

"Pose" is scale + translation + rotation (7 numbers). The lip dimensions are the x, y, z of keypoints
6, 12, 14, 17, 19 and 20, which in the `landmarks` motion backend are lip landmarks too (see data_prep).
"""

from __future__ import annotations

NUM_KEYPOINTS = 21
EXPRESSION = slice(0, 3 * NUM_KEYPOINTS)
SCALE = slice(63, 64)
TRANSLATION = slice(64, 67)
ROTATION = slice(67, 70)
POSE = slice(63, 70)
MOTION_DIM = 70

LIP_KEYPOINTS = (6, 12, 14, 17, 19, 20)
LIP_DIMS: tuple[int, ...] = tuple(3 * k + axis for k in LIP_KEYPOINTS for axis in range(3))

ROTATION_NAMES = ("pitch", "yaw", "roll")
EMOTIONS = ("anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
NULL_EMOTION = len(EMOTIONS)  # class 8: unknown emotion, also the "dropped" label for guidance

# How a motion backend's numbers relate to the face (recorded in shards and checkpoints, checked when a run starts
# and at generation; `perception.motion.base.MotionExtractor.convention`):
CROP_CONVENTIONS = ("box", "liveportrait")
"""How the face crops are cut: `box`, the framework's centred square around the detected face; `liveportrait`,
LivePortrait's rotation-aligned crop from face landmarks."""
EXPRESSION_FRAMES = ("canonical", "native")
"""Where the expression offsets live: before the head rotation (canonical) or after it (native, LivePortrait's)."""


def motion_convention(crop: str, expression: str) -> str:
    """The convention string shards and checkpoints record, e.g. `liveportrait-crop,native-expression`."""
    return f"{crop}-crop,{expression}-expression"


RELEASED_MOTION_CONVENTION = motion_convention("liveportrait", "native")
"""The convention of the motion MoDA's released model was trained on (docs/official_weights.md)."""


def group_indices() -> dict[str, list[int]]:
    """Indices of each loss/metric group: expression (63), pose (7) and lip (18, a subset of expression)."""
    return {
        "expression": list(range(EXPRESSION.start, EXPRESSION.stop)),
        "pose": list(range(POSE.start, POSE.stop)),
        "lip": list(LIP_DIMS),
    }


def emotion_index(name_or_index: str | int) -> int:
    """Map an emotion name (any case) or index to its class id; raise a ValueError naming the valid choices."""
    if isinstance(name_or_index, int) or str(name_or_index).isdigit():
        index = int(name_or_index)
        if 0 <= index <= NULL_EMOTION:
            return index
    elif str(name_or_index).lower() in EMOTIONS:
        return EMOTIONS.index(str(name_or_index).lower())
    raise ValueError(
        f"unknown emotion {name_or_index!r}: use one of {', '.join(EMOTIONS)} or an index 0..{NULL_EMOTION}"
    )
