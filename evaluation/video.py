"""Reading evaluation videos: RGB frames and frame rate (PyAV), audio through the perception layer's loader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from moda_train.core.rates import SAMPLE_RATE


@dataclass
class Video:
    """Decoded frames (uint8 [T, H, W, 3] RGB) and the stream's frame rate."""

    frames: np.ndarray
    fps: float


def read_video(path: str | Path, max_frames: int = 0) -> Video:
    """Decode a video's frames (all, or the first `max_frames`) as RGB uint8."""
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames and len(frames) >= max_frames:
                    break
    except av.error.FFmpegError as err:
        raise ValueError(f"{path}: cannot decode video: {err}") from err
    if not frames:
        raise ValueError(f"{path}: the video has no frames")
    return Video(np.stack(frames), fps)


def has_audio(path: str | Path) -> bool:
    """Whether a media file has an audio stream."""
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except av.error.FFmpegError:
        return False


def load_audio(path: str | Path) -> np.ndarray:
    """16 kHz mono float32 audio of a file (the loader data_prep uses: evaluation hears what training heard)."""
    from moda_train.perception.audio import load_audio as _load

    return _load(str(path), sample_rate=SAMPLE_RATE)


def evenly_spaced(total: int, count: int) -> np.ndarray:
    """`count` indices spread evenly over range(total) (all of them when count is 0 or >= total)."""
    if count <= 0 or count >= total:
        return np.arange(total)
    return np.linspace(0, total - 1, count).round().astype(np.int64)
