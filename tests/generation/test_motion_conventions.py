"""Generation with the released pipeline's conventions: LivePortrait's rotation-aligned reference crop (motion
extracted from it, face pasted back through it), the motion-convention check, reference-scale rescaling."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from moda_train.core.motion_layout import EXPRESSION, MOTION_DIM, ROTATION, SCALE, TRANSLATION
from moda_train.generation.liveportrait_render import LivePortraitRenderer, feather_mask
from moda_train.generation.motion_generator import MotionGenerator, reference_scale_ratio, scale_placement
from moda_train.generation.pipeline import check_motion_convention, reference_face
from moda_train.perception.audio import LogMelExtractor
from moda_train.perception.face_align import warp_square
from moda_train.perception.motion import get_motion_extractor
from moda_train.perception.motion.liveportrait_net import LivePortraitMotionNet
from tests.perception.liveportrait_layout import write_released_renderer

from .generation_helpers import random_module, speech_like

TURN = 25.0  # degrees anticlockwise on screen


@pytest.fixture(scope="module")
def liveportrait(tmp_path_factory):
    folder = tmp_path_factory.mktemp("liveportrait")
    torch.manual_seed(0)
    net = LivePortraitMotionNet(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64))
    torch.save({f"detector.{k}": v for k, v in net.state_dict().items()}, folder / "motion_extractor.pth")
    return folder


@pytest.fixture(scope="module")
def turned(photo):
    """The astronaut turned by TURN degrees about her face."""
    turn = cv2.getRotationMatrix2D((250.0, 190.0), TURN, 1.0)
    return cv2.warpAffine(photo, turn, photo.shape[1::-1])


def test_reference_motion_comes_from_the_rotation_aligned_crop(liveportrait, photo, turned):
    extractor = get_motion_extractor("liveportrait", path=liveportrait)
    upright, reference = reference_face(photo, extractor), reference_face(turned, extractor)
    assert reference.square is not None and reference.expression == "native"
    assert np.degrees(reference.square[3] - upright.square[3]) == pytest.approx(-TURN, abs=2.0)
    crop = warp_square(turned, reference.square, 256)
    np.testing.assert_array_equal(reference.crop(256), crop)
    np.testing.assert_allclose(reference.motion, extractor.extract(crop[None]).motion[0], atol=1e-6)
    # the box convention takes the framework's centred crop instead
    boxed = reference_face(turned, get_motion_extractor("liveportrait", path=liveportrait, crop="box"))
    assert boxed.square is None and boxed.expression == "native"


def test_renderer_pastes_through_the_rotated_crop(liveportrait, turned, tmp_path):
    write_released_renderer(tmp_path)
    reference = reference_face(turned, get_motion_extractor("liveportrait", path=liveportrait))
    frame = next(iter(LivePortraitRenderer(tmp_path).render(reference, reference.motion[None])))
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    weight = cv2.warpAffine(feather_mask(512), reference.crop_matrix(512), turned.shape[1::-1], flags=flags)
    np.testing.assert_array_equal(frame[weight == 0], turned[weight == 0])
    assert np.abs(frame[weight > 0.99].astype(int) - turned[weight > 0.99]).max() > 10
    # the pasted region is the turned square: its corners, not the axis-aligned box's
    cx, cy, side, angle = reference.square
    corner = np.array([cx, cy]) + 0.45 * side * np.array(
        [np.cos(angle) - np.sin(angle), np.sin(angle) + np.cos(angle)]
    )
    assert weight[int(corner[1]), int(corner[0])] > 0


def test_generation_refuses_motion_of_another_convention():
    landmarks = get_motion_extractor("landmarks")
    check_motion_convention(random_module("data.motion_convention=box-crop,canonical-expression"), landmarks)
    check_motion_convention(random_module(), landmarks)  # unrecorded: nothing to check
    released = random_module("data.motion_convention=liveportrait-crop,native-expression")
    with pytest.raises(ValueError, match="trained on motion of the 'liveportrait-crop,native-expression' conv"):
        check_motion_convention(released, landmarks)


def test_reference_scale_rescaling_round_trip():
    """With rescaling, the model is conditioned on the reference brought to the mean scale, and its output is
    brought back: generating from r x (the rescaled reference) equals r x generating from it without rescaling."""
    module = random_module()
    module.motion_mean[SCALE] = 0.8
    rng = np.random.default_rng(0)
    reference = rng.normal(scale=0.1, size=MOTION_DIM).astype(np.float32)
    reference[SCALE], reference[TRANSLATION] = 1.2, [0.1, -0.05, 0.0]
    identity = rng.uniform(-0.5, 0.5, 63).astype(np.float32)
    ratio = reference_scale_ratio(reference, 0.8)
    assert ratio == pytest.approx((1.2 + 1e-5) / (0.8 + 1e-5))
    at_mean = scale_placement(reference, 1.0 / ratio)
    assert at_mean[SCALE][0] == pytest.approx(0.8, abs=1e-5)
    np.testing.assert_allclose(at_mean[TRANSLATION], reference[TRANSLATION] / ratio, rtol=1e-6)
    np.testing.assert_array_equal(at_mean[EXPRESSION], reference[EXPRESSION])

    wave, audio = speech_like(1.0), LogMelExtractor()

    def generate(rescale: bool, ref: np.ndarray) -> np.ndarray:
        generator = MotionGenerator(module, audio, steps=2, rescale_reference=rescale)
        return generator.generate(wave, identity, ref, seeds=[0])

    rescaled = generate(True, reference)
    np.testing.assert_allclose(rescaled, scale_placement(generate(False, at_mean), ratio), rtol=1e-5, atol=1e-5)
    plain = generate(False, reference)  # the photo's own scale conditions the model: another motion
    assert np.abs(plain[..., ROTATION] - rescaled[..., ROTATION]).max() > 1e-3
    assert module.cfg.flow.rescale_reference is False  # off for models trained here
