"""The `landmarks` motion backend: mediapipe FaceMesh landmarks -> the 70-d MoDA motion layout, offline.

Per clip:
1. FaceMesh (468 3-D landmarks, the model ships inside the mediapipe wheel) runs in tracking mode over the crops.
2. Canonical face = the reference frame's landmarks, frontalised: centred on the rigid landmarks (forehead,
   temples, nose, eye corners: parts that do not move with expression), rotated into a face frame (x from the
   subject's right to left, averaged over symmetric landmark pairs; y down the face from the nose bridge to the
   nose base, made orthogonal to x; z = x cross y, away from the camera), and scaled so the rigid landmarks have
   an RMS distance of 1 from their centre. mediapipe 0.10's wheel does not include its canonical face model
   file, and a speaker's own face is the better neutral shape for expression offsets anyway.
3. Each frame: a similarity transform (Umeyama: scipy's Kabsch rotation + least-squares scale) from the canonical
   rigid landmarks to the frame's rigid landmarks gives rotation (pitch, yaw, roll in degrees), scale and
   translation (tx, ty in crop-normalised units; tz = 0). The 21 keypoints, mapped back into the canonical frame,
   minus the reference frame's (the identity) are the expression.

Keypoint table (keypoint: mediapipe landmark; "right" is the subject's right, the left side of the image). The
keypoints at `moda_train.core.motion_layout.LIP_KEYPOINTS` (6, 12, 14, 17, 19, 20) are lip landmarks:

     0: 168 nose bridge           7: 374 left lower eyelid     14:  61 right mouth corner (lip)
     1:  33 right eye, outer      8: 105 right brow            15: 172 right jaw angle
     2: 263 left eye, outer       9: 334 left brow             16: 397 left jaw angle
     3: 159 right upper eyelid   10:   1 nose tip              17:  14 lower inner lip, centre (lip)
     4: 145 right lower eyelid   11: 234 right cheek/temple    18: 152 chin
     5: 386 left upper eyelid    12:  13 upper inner lip (lip) 19: 291 left mouth corner (lip)
     6:   0 upper outer lip (lip) 13: 454 left cheek/temple    20:  17 lower outer lip, centre (lip)
"""

from __future__ import annotations

import numpy as np

from moda_train.core.motion_layout import EXPRESSION, MOTION_DIM, ROTATION, SCALE, TRANSLATION
from moda_train.perception.mediapipe_runtime import import_mediapipe, quiet_mediapipe

from .base import MotionExtractor, MotionSequence, check_frames
from .pose import pixels_to_normalised, rotation_angles

KEYPOINT_LANDMARKS = (
    168,
    33,
    263,
    159,
    145,
    386,
    0,
    374,
    105,
    334,
    1,
    234,
    13,
    454,
    61,
    172,
    397,
    14,
    152,
    291,
    17,
)
"""mediapipe FaceMesh landmark index of each of the 21 keypoints (see the table above)."""
INNER_LIP_KEYPOINTS = ((14, 12, 19), (14, 17, 19))
"""Upper and lower inner-lip chains over the keypoints, corner to corner (for `perception.face_warp`)."""
RIGID_LANDMARKS = (
    # forehead and temples along the upper face oval
    10, 338, 297, 332, 284, 251, 389, 356, 454, 109, 67, 103, 54, 21, 162, 127, 234, 151, 9, 8,
    # nose bridge and tip
    168, 6, 197, 195, 5, 4, 1,
    # eye corners
    33, 133, 263, 362,
)  # fmt: skip
"""Landmarks that move with the head but (almost) not with expression: the similarity fit uses only these."""
SYMMETRIC_PAIRS = ((33, 263), (133, 362), (234, 454), (127, 356), (162, 389), (21, 251), (54, 284), (103, 332))
"""(subject's right, subject's left) landmark pairs that define the face's x axis."""
NOSE_BRIDGE, NOSE_BASE = 168, 2
"""The face's y axis runs from the nose bridge (between the eyes) to the nose base: both rigid, and the line is
close to vertical in a frontal face (a frontal photo reads pitch ~ 0)."""


class NoFaceError(ValueError):
    """No face was found in any frame of a clip."""


