"""The user's inputs to generation (a photo file, a speech file), read and checked before any model loads.

Kept free of torch and the model code, so that `moda-generate` and the web demo reject a wrong file in a second
instead of after loading the checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from moda_train.core.rates import SAMPLE_RATE
from moda_train.perception.audio import load_audio


def load_image(path: str | os.PathLike) -> np.ndarray:
    """A photo file (jpg, png, webp, bmp, tiff, ...) as uint8 RGB [H, W, 3]; a clear error if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    # imdecode rather than imread: it reads any path Python can open, and grey or RGBA photos come back as BGR.
    image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path}: not an image format OpenCV decodes")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_speech(path: str | os.PathLike) -> np.ndarray:
    """The first audio stream of any file ffmpeg reads, as float32 mono 16 kHz [N] (errors: `load_audio`)."""
    return load_audio(path, SAMPLE_RATE)
