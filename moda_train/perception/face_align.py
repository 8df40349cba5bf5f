"""LivePortrait's face crop: a rotation-aligned square from face landmarks, computed from mediapipe FaceMesh.

LivePortrait's cropper (`crop_image` / `parse_rect_from_landmark` / `_estimate_similar_transform_from_pts` in its
`src/utils/crop.py`, defaults from its `argument_config.py`) does, for a landmark set P of one face:

1. two points: e = the mean of the two eye centres, m = the midpoint of the mouth corners;
2. the crop's axes: down = (m - e) / |m - e| (straight down when that length is below 1e-3 px), right = (down_y,
   -down_x), so the eye line comes out horizontal and the face upright;
3. the extent of P in those axes about its mean: side = scale x the larger of the two extents, centre = the
   centre of that rotated box, moved by vx_ratio x side along `right` and vy_ratio x side along `down`;
4. with s = dsize / side and the crop's roll angle a (right = (cos a, sin a)), the photo -> crop similarity
   `crop = s [[cos a, sin a], [-sin a, cos a]] (p - centre) + dsize / 2` (with `rotate=False` the axis-aligned
   `s (p - centre) + dsize / 2`), applied by `cv2.warpAffine` (bilinear, black outside the photo) at dsize = 512;
5. the networks' 256 px input is that 512 px crop shrunk by `cv2.resize(..., INTER_AREA)`.

Defaults as LivePortrait's source-image crop: scale 2.3, vx_ratio 0, vy_ratio -0.125 (the crop reaches higher,
over the forehead), rotate on, dsize 512. A crop is carried as `square` = (centre x, centre y, side, angle in
radians), photo pixels with integer coordinates at pixel centres (OpenCV's convention, as LivePortrait uses).

LivePortrait takes P from InsightFace's 106-point 2-D landmarks (eye centres = means of 4 eye-contour points,
mouth = the two corners). Here P comes from mediapipe FaceMesh, which ships in its wheel (InsightFace's and
LivePortrait's landmark models do not). The mapping (`EYE_LANDMARKS`, `MOUTH_CORNERS`, `EXTENT_LANDMARKS`):

| LivePortrait (106-point)          | FaceMesh indices                                              |
|-----------------------------------|---------------------------------------------------------------|
| eye centre: 4 contour points each | 33, 133, 159, 145 (corners, upper/lower lid) and 362, 263, 386, 374 |
| mouth corners 52, 61              | 61, 291                                                       |
| all 106 points (jaw contour ear to ear, | the face oval from 127 to 356 through the chin (not its       |
| brows, eyes, nose, lips; no forehead)   | forehead part), brows, eye corners and lids, nose, lips       |

The remaining difference is the landmark detector: the two models place the jaw contour and the brows somewhat
differently, so side and centre may differ between the two (the eye and mouth points, hence the rotation, are
the better defined). By how much is not measured here: InsightFace's models are not available offline.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from moda_train.perception.face_crop import box_matrix, crop_square
from moda_train.perception.mediapipe_runtime import QuietGraph, import_mediapipe

SCALE = 2.3
VX_RATIO = 0.0
VY_RATIO = -0.125
DSIZE = 512  # LivePortrait crops at 512 px; the generator's output has this size too
INPUT_SIZE = 256  # the networks' input: the 512 px crop shrunk by area averaging

EYE_LANDMARKS = ((33, 133, 159, 145), (362, 263, 386, 374))
"""FaceMesh points averaged into each eye centre: the two corners and the upper and lower lid."""
MOUTH_CORNERS = (61, 291)
EXTENT_LANDMARKS = (
    # face oval from the right temple down round the chin to the left temple (the forehead part left out)
    127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152,
    377, 400, 378, 379, 365, 397, 288, 361, 323, 454, 356,
    # brows (upper and lower edge)
    70, 63, 105, 66, 107, 46, 53, 52, 65, 55, 300, 293, 334, 296, 336, 276, 283, 282, 295, 285,
    # eyes, nose, lips
    33, 133, 159, 145, 362, 263, 386, 374, 168, 6, 197, 195, 5, 4, 1, 2, 98, 327, 61, 291, 0, 17, 13, 14,
)  # fmt: skip
"""FaceMesh points standing in for LivePortrait's 106 landmarks when the crop's extent is measured."""
DETECT_SIZE = 256  # FaceMesh runs on the detector's box crop at this size to find the landmarks


def liveportrait_square(
    points: np.ndarray,
    eyes: np.ndarray,
    mouth: np.ndarray,
    scale: float = SCALE,
    vx_ratio: float = VX_RATIO,
    vy_ratio: float = VY_RATIO,
) -> np.ndarray:
    """LivePortrait's crop (module docstring, steps 1-3) of landmark points [N, 2] with eye centres [2, 2] and
    mouth corners [2, 2], all in photo pixels: float64 [4] (centre x, centre y, side, angle)."""
    points = np.asarray(points, dtype=np.float64)
    down = np.mean(mouth, axis=0) - np.mean(eyes, axis=0)
    length = np.linalg.norm(down)
    down = down / length if length > 1e-3 else np.array([0.0, 1.0])
    right = np.array([down[1], -down[0]])
    axes = np.stack([right, down])  # rows: the crop's x and y axes in the photo
    mean = points.mean(axis=0)
    local = (points - mean) @ axes.T
    low, high = local.min(axis=0), local.max(axis=0)
    side = scale * float((high - low).max())
    centre = mean + (low + high) / 2 @ axes + side * (vx_ratio * right + vy_ratio * down)
    return np.array([centre[0], centre[1], side, np.arctan2(right[1], right[0])])


def square_matrix(square: np.ndarray, size: int, rotate: bool = True) -> np.ndarray:
    """2x3 photo -> crop affine of a `size` px crop of `square` (module docstring, step 4)."""
    cx, cy, side, angle = (float(v) for v in square)
    s = size / side
    cos, sin = (np.cos(angle), np.sin(angle)) if rotate else (1.0, 0.0)
    linear = s * np.array([[cos, sin], [-sin, cos]])
    return np.concatenate([linear, (size / 2 - linear @ [cx, cy])[:, None]], axis=1)


def warp_square(image: np.ndarray, square: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """The uint8 crop of `square` as LivePortrait makes it: warped at 512 px, then area-shrunk to `size`."""
    crop = cv2.warpAffine(image, square_matrix(square, DSIZE), (DSIZE, DSIZE), flags=cv2.INTER_LINEAR)
    return crop if size == DSIZE else cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def facemesh_square(landmarks: np.ndarray) -> np.ndarray:
    """LivePortrait's crop square [4] from FaceMesh landmarks [>= 468, 2] in photo pixels (the mapping above)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    eyes = np.stack([landmarks[list(eye)].mean(axis=0) for eye in EYE_LANDMARKS])
    return liveportrait_square(landmarks[list(EXTENT_LANDMARKS)], eyes, landmarks[list(MOUTH_CORNERS)])


