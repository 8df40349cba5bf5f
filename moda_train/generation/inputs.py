"""The user's inputs to generation (a photo or a video frame, speech), read and checked before any model loads.

Kept free of torch and the model code, so that `moda-generate` and the web demo reject a wrong file in a second
instead of after loading the checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from moda_train.core.rates import FPS, SAMPLE_RATE
from moda_train.perception.audio import load_audio
from moda_train.perception.decode import FrameReader


def load_image(path: str | os.PathLike) -> np.ndarray:
    """A photo file (jpg, png, webp, bmp, tiff, ...), or a video's first frame, as uint8 RGB [H, W, 3].

    A clear error if it is neither."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    # imdecode rather than imread: it reads any path Python can open, and grey or RGBA photos come back as BGR.
    image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is not None:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    try:
        return read_video_frame(path, 0)
    except Exception as err:  # PyAV's errors for a file that is no video either
        raise ValueError(f"cannot read image {path}: neither an image OpenCV decodes nor a video") from err


def read_video_frame(path: str | os.PathLike, index: int) -> np.ndarray:
    """Frame `index` (at 25 fps) of a video as uint8 RGB [H, W, 3], read with data_prep's decoder."""
    frames = next(FrameReader(str(path)).read(np.array([index / FPS]), chunk=1), None)
    if frames is None or len(frames) == 0:
        raise ValueError(f"cannot read frame {index} of {path}")
    return frames[0]


def load_speech(path: str | os.PathLike) -> np.ndarray:
    """The first audio stream of any file ffmpeg reads, as float32 mono 16 kHz [N] (errors: `load_audio`)."""
    return load_audio(path, SAMPLE_RATE)
