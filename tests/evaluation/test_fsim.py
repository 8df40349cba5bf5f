"""F-SIM with dlib's shipped face descriptor on a real face photo."""

import cv2
import numpy as np
import pytest
import skimage.data

from evaluation.fsim import FaceEmbedder, fsim


@pytest.fixture(scope="module")
def embedder():
    return FaceEmbedder()


@pytest.fixture(scope="module")
def face():
    return cv2.resize(skimage.data.astronaut()[0:300, 80:330], (256, 256), interpolation=cv2.INTER_AREA)


def test_same_face_scores_one_and_is_deterministic(embedder, face):
    value, fallbacks = fsim(embedder, face, np.stack([face, face]))
    assert value == pytest.approx(1.0, abs=1e-6) and fallbacks == 0
    assert fsim(embedder, face, face[None])[0] == value


def test_degraded_and_other_images_score_lower(embedder, face):
    blurred = cv2.GaussianBlur(face, (0, 0), 3)
    cat = cv2.resize(skimage.data.chelsea(), (256, 256))
    same = fsim(embedder, face, face[None])[0]
    blur_score, _ = fsim(embedder, face, blurred[None])
    cat_score, cat_fallbacks = fsim(embedder, face, cat[None])
    assert cat_score < blur_score < same
    assert cat_fallbacks == 1  # no human face found: the reference box was used, and counted


def test_bad_image_is_named(embedder):
    with pytest.raises(ValueError, match="uint8 RGB image"):
        embedder(np.zeros((4, 4), np.uint8))
