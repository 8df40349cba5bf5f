"""The piecewise-affine face warp shared by the demo corpus and the weight-free renderer."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep.demo_corpus import INNER_LOWER_LIP, INNER_UPPER_LIP, face_photo, jaw_weights
from moda_train.perception.face_warp import FaceWarper, warp_face


@pytest.fixture(scope="module")
def face():
    """The demo face photo (320 px) and its 468 FaceMesh landmark pixels."""
    return face_photo()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_identity_warp_reproduces_the_image(face):
    photo, points = face
    out = warp_face(photo, points, points, (INNER_UPPER_LIP, INNER_LOWER_LIP))
    assert out.dtype == np.uint8 and out.shape == photo.shape
    assert psnr(out, photo) > 40


def test_tiny_motion_stays_close_to_the_image(face):
    photo, points = face
    jitter = np.random.default_rng(0).normal(scale=0.05, size=points.shape)
    assert psnr(warp_face(photo, points, points + jitter), photo) > 35


def test_opening_the_mouth_changes_the_mouth_and_little_else(face):
    photo, points = face
    drop = jaw_weights(points)[:, None] * np.array([0.0, 14.0])
    out = warp_face(photo, points, points + drop, (INNER_UPPER_LIP, INNER_LOWER_LIP))
    lips = points[list(INNER_UPPER_LIP + INNER_LOWER_LIP)]
    (x0, y0), (x1, y1) = lips.min(0).astype(int) - 4, lips.max(0).astype(int) + 18
    change = np.abs(out.astype(np.float64) - photo).mean(axis=2)
    inside = change[y0:y1, x0:x1].mean()
    above = change[: y0 - 5].mean()  # upper face, hair and background above the mouth
    changed = (change > 10).mean()  # the jaw and chin move too, so count how much of the frame changes at all
    assert inside > 15, inside
    assert above < 0.05, above
    assert changed < 0.06, changed
    # The new gap between the teeth (the source mouth shows them; upper ones stay, lower ones drop with the jaw)
    # is dark mouth interior, not a smear of teeth and lips.
    centre = points[[13, 14]].mean(0)
    gap = out[int(centre[1]) + 6 : int(centre[1]) + 9, int(centre[0]) - 4 : int(centre[0]) + 5]
    assert gap.mean() < 90, gap.mean()


def test_points_land_where_they_are_sent():
    # A white dot at a source point must appear at its destination, with the image border held still.
    image = np.zeros((200, 240, 3), dtype=np.uint8)
    image[98:103, 118:123] = 255
    src = np.array([[120.0, 100.0], [60.0, 60.0], [180.0, 60.0], [60.0, 150.0], [180.0, 150.0]])
    dst = src.copy()
    dst[0] += (15.0, -10.0)
    out = warp_face(image, src, dst)
    ys, xs = np.nonzero(out[..., 0] > 128)
    assert abs(xs.mean() - 135) < 1 and abs(ys.mean() - 90) < 1
    assert out[0].max() == 0 and out[-1].max() == 0


def test_a_warper_is_reusable_and_deterministic(face):
    photo, points = face
    warper = FaceWarper(points, photo.shape[:2], (INNER_UPPER_LIP, INNER_LOWER_LIP))
    dst = points + jaw_weights(points)[:, None] * np.array([0.0, 9.0])
    first = warper.warp(photo, dst)
    np.testing.assert_array_equal(first, warper.warp(photo, dst))
    np.testing.assert_array_equal(warper.warp(photo, points), photo)


@pytest.mark.parametrize("size", [(64, 80), (257, 255)])
def test_any_image_size(size):
    image = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
    src = np.array([[20.0, 20.0], [40.0, 30.0], [30.0, 50.0]])
    out = warp_face(image, src, src + 2.0)
    assert out.shape == image.shape


def test_bad_input_is_named():
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    src = np.array([[10.0, 10.0], [30.0, 40.0], [50.0, 20.0]])
    with pytest.raises(ValueError, match=r"dst_points must have shape \[3, 2\]"):
        warp_face(image, src, src[:2])
    with pytest.raises(ValueError, match="NaN"):
        warp_face(image, src, np.full_like(src, np.nan))
    with pytest.raises(ValueError, match=r"src_points \[1\] lie outside"):
        warp_face(image, np.array([[10.0, 10.0], [99.0, 10.0], [20.0, 30.0]]), src)
    with pytest.raises(ValueError, match="image must be uint8"):
        warp_face(np.zeros((64, 64), dtype=np.uint8), src, src)
    with pytest.raises(ValueError, match="inner_lips"):
        FaceWarper(src, (64, 64), ((0, 1), (0, 7)))
