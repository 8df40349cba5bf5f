"""The geometry that ties motion [T, 70] to keypoints in the image (LivePortrait's convention).

Coordinates are crop-normalised: x to the right and y downward in [-1, 1] across the square crop, z away from the
camera in the same units. One frame's 21 keypoints in the image are

    image = scale * (identity + expression) @ R.T + (tx, ty, tz)        # [21, 3], rows are keypoints
    R     = Rz(roll) @ Ry(yaw) @ Rx(pitch)                              # angles in degrees

which is LivePortrait's `get_rotation_matrix` composition, with the expression in the canonical frame
(`expression="canonical"`: the lip dimensions mean lip shape whatever the head pose; the `landmarks` backend's).
LivePortrait itself, and MoDA's released model, add the expression after the rotation (`expression="native"`):

    image = scale * (identity @ R.T + expression) + (tx, ty, tz)

tz is kept at 0 as in MoDA; it does not affect the projected x, y.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from moda_train.core.motion_layout import (
    EXPRESSION,
    EXPRESSION_FRAMES,
    MOTION_DIM,
    NUM_KEYPOINTS,
    ROTATION,
    SCALE,
    TRANSLATION,
)


def rotation_matrix(angles: np.ndarray) -> np.ndarray:
    """Rotation matrices [..., 3, 3] from (pitch, yaw, roll) degrees [..., 3]: R = Rz(roll) Ry(yaw) Rx(pitch)."""
    angles = np.asarray(angles, dtype=np.float64)
    # scipy's lower-case "xyz" is extrinsic: rotate about x, then the fixed y, then the fixed z = Rz @ Ry @ Rx.
    flat = Rotation.from_euler("xyz", angles.reshape(-1, 3), degrees=True).as_matrix()
    return flat.reshape(*angles.shape[:-1], 3, 3)


def rotation_angles(matrices: np.ndarray) -> np.ndarray:
    """(pitch, yaw, roll) in degrees [..., 3] of rotation matrices [..., 3, 3]; inverse of `rotation_matrix`."""
    matrices = np.asarray(matrices, dtype=np.float64)
    flat = Rotation.from_matrix(matrices.reshape(-1, 3, 3)).as_euler("xyz", degrees=True)
    return flat.reshape(*matrices.shape[:-2], 3)


def motion_to_image_keypoints(
    motion: np.ndarray, identity: np.ndarray, crop_size: int = 256, expression: str = "canonical"
) -> np.ndarray:
    """Pixel positions [T, 21, 2] in the crop of the keypoints that `motion` [T, 70] drives for `identity` [63]."""
    return normalised_to_pixels(motion_to_keypoints(motion, identity, expression)[..., :2], crop_size)


def motion_to_keypoints(motion: np.ndarray, identity: np.ndarray, expression: str = "canonical") -> np.ndarray:
    """Crop-normalised 3-D positions [T, 21, 3] of the keypoints that `motion` [T, 70] drives for `identity` [63]
    (the module docstring's formulas, by `expression` frame; what LivePortrait's warping network takes as
    driving keypoints)."""
    motion = np.asarray(motion, dtype=np.float64)
    identity = np.asarray(identity, dtype=np.float64)
    if motion.ndim != 2 or motion.shape[1] != MOTION_DIM:
        raise ValueError(f"motion must be [T, {MOTION_DIM}], got {motion.shape}")
    if identity.shape != (3 * NUM_KEYPOINTS,):
        raise ValueError(f"identity must be [{3 * NUM_KEYPOINTS}], got {identity.shape}")
    if expression not in EXPRESSION_FRAMES:
        raise ValueError(f"expression={expression!r}: choose one of {', '.join(EXPRESSION_FRAMES)}")
    offsets = motion[:, EXPRESSION].reshape(-1, NUM_KEYPOINTS, 3)
    rotation = rotation_matrix(motion[:, ROTATION]).transpose(0, 2, 1)
    if expression == "canonical":
        placed = (identity.reshape(NUM_KEYPOINTS, 3) + offsets) @ rotation
    else:
        placed = identity.reshape(NUM_KEYPOINTS, 3) @ rotation + offsets
    return motion[:, SCALE, None] * placed + motion[:, None, TRANSLATION]


def pixels_to_normalised(points: np.ndarray, crop_size: int) -> np.ndarray:
    """Crop pixels (x, y from the top-left corner) -> crop-normalised [-1, 1] coordinates."""
    return np.asarray(points, dtype=np.float64) * (2.0 / crop_size) - 1.0


def normalised_to_pixels(points: np.ndarray, crop_size: int) -> np.ndarray:
    """Crop-normalised [-1, 1] coordinates -> crop pixels; inverse of `pixels_to_normalised`."""
    return (np.asarray(points, dtype=np.float64) + 1.0) * (crop_size / 2.0)