def smooth_squares(
    squares: list[np.ndarray | None], indices: np.ndarray, num_frames: int, sigma_frames: float
) -> np.ndarray:
    """Per-frame squares [num_frames, 4] from those found at `indices` (None = no landmarks there): interpolated
    between them and Gaussian-smoothed over time like the box track (`face_crop.track_from_detections`). Raises
    ValueError when none was found."""
    found = [(index, square) for index, square in zip(indices, squares, strict=True) if square is not None]
    if not found:
        raise ValueError("FaceMesh found no face landmarks in any checked frame")
    at = np.array([index for index, _ in found], dtype=np.float64)
    values = np.stack([square for _, square in found])
    values[:, 3] = np.unwrap(values[:, 3])  # a roll through +-180 degrees interpolates the short way round
    frames = np.arange(num_frames)
    track = np.stack([np.interp(frames, at, values[:, i]) for i in range(4)], axis=1)
    if sigma_frames > 0:
        track = gaussian_filter1d(track, sigma_frames, axis=0, mode="nearest")
    return track


class LivePortraitCropper:
    """FaceMesh on a face the detector found, then LivePortrait's crop square of it (`facemesh_square`)."""

    def __init__(self, min_detection_confidence: float = 0.5) -> None:
        mp = import_mediapipe("the LivePortrait face crop")
        self._mesh = QuietGraph(
            mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, min_detection_confidence=min_detection_confidence
            )
        )

    def square(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """The crop square [4] of the face in `box` (centre x, centre y, side of a square around the detected
        face, photo pixels) of an RGB frame, or None when FaceMesh finds no face there."""
        crop = crop_square(frame, box, DETECT_SIZE)
        result = self._mesh.process(crop)
        if not result.multi_face_landmarks:
            return None
        marks = result.multi_face_landmarks[0].landmark
        # mediapipe's fractions of the crop side -> crop pixel coordinates (centres at integers) -> the photo.
        in_crop = np.array([(p.x, p.y) for p in marks]) * DETECT_SIZE - 0.5
        to_crop = box_matrix(box, DETECT_SIZE)
        return facemesh_square((in_crop - to_crop[:, 2]) @ np.linalg.inv(to_crop[:, :2]).T)

    def crops(self, frames: np.ndarray, squares: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
        """uint8 [n, size, size, 3] crops of frames [n, H, W, 3] with their squares [n, 4]."""
        return np.stack([warp_square(frame, square, size) for frame, square in zip(frames, squares, strict=True)])

    def close(self) -> None:
        """Release the mediapipe graph."""
        self._mesh.close()
