"""Renderers: reference photo + driven motion [T, 70] -> video frames of the full photo.

`Renderer.render(reference, driven_motion)` yields one uint8 RGB frame of the reference image's size per motion
frame, lazily, so a long video streams to the encoder. `ReferenceFace` carries what every renderer needs: the
full photo, the face crop the motion extractor saw (the square `box`, or LivePortrait's rotation-aligned `square`),
the photo's own motion and identity keypoints, and the motion's expression convention.

`WarpRenderer` needs no weights. It works with the `landmarks` motion backend, whose 21 keypoints are facial
landmarks: it projects the keypoints of the reference motion and of each driven frame into the crop
(`moda_train.perception.motion.motion_to_image_keypoints`), maps them into full-photo pixels, and warps the photo
piecewise-affinely from the one set to the other with `moda_train.perception.face_warp.FaceWarper` (the same warp
that animates the demo corpus), which also draws the inner mouth when the lips part. A ring of fixed anchors around
the face keeps hair, neck and background still, so the result is composited into the photo by construction, at the
photo's resolution. Driven motion equal to the reference motion gives back the photo unchanged. It is not a neural
renderer: no new detail appears (eyes do not blink, the head turns only in the image plane), but it is smooth and
its lips move with the motion. Motion of the `liveportrait` backend is rendered by
`moda_train.generation.liveportrait_render.LivePortraitRenderer`, behind the same interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from moda_train.core.motion_layout import MOTION_DIM, NUM_KEYPOINTS
from moda_train.perception.face_align import square_matrix, warp_square
from moda_train.perception.face_crop import box_matrix, crop_square
from moda_train.perception.face_warp import FaceWarper
from moda_train.perception.motion import motion_to_image_keypoints
from moda_train.perception.motion.landmarks import INNER_LIP_KEYPOINTS

FACE_RING_MARGIN = 0.6  # fixed anchors at 1.6x the keypoints' hull: room for the forehead, chin and head sway


@dataclass
class ReferenceFace:
    """The reference photo and what the motion extractor saw in it."""

    image: np.ndarray
    """uint8 [H, W, 3] RGB: the full photo every frame is rendered from."""
    box: np.ndarray
    """float [3]: centre x, centre y and side (photo pixels) of the square face crop."""
    crop_size: int
    """Side of the crop in pixels as the motion extractor saw it (256)."""
    motion: np.ndarray
    """float32 [70]: the photo's own motion (real units)."""
    identity: np.ndarray
    """float32 [63]: the photo's canonical keypoints."""
    motion_backend: str = "landmarks"
    """Name of the motion extractor that produced motion and identity."""
    square: np.ndarray | None = None
    """float [4]: centre x, centre y, side and roll angle (radians) of LivePortrait's rotation-aligned crop
    (`perception.face_align`) when the extractor took that crop; None when it took the square `box` crop."""
    expression: str = "canonical"
    """Where the motion's expression offsets live (`perception.motion.pose`): canonical or native."""

    def __post_init__(self) -> None:
        problems = []
        image = np.asarray(self.image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            problems.append(f"image must be uint8 RGB [H, W, 3], got {image.dtype} {image.shape}")
        if np.shape(self.box) != (3,) or not np.asarray(self.box)[2] > 0:
            problems.append(f"box must be (centre x, centre y, side > 0), got {self.box}")
        if np.shape(self.motion) != (MOTION_DIM,):
            problems.append(f"motion must be [{MOTION_DIM}], got shape {np.shape(self.motion)}")
        if np.shape(self.identity) != (3 * NUM_KEYPOINTS,):
            problems.append(f"identity must be [{3 * NUM_KEYPOINTS}], got shape {np.shape(self.identity)}")
        if self.square is not None and (np.shape(self.square) != (4,) or not np.asarray(self.square)[2] > 0):
            problems.append(f"square must be (centre x, centre y, side > 0, angle), got {self.square}")
        if problems:
            raise ValueError("; ".join(problems))

    def crop(self, size: int) -> np.ndarray:
        """The face crop the motion extractor saw, at `size` px (uint8 [size, size, 3])."""
        if self.square is not None:
            return warp_square(self.image, self.square, size)
        return crop_square(self.image, self.box, size)

    def crop_matrix(self, size: int) -> np.ndarray:
        """2x3 affine from photo pixels to pixels of a `size` px image of that crop."""
        return box_matrix(self.box, size) if self.square is None else square_matrix(self.square, size)

    def keypoints(self, motion: np.ndarray) -> np.ndarray:
        """Photo-pixel positions [T, 21, 2] of the keypoints that `motion` [T, 70] drives for this identity."""
        if self.square is not None:
            raise ValueError("keypoints() maps through the square box crop; this reference has a rotated crop")
        in_crop = motion_to_image_keypoints(motion, self.identity, self.crop_size, self.expression)
        cx, cy, side = (float(v) for v in self.box)
        return in_crop * (side / self.crop_size) + [cx - side / 2, cy - side / 2]


class Renderer(ABC):
    """Turns driven motion into frames of the reference photo."""

    @abstractmethod
    def render(self, reference: ReferenceFace, driven_motion: np.ndarray) -> Iterator[np.ndarray]:
        """Yield uint8 [H, W, 3] RGB frames (the reference image's size), one per row of driven_motion [T, 70]."""


def check_motion(motion: np.ndarray) -> np.ndarray:
    """Validate driven motion [T, 70] (finite numbers) and return it as float64."""
    motion = np.asarray(motion, dtype=np.float64)
    if motion.ndim != 2 or motion.shape[1] != MOTION_DIM or len(motion) == 0:
        raise ValueError(f"driven motion must be [T >= 1, {MOTION_DIM}], got shape {motion.shape}")
    if not np.isfinite(motion).all():
        raise ValueError("driven motion contains NaN or infinite values")
    return motion


class WarpRenderer(Renderer):
    """Weight-free piecewise-affine warp of the photo from its keypoints to the driven ones (module docstring).

    `ring_margin`: how far (fraction of the keypoints' hull, about its centre) the fixed anchors sit from the
    face; everything outside them stays still.
    """

    def __init__(self, ring_margin: float = FACE_RING_MARGIN) -> None:
        self.ring_margin = ring_margin

    def render(self, reference: ReferenceFace, driven_motion: np.ndarray) -> Iterator[np.ndarray]:
        if reference.motion_backend != "landmarks":
            raise ValueError(
                f"WarpRenderer animates keypoints that are facial landmarks (the `landmarks` motion backend); "
                f"this reference was extracted with {reference.motion_backend!r}, which needs its neural renderer"
            )
        driven_motion = check_motion(driven_motion)
        image = np.ascontiguousarray(reference.image)
        height, width = image.shape[:2]
        source = reference.keypoints(np.asarray(reference.motion, dtype=np.float64)[None])[0]
        # Keypoints the photo crop cuts off (a face at the edge of the photo) are clamped onto it.
        source = np.clip(source, 0, [width - 1, height - 1])
        warper = FaceWarper(source, (height, width), INNER_LIP_KEYPOINTS, fixed_margin=self.ring_margin)
        return self._frames(warper, image, reference, driven_motion)

    @staticmethod
    def _frames(
        warper: FaceWarper, image: np.ndarray, reference: ReferenceFace, driven_motion: np.ndarray
    ) -> Iterator[np.ndarray]:
        # Keypoints are computed a chunk at a time: cheap, and memory stays flat for long motion.
        chunk = 256
        for begin in range(0, len(driven_motion), chunk):
            for points in reference.keypoints(driven_motion[begin : begin + chunk]):
                yield warper.warp(image, points)
