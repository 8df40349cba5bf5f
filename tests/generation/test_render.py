"""The weight-free warp renderer on a real photo: identity reproduction, a mouth that opens where the mouth is."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moda_train.core.motion_layout import MOTION_DIM, ROTATION
from moda_train.generation.render import WarpRenderer
from moda_train.perception.face_crop import crop_square
from moda_train.perception.motion import get_motion_extractor

LOWER_LIP_AND_CHIN = {17: 0.25, 20: 0.25, 18: 0.15}  # keypoint: downward offset in canonical face units


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def open_mouth(motion: np.ndarray, amount: float = 1.0) -> np.ndarray:
    opened = np.array(motion, dtype=np.float32, copy=True)
    for keypoint, offset in LOWER_LIP_AND_CHIN.items():
        opened[3 * keypoint + 1] += amount * offset  # +y is down the face
    return opened


def test_reference_motion_reproduces_the_photo(reference):
    frames = list(WarpRenderer().render(reference, np.repeat(reference.motion[None], 3, axis=0)))
    assert len(frames) == 3
    for frame in frames:
        assert frame.shape == reference.image.shape and frame.dtype == np.uint8
        assert psnr(frame, reference.image) > 45.0


def test_opening_the_mouth_changes_the_mouth_region_and_little_else(reference):
    image = reference.image
    frame = next(WarpRenderer().render(reference, open_mouth(reference.motion)[None]))
    changed = np.abs(frame.astype(int) - image.astype(int)).sum(axis=2) > 30
    lips = reference.keypoints(reference.motion[None])[0][[12, 14, 17, 19, 20]]
    centre, width = lips.mean(0), np.ptp(lips[:, 0])
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
    near_mouth = (
        (np.abs(xs - centre[0]) < 1.2 * width) & (ys > centre[1] - 0.6 * width) & (ys < centre[1] + 1.6 * width)
    )
    assert changed[near_mouth].sum() > 0.1 * np.pi * (width / 2) ** 2  # a visible opening
    assert changed[near_mouth].sum() / changed.sum() > 0.9  # ... and almost nothing else moves
    assert psnr(frame[~near_mouth], image[~near_mouth]) > 35.0
    # the opened mouth is darker inside (interior fill), between the lips
    inside = (slice(int(lips[1, 1]) + 2, int(lips[2, 1]) + 2), slice(int(centre[0]) - 3, int(centre[0]) + 4))
    assert frame[inside].mean() < image[inside].mean() - 20


def test_rendered_mouth_reads_back_as_open(reference):
    """Round trip: the landmarks extractor, run on the rendered frames, sees the lips part more as the driven
    opening grows (FaceMesh reads about half of the driven inner-lip travel on this coarse 21-point warp)."""
    amounts = np.array([0.0, 0.5, 1.0])
    motion = np.stack([open_mouth(reference.motion, a) for a in amounts])
    frames = np.stack(list(WarpRenderer().render(reference, motion)))
    crops = np.stack([crop_square(f, reference.box, reference.crop_size) for f in frames])
    seen = get_motion_extractor("landmarks").extract(crops)
    gap = seen.motion[:, 3 * 17 + 1] - seen.motion[:, 3 * 12 + 1]  # lower minus upper inner lip, y
    assert np.all(np.diff(gap) > 0.03)
    assert gap[-1] - gap[0] > 0.4 * LOWER_LIP_AND_CHIN[17]


def test_head_roll_moves_the_face_not_the_background(reference):
    rolled = np.array(reference.motion, copy=True)
    rolled[ROTATION.start + 2] += 6.0
    frame = next(WarpRenderer().render(reference, rolled[None]))
    changed = np.abs(frame.astype(int) - reference.image.astype(int)).sum(axis=2) > 30
    cx, cy, side = reference.box
    ys, xs = np.nonzero(changed)
    assert len(xs) > 500
    assert np.all(np.abs(xs - cx) < side) and np.all(np.abs(ys - cy) < side)  # only around the face


def test_bad_input_is_named(reference):
    renderer = WarpRenderer()
    with pytest.raises(ValueError, match=r"driven motion must be \[T >= 1, 70\]"):
        renderer.render(reference, np.zeros((5, 63)))
    with pytest.raises(ValueError, match="NaN"):
        renderer.render(reference, np.full((2, MOTION_DIM), np.nan))
    with pytest.raises(ValueError, match="liveportrait"):
        renderer.render(dataclasses.replace(reference, motion_backend="liveportrait"), reference.motion[None])
    with pytest.raises(ValueError, match="image must be uint8"):
        dataclasses.replace(reference, image=reference.image.astype(np.float32))
