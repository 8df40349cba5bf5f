"""LivePortrait's crop geometry (`perception.face_align`): the formula on synthetic landmarks, and on a real photo
turned in the image plane, where the crop must come out upright."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from moda_train.perception.config import FaceConfig
from moda_train.perception.face_align import (
    DSIZE,
    LivePortraitCropper,
    liveportrait_square,
    smooth_squares,
    square_matrix,
    warp_square,
)
from moda_train.perception.face_crop import FaceDetector, face_box


def _turn(points: np.ndarray, degrees: float, shift: np.ndarray) -> np.ndarray:
    """Points [N, 2] turned by `degrees` (clockwise on screen, y pointing down) about the origin, then shifted."""
    a = np.radians(degrees)
    return points @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) + shift


@pytest.mark.parametrize("degrees", [0.0, 30.0, -65.0])
def test_square_follows_livePortraits_formula(degrees):
    """An upright face whose landmarks span x 100..200 and y 80..220, eyes at y 120 and mouth at y 190: by hand,
    LivePortrait's crop is side 2.3 x 140 = 322 (the larger extent), centred on the box centre (150, 150) moved
    up by 0.125 x 322 = 40.25, axis-aligned. Turned and shifted, the crop turns and shifts with the face."""
    rng = np.random.default_rng(0)
    upright = np.concatenate([[[100, 80], [200, 220]], rng.uniform([100, 80], [200, 220], (40, 2))])
    eyes, mouth = np.array([[130.0, 120.0], [170.0, 120.0]]), np.array([[135.0, 190.0], [165.0, 190.0]])
    shift = np.array([37.0, -12.0])
    square = liveportrait_square(*(_turn(p, degrees, shift) for p in (upright, eyes, mouth)))
    expected_centre = _turn(np.array([[150.0, 150.0 - 0.125 * 322.0]]), degrees, shift)[0]
    np.testing.assert_allclose(square[:2], expected_centre, atol=1e-9)
    assert square[2] == pytest.approx(322.0)
    assert np.degrees(square[3]) == pytest.approx(degrees)
    # In the 512 px crop every landmark lands where the upright face's would: scale 512 / 322 about the centre.
    matrix = square_matrix(square, DSIZE)
    in_crop = _turn(upright, degrees, shift) @ matrix[:, :2].T + matrix[:, 2]
    hand = (upright - [150.0, 150.0 - 40.25]) * (DSIZE / 322.0) + DSIZE / 2
    np.testing.assert_allclose(in_crop, hand, atol=1e-9)
    # Without rotation the crop keeps the image axes (LivePortrait's flag_do_rot=False) about the same centre.
    plain = square_matrix(square, DSIZE, rotate=False)
    np.testing.assert_allclose(plain[:, :2], np.eye(2) * DSIZE / 322.0)
    np.testing.assert_allclose(plain[:, :2] @ square[:2] + plain[:, 2], [DSIZE / 2, DSIZE / 2])


def test_degenerate_eye_mouth_line_falls_back_to_upright():
    points = np.array([[0.0, 0.0], [10.0, 20.0]])
    square = liveportrait_square(points, np.array([[5.0, 5.0]] * 2), np.array([[5.0, 5.0]] * 2))
    assert square[3] == 0.0 and square[2] == pytest.approx(2.3 * 20)


def test_track_interpolates_and_smooths_squares():
    squares = [np.array([10.0, 20.0, 100.0, np.pi - 0.1]), None, np.array([30.0, 20.0, 120.0, -np.pi + 0.1])]
    track = smooth_squares(squares, np.array([0, 4, 8]), 9, sigma_frames=0.0)
    np.testing.assert_allclose(track[4, :3], [20.0, 20.0, 110.0])
    assert track[4, 3] == pytest.approx(np.pi)  # the short way round through 180 degrees, not through 0
    with pytest.raises(ValueError, match="FaceMesh found no face landmarks"):
        smooth_squares([None, None], np.array([0, 1]), 2, 1.0)


@pytest.fixture(scope="module")
def cropper():
    cropper = LivePortraitCropper()
    yield cropper
    cropper.close()


def _square_of(photo: np.ndarray, cropper: LivePortraitCropper) -> np.ndarray:
    face = FaceConfig(model_selection=0)  # the short-range model: a portrait
    detector = FaceDetector(face)
    try:
        box = face_box(detector.detect(photo), face)
    finally:
        detector.close()
    square = cropper.square(photo, box)
    assert square is not None
    return square


def test_a_turned_face_gives_an_upright_crop(cropper):
    from skimage import data

    photo = data.astronaut()
    upright = _square_of(photo, cropper)
    turn = cv2.getRotationMatrix2D((250.0, 190.0), 25.0, 1.0)  # 25 degrees anticlockwise on screen
    turned_photo = cv2.warpAffine(photo, turn, photo.shape[1::-1])
    turned = _square_of(turned_photo, cropper)
    # The crop turns with the face, keeps its size and follows its centre.
    assert np.degrees(turned[3] - upright[3]) == pytest.approx(-25.0, abs=2.0)
    assert turned[2] == pytest.approx(upright[2], rel=0.05)
    np.testing.assert_allclose(turned[:2], turn[:, :2] @ upright[:2] + turn[:, 2], atol=0.03 * upright[2])
    # In the crop the eye line is horizontal: FaceMesh on the 256 px crop itself finds an upright face there.
    crop = warp_square(turned_photo, turned, 256)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    again = cropper.square(crop, np.array([128.0, 128.0, 256.0]))
    assert abs(np.degrees(again[3])) < 2.0
    # LivePortrait's crop of its own crop is (nearly) the whole crop again: scale and shift are consistent.
    assert again[2] == pytest.approx(256, rel=0.05)
    np.testing.assert_allclose(again[:2], [128.0, 128.0], atol=0.03 * 256)
