"""Write frames (and optionally a speech wave) to an H.264/AAC mp4 with the ffmpeg that imageio-ffmpeg ships.

The file appears under its final name only when complete: ffmpeg writes `<name>.partial` and it is renamed on
success, so a reader (or a resumed job) never sees a half-written video.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from moda_train.core.rates import FPS, SAMPLE_RATE


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float = FPS,
    audio: np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
    crf: int = 18,
) -> Path:
    """Encode uint8 RGB frames to `path` (H.264, yuv420p), muxing float32 mono `audio` as AAC when given.

    `frames` is an array [T, H, W, 3] or any iterable of [H, W, 3] arrays; an iterable is streamed to ffmpeg
    frame by frame, so a long render never needs all its frames in memory. Odd frame sizes are padded by one
    pixel at the right/bottom edge, since H.264 4:2:0 needs even sizes. Returns the final path.
    """
    import imageio_ffmpeg

    if audio is not None:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError(f"audio must be a non-empty float32 mono wave [N], got shape {audio.shape}")
    frame_iter = iter(frames)
    first = next(frame_iter, None)
    if first is None:
        raise ValueError(f"no frames to write to {path}")
    height, width = _check_frame(first, None, 0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-v", "error"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps}", "-i", "-"]
    with tempfile.TemporaryDirectory(prefix="moda-video-") as tmp, tempfile.TemporaryFile() as log:
        if audio is not None:
            wav_path = Path(tmp) / "audio.wav"
            wavfile.write(wav_path, sample_rate, audio)
            cmd += ["-i", str(wav_path), "-c:a", "aac", "-b:a", "128k"]
        cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-preset", "veryfast"]
        cmd += ["-crf", str(crf), "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", str(partial)]
        # stderr goes to a file rather than a pipe: a pipe nobody reads can fill up and stall ffmpeg.
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
        try:
            proc.stdin.write(np.ascontiguousarray(first).tobytes())
            for index, frame in enumerate(frame_iter, start=1):
                _check_frame(frame, (height, width), index)
                proc.stdin.write(np.ascontiguousarray(frame).tobytes())
            proc.stdin.close()
        except BaseException:
            proc.kill()
            proc.wait()
            partial.unlink(missing_ok=True)
            raise
        returncode = proc.wait()
        log.seek(0)
        message = log.read().decode(errors="replace").strip()
    if returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg failed writing {path}: {message}")
    os.replace(partial, path)
    return path


def _check_frame(frame: np.ndarray, size: tuple[int, int] | None, index: int) -> tuple[int, int]:
    """Validate one frame (uint8 [H, W, 3], same size as the first) and return its (H, W)."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame {index} must be uint8 RGB [H, W, 3], got {frame.dtype} {frame.shape}")
    if size is not None and frame.shape[:2] != size:
        raise ValueError(f"frame {index} has size {frame.shape[:2]}, but the first frame has {size}")
    return frame.shape[0], frame.shape[1]
