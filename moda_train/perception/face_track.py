"""Face tracks and crops with syncnet_python's geometry (`run_pipeline.py`), for Sync-C / Sync-D on raw videos.

The steps, as syncnet_python does them after detecting faces on every frame:
- tracking (`track_shot`): greedy; a track takes, frame by frame, the first face whose box overlaps the track's
  last box with IoU > 0.5, as long as the gap since that box is at most `max_gap` (25) frames; a track is kept when
  it has more than `min_track` (100) detections and its mean box width or height is above `min_face_size` (100 px);
  box corners are linearly interpolated over the frames without a detection;
- smoothing: box centre x, centre y and half of the larger side, each median-filtered over 13 frames
  (`scipy.signal.medfilt`, zero-padded at the ends as there);
- crop: with s the smoothed half side and c = 0.4, the frame padded by int(s (1 + 2c)) grey (110) pixels on every
  side, rows int(y - s) .. int(y + s (1 + 2c)) and columns int(x - s (1 + c)) .. int(x + s (1 + c)) (a square of
  1.4 x the larger box side, shifted down by 0.2 of it, which covers the chin), resized to 224 x 224 by
  `cv2.resize` (bilinear).
Scene cuts are not detected (syncnet_python splits tracks at PySceneDetect's cuts; benchmark clips are one shot).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.interpolate import interp1d
from scipy.signal import medfilt

from moda_train.perception.config import FaceConfig
from moda_train.perception.face_crop import FaceDetector

IOU_THRESHOLD = 0.5
MEDIAN_KERNEL = 13
CROP_SCALE = 0.4
PAD_VALUE = 110
CROP_SIZE = 224


@dataclass
class Track:
    """One face track: the frames it covers (consecutive) and a box per frame (x0, y0, x1, y1)."""

    frames: np.ndarray
    """int64 [n]: frame indices, consecutive."""
    boxes: np.ndarray
    """float64 [n, 4]: interpolated detector boxes, corners in pixels."""


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two corner boxes (x0, y0, x1, y1)."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def track_faces(
    detections: list[np.ndarray], min_track: int = 100, min_face_size: float = 100.0, max_gap: int = 25
) -> list[Track]:
    """Face tracks from per-frame corner boxes [n_t, 4] (frame t = list index), syncnet_python's greedy rule."""
    remaining = [list(np.asarray(faces, np.float64).reshape(-1, 4)) for faces in detections]
    tracks = []
    while True:
        frames, boxes = [], []
        for t, faces in enumerate(remaining):
            if frames and t - frames[-1] > max_gap:
                break
            for i, face in enumerate(faces):
                if not frames or iou(face, boxes[-1]) > IOU_THRESHOLD:
                    frames.append(t)
                    boxes.append(face)
                    del faces[i]
                    break
        if not frames:
            return tracks
        if len(frames) <= min_track:
            continue
        span = np.arange(frames[0], frames[-1] + 1)
        boxes = np.asarray(boxes)
        filled = np.stack([interp1d(frames, boxes[:, j])(span) for j in range(4)], axis=1)
        if max((filled[:, 2] - filled[:, 0]).mean(), (filled[:, 3] - filled[:, 1]).mean()) > min_face_size:
            tracks.append(Track(span, filled))


def smoothed_boxes(track: Track) -> np.ndarray:
    """[n, 3] centre x, centre y, half larger side per frame, each median-filtered over 13 frames."""
    b = track.boxes
    half = np.maximum(b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]) / 2
    raw = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, half], axis=1)
    return np.stack([medfilt(raw[:, j], kernel_size=MEDIAN_KERNEL) for j in range(3)], axis=1)


def syncnet_crop(frame: np.ndarray, centre_x: float, centre_y: float, half_side: float) -> np.ndarray:
    """The 224 x 224 syncnet_python face crop of one frame (geometry in the module docstring)."""
    pad = int(half_side * (1 + 2 * CROP_SCALE))
    padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), constant_values=PAD_VALUE)
    y, x = centre_y + pad, centre_x + pad
    face = padded[
        int(y - half_side) : int(y + half_side * (1 + 2 * CROP_SCALE)),
        int(x - half_side * (1 + CROP_SCALE)) : int(x + half_side * (1 + CROP_SCALE)),
    ]
    return cv2.resize(face, (CROP_SIZE, CROP_SIZE))


def crop_track(frames: np.ndarray, track: Track) -> np.ndarray:
    """uint8 [n, 224, 224, 3] crops of a track's frames (same channel order as `frames`)."""
    boxes = smoothed_boxes(track)
    return np.stack([syncnet_crop(frames[t], *box) for t, box in zip(track.frames, boxes, strict=True)])


def detect_faces(frames: np.ndarray, cfg: FaceConfig) -> list[np.ndarray]:
    """Corner boxes [n_t, 4] of the faces mediapipe finds in every RGB frame (the framework's offline detector)."""
    detector = FaceDetector(cfg)
    try:
        found = [detector.detect(frame) for frame in frames]
    finally:
        detector.close()
    return [np.concatenate([f[:, :2], f[:, :2] + f[:, 2:]], axis=1) for f in found]
