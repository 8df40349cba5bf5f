"""The LivePortrait renderer on random weights in the released layout: 512 px faces pasted into the photo."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from moda_train.core.motion_layout import EXPRESSION, MOTION_DIM, SCALE
from moda_train.generation.liveportrait_render import LivePortraitRenderer, feather_mask
from moda_train.generation.render import ReferenceFace
from tests.perception.liveportrait_layout import write_released_renderer

pytestmark = pytest.mark.slow  # a few seconds per frame for the dense-motion network on CPU

BOX = np.array([250.0, 190.0, 220.0])  # a square around the astronaut's face


@pytest.fixture(scope="module")
def renderer_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("liveportrait_renderer")
    write_released_renderer(folder)
    return folder


@pytest.fixture(scope="module")
def face(photo):
    rng = np.random.default_rng(0)
    motion = np.zeros(MOTION_DIM, dtype=np.float32)
    motion[SCALE] = 1.0
    identity = rng.uniform(-0.5, 0.5, 63).astype(np.float32)
    return ReferenceFace(photo, BOX, 256, motion, identity, motion_backend="liveportrait")


def _driven(face: ReferenceFace, frames: int) -> np.ndarray:
    motion = np.repeat(face.motion[None], frames, axis=0)
    motion[1:, EXPRESSION] += np.random.default_rng(1).normal(scale=0.05, size=(frames - 1, 63))
    return motion


def test_frames_keep_the_photo_outside_the_pasted_face(renderer_folder, face):
    renderer = LivePortraitRenderer(renderer_folder, batch_size=2)
    frames = list(renderer.render(face, _driven(face, 3)))
    assert len(frames) == 3
    photo = face.image
    assert all(f.shape == photo.shape and f.dtype == np.uint8 for f in frames)
    # the paste weight in the photo: zero outside the crop square, so those pixels are the photo's own
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    weight = cv2.warpAffine(feather_mask(512), face.crop_matrix(512), photo.shape[1::-1], flags=flags)
    outside = weight == 0
    cx, cy, side = BOX
    ys, xs = np.nonzero(~outside)
    assert xs.min() >= cx - side / 2 - 1 and xs.max() <= cx + side / 2 + 1  # the mask lies within the crop
    assert ys.min() >= cy - side / 2 - 1 and ys.max() <= cy + side / 2 + 1
    for frame in frames:
        np.testing.assert_array_equal(frame[outside], photo[outside])
        assert np.abs(frame[weight > 0.99].astype(int) - photo[weight > 0.99]).max() > 10  # the face is pasted
    assert np.abs(frames[1].astype(int) - frames[2]).max() > 0  # different motion, different frames


def test_batches_and_repeats_give_the_same_frames(renderer_folder, face):
    motion = _driven(face, 3)
    one = list(LivePortraitRenderer(renderer_folder, batch_size=1).render(face, motion))
    three = list(LivePortraitRenderer(renderer_folder, batch_size=3).render(face, motion))
    for a, b in zip(one, three):
        assert np.abs(a.astype(int) - b).max() <= 1
    again = next(iter(LivePortraitRenderer(renderer_folder).render(face, motion[:1])))
    np.testing.assert_array_equal(again, one[0])


def test_the_renderer_refuses_landmark_motion_and_missing_weights(renderer_folder, face, tmp_path):
    landmarks = ReferenceFace(face.image, BOX, 256, face.motion, face.identity, motion_backend="landmarks")
    with pytest.raises(ValueError, match="animates motion of the `liveportrait` backend"):
        LivePortraitRenderer(renderer_folder).render(landmarks, face.motion[None])
    with pytest.raises(FileNotFoundError, match="LivePortrait renderer weights not found"):
        LivePortraitRenderer(tmp_path)


def test_dtype_option(renderer_folder, face):
    """The networks run in the dtype asked for (float16 is for GPUs: CPU torch lacks its 3-D pooling)."""
    renderer = LivePortraitRenderer(renderer_folder, dtype="float64")
    assert next(renderer.networks.parameters()).dtype == torch.float64
    frame = next(iter(renderer.render(face, face.motion[None])))
    assert frame.shape == face.image.shape
    with pytest.raises(ValueError, match="dtype must name a torch floating dtype"):
        LivePortraitRenderer(renderer_folder, dtype="half_float")
