"""mediapipe, imported with a clear message when it is missing, and with its native start-up chatter filtered.

mediapipe's C++ side writes a dozen lines to stderr (through absl logging, which neither Python's logging nor
GLOG_* variables reach) every time a graph starts: "Feedback manager requires a model with a single signature",
"Created TensorFlow Lite XNNPACK delegate", ... Preparing a corpus starts one FaceMesh graph per clip, so a log
fills with hundreds of them. `quiet_mediapipe()` sends file descriptor 2 to a temporary file while a graph runs and
afterwards writes back every line that is not one of those known, harmless messages.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import numpy as np

from moda_train.core.optional import import_optional

KNOWN_NOISE = re.compile(
    r"inference_feedback_manager\.cc|landmark_projection_calculator\.cc|"
    r"Created TensorFlow Lite XNNPACK delegate|All log messages before absl::InitializeLog\(\) is called"
)
"""Lines mediapipe 0.10.21 prints on every graph start; none says anything about the input."""


def import_mediapipe(needed_for: str) -> ModuleType:
    """`import mediapipe`, or MissingExtra naming the `landmarks` extra."""
    return import_optional("mediapipe", needed_for)


@contextmanager
def quiet_mediapipe() -> Iterator[None]:
    """Run a block with stderr captured at the descriptor level; pass through all but KNOWN_NOISE afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line
                for line in capture.read().decode(errors="replace").splitlines()
                if not KNOWN_NOISE.search(line)
            ]
            if kept:
                print("\n".join(kept), file=sys.stderr)


class QuietGraph:
    """A mediapipe solution (FaceDetection, FaceMesh, ...) whose first `process`, when its graph logs the
    start-up chatter, runs under `quiet_mediapipe()`."""

    def __init__(self, solution: object) -> None:
        self._solution = solution
        self._started = False

    def process(self, image: np.ndarray) -> object:
        """The solution's result for an RGB uint8 image."""
        image = np.ascontiguousarray(image)
        if self._started:
            return self._solution.process(image)
        with quiet_mediapipe():
            result = self._solution.process(image)
        self._started = True
        return result

    def close(self) -> None:
        """Release the mediapipe graph."""
        self._solution.close()