def _fit_similarity(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame, scale s [V], rotation R [V, 3, 3] and translation t [V, 3] with
    target[v] ~ s[v] * source @ R[v].T + t[v] (least squares, Umeyama), for source [N, 3] and target [V, N, 3].
    All frames at once: a batched 3 x 3 SVD instead of one fit per frame (about 7x less CPU time)."""
    source_mean, target_mean = source.mean(0), target.mean(1)
    source_c, target_c = source - source_mean, target - target_mean[:, None]
    cross = np.einsum("nj,vnk->vkj", source_c, target_c)  # sum over points of target_c source_c^T
    u, _, vt = np.linalg.svd(cross)
    # Flip the last axis where the best orthogonal fit is a reflection: a rotation is wanted.
    flip = np.sign(np.linalg.det(u @ vt))
    u[:, :, 2] *= flip[:, None]
    matrix = u @ vt
    rotated = np.einsum("nj,vkj->vnk", source_c, matrix)
    scale = (target_c * rotated).sum((1, 2)) / (source_c**2).sum()
    return scale, matrix, target_mean - scale[:, None] * np.einsum("j,vkj->vk", source_mean, matrix)


def canonical_face(reference: np.ndarray) -> np.ndarray:
    """Frontalised, centred, unit-size copy [468, 3] of one frame's landmarks (crop-normalised units)."""
    right, left = (np.array(side) for side in zip(*SYMMETRIC_PAIRS, strict=True))
    x_axis = (reference[left] - reference[right]).mean(0)
    x_axis /= np.linalg.norm(x_axis)
    y_axis = reference[NOSE_BASE] - reference[NOSE_BRIDGE]
    y_axis -= y_axis.dot(x_axis) * x_axis
    y_axis /= np.linalg.norm(y_axis)
    face_frame = np.stack([x_axis, y_axis, np.cross(x_axis, y_axis)], axis=1)  # canonical axes as columns
    rigid = reference[list(RIGID_LANDMARKS)]
    centred = (reference - rigid.mean(0)) @ face_frame
    return centred / np.sqrt((centred[list(RIGID_LANDMARKS)] ** 2).sum(1).mean())


class LandmarksMotionExtractor(MotionExtractor):
    """mediapipe FaceMesh + similarity fit to the reference frame's frontalised face (see the module docstring)."""

    name = "landmarks"

    def __init__(self, min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5) -> None:
        mp = import_mediapipe("the landmarks motion backend")
        self.min_detection_confidence = min_detection_confidence
        self.min_tracking_confidence = min_tracking_confidence
        self.version = f"mediapipe-{mp.__version__}:facemesh468:kp21-v1"

    def detect(self, frames: np.ndarray) -> np.ndarray:
        """FaceMesh landmarks of each frame, tracking through the clip: float64 [T, 468, 3] crop-normalised
        coordinates (see `pose`), NaN where no face was found."""
        # not kept on self: extractors must pickle
        FaceMesh = import_mediapipe("the landmarks motion backend").solutions.face_mesh.FaceMesh  # noqa: N806

        frames = check_frames(frames, 0)
        size = frames.shape[1]
        landmarks = np.full((len(frames), 468, 3), np.nan)
        # A fresh tracker per clip: results depend only on this clip's frames (deterministic, order-free across
        # clips).
        with (
            quiet_mediapipe(),
            FaceMesh(
                static_image_mode=False,
                max_num_faces=1,
                refine_landmarks=False,
                min_detection_confidence=self.min_detection_confidence,
                min_tracking_confidence=self.min_tracking_confidence,
            ) as mesh,
        ):
            for index, frame in enumerate(frames):
                result = mesh.process(np.ascontiguousarray(frame))
                if result.multi_face_landmarks:
                    points = result.multi_face_landmarks[0].landmark
                    xyz = np.array([(p.x, p.y, p.z) for p in points[:468]])
                    # mediapipe gives x, y as fractions of the width/height and z in width units.
                    landmarks[index] = pixels_to_normalised(xyz * size, size)
                    landmarks[index, :, 2] = xyz[:, 2] * 2.0
        return landmarks

    def extract(self, frames: np.ndarray, ref_index: int = 0) -> MotionSequence:
        frames = check_frames(frames, ref_index)
        return self.motion_from_landmarks(self.detect(frames), ref_index)

    def motion_from_landmarks(self, landmarks: np.ndarray, ref_index: int = 0) -> MotionSequence:
        """Motion of detected landmarks [T, 468, 3] (NaN rows = no face); see the module docstring."""
        valid = ~np.isnan(landmarks).any(axis=(1, 2))
        if not valid.any():
            raise NoFaceError(f"no face found in any of the {len(landmarks)} frames")
        valid_indices = np.flatnonzero(valid)
        # A reference frame without a face borrows the nearest frame that has one.
        ref = int(valid_indices[np.argmin(np.abs(valid_indices - ref_index))])
        canonical = canonical_face(landmarks[ref])
        rigid, keypoints = list(RIGID_LANDMARKS), list(KEYPOINT_LANDMARKS)
        identity = canonical[keypoints].reshape(-1)

        motion = np.zeros((len(landmarks), MOTION_DIM))
        found = landmarks[valid_indices]
        scale, rot, shift = _fit_similarity(canonical[rigid], found[:, rigid])
        # Back into the canonical frame: (x - t) @ R / s per frame.
        frame_keypoints = (
            np.einsum("vnj,vjk->vnk", found[:, keypoints] - shift[:, None], rot) / scale[:, None, None]
        )
        motion[valid_indices, EXPRESSION] = frame_keypoints.reshape(len(valid_indices), -1) - identity
        motion[valid_indices, SCALE] = scale[:, None]
        motion[valid_indices, TRANSLATION.start : TRANSLATION.start + 2] = shift[:, :2]
        motion[valid_indices, ROTATION] = rotation_angles(rot)
        if not valid.all():
            frame_ids = np.arange(len(landmarks))
            for dim in range(MOTION_DIM):
                motion[:, dim] = np.interp(frame_ids, valid_indices, motion[valid_indices, dim])
        return MotionSequence(motion.astype(np.float32), identity.astype(np.float32), valid)
