"""write_video: H.264/AAC mp4 through imageio-ffmpeg's ffmpeg, atomic, streaming."""

from __future__ import annotations

import av
import numpy as np
import pytest

from moda_train.perception.audio import load_audio
from moda_train.perception.video_io import write_video


def frames(count: int, height: int = 64, width: int = 96) -> np.ndarray:
    """Frames whose brightness ramps up, so order and count can be checked after decoding."""
    levels = np.linspace(20, 230, count).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).copy()


def decode(path) -> tuple[np.ndarray, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        images = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        return images, float(stream.average_rate)


def test_frames_and_audio_round_trip(tmp_path):
    wave = (0.2 * np.sin(np.arange(32000) * 2 * np.pi * 440 / 16000)).astype(np.float32)
    path = write_video(tmp_path / "clip.mp4", frames(50), fps=25, audio=wave)
    images, fps = decode(path)
    assert images.shape == (50, 64, 96, 3) and fps == 25
    np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), frames(50).mean(axis=(1, 2, 3)), atol=3)
    assert abs(len(load_audio(path)) - len(wave)) <= 2
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temporary file left behind


def test_streams_an_iterable_and_pads_odd_sizes(tmp_path):
    path = write_video(tmp_path / "odd.mp4", (frame for frame in frames(10, 33, 47)), fps=12.5)
    images, fps = decode(path)
    assert images.shape == (10, 34, 48, 3) and fps == 12.5


def test_bad_frames_leave_no_file(tmp_path):
    with pytest.raises(ValueError, match=r"frame 0 must be uint8 RGB \[H, W, 3\], got float32"):
        write_video(tmp_path / "a.mp4", frames(3).astype(np.float32))
    mixed = [frames(1)[0], frames(1, 32, 32)[0]]
    with pytest.raises(ValueError, match=r"frame 1 has size \(32, 32\), but the first frame has \(64, 96\)"):
        write_video(tmp_path / "b.mp4", mixed)
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "c.mp4", [])
    with pytest.raises(ValueError, match="audio must be a non-empty float32 mono wave"):
        write_video(tmp_path / "d.mp4", frames(3), audio=np.zeros((2, 100), dtype=np.float32))
    assert list(tmp_path.iterdir()) == []
