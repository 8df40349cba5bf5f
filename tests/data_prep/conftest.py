"""Small test videos made on the fly with PyAV: a real face (scikit-image's astronaut photo) swaying over a grey
background, with a tone whose loudness pulses like syllables, plus every kind of broken input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from skimage import data as skdata

from data_prep.config import ShardConfig
from moda_train.core.config_loader import load_config

AUDIO_RATE = 16000


def face_photo(size: int = 160) -> np.ndarray:
    """The astronaut's head and shoulders, square, RGB uint8."""
    photo = skdata.astronaut()[0:300, 100:400]
    return cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA)


def speech_like(seconds: float, rate: int = AUDIO_RATE) -> np.ndarray:
    """A 220 Hz tone with a 4 Hz loudness envelope, float32 mono."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def render_frames(
    seconds: float, fps: float, size: tuple[int, int] = (256, 192), faces: int = 1, face_px: int | None = None
) -> list[np.ndarray]:
    """Frames of `faces` astronauts side by side swaying left-right; faces=0 gives a textured face-free picture."""
    width, height = size
    face_px = face_px or int(min(height * 0.8, width * 0.8 / max(faces, 1)))
    photo = face_photo(face_px)
    rng = np.random.default_rng(0)
    background = np.full((height, width, 3), 110, np.uint8)
    if faces == 0:
        background = cv2.GaussianBlur(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), (9, 9), 3)
    frames = []
    for index in range(int(round(seconds * fps))):
        frame = background.copy()
        sway = int(round(0.08 * width * np.sin(2 * np.pi * 0.5 * index / fps)))
        for k in range(faces):
            slot = width // faces
            x0 = k * slot + (slot - face_px) // 2 + (sway if faces == 1 else 0)
            y0 = (height - face_px) // 2
            x0 = int(np.clip(x0, 0, width - face_px))
            frame[y0 : y0 + face_px, x0 : x0 + face_px] = photo
        frames.append(frame)
    return frames


def write_av(
    path: Path,
    frames: list[np.ndarray] | None,
    fps: float = 25,
    audio: np.ndarray | None = None,
    frame_times: list[float] | None = None,
    faststart: bool = False,
) -> Path:
    """Mux H.264 frames and/or AAC audio into an mp4; `frame_times` gives each frame its own time (VFR)."""
    options = {"movflags": "faststart"} if faststart else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options=options) as out:
        vstream = astream = None
        if frames is not None:
            vstream = out.add_stream("libx264", rate=int(fps))
            vstream.height, vstream.width = frames[0].shape[:2]
            vstream.pix_fmt = "yuv420p"
            vstream.options = {"preset": "ultrafast"}
            if frame_times is not None:
                vstream.codec_context.time_base = Fraction(1, 1000)
        if audio is not None:
            astream = out.add_stream("aac", rate=AUDIO_RATE)
            astream.layout = "mono"
        if vstream is not None:
            for index, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                if frame_times is not None:
                    frame.pts, frame.time_base = int(round(frame_times[index] * 1000)), Fraction(1, 1000)
                for packet in vstream.encode(frame):
                    out.mux(packet)
            for packet in vstream.encode():
                out.mux(packet)
        if astream is not None:
            block = 1024
            for begin in range(0, len(audio), block):
                piece = audio[begin : begin + block]
                frame = av.AudioFrame.from_ndarray(piece[None, :], format="flt", layout="mono")
                frame.sample_rate, frame.pts = AUDIO_RATE, begin
                for packet in astream.encode(frame):
                    out.mux(packet)
            for packet in astream.encode():
                out.mux(packet)
    return path


def talking_video(path: Path, seconds: float = 3.6, **kwargs) -> Path:
    """A good clip: one swaying face with a speech-like tone."""
    fps = kwargs.pop("fps", 25)
    return write_av(path, render_frames(seconds, fps, **kwargs), fps, speech_like(seconds))


def shard_config(root: Path, out: Path, *overrides: str) -> ShardConfig:
    """A ShardConfig for tests: inline workers, small shards, short minimum clip length."""
    typed, _ = load_config(
        None,
        [f"input.root={root}", f"output.dir={out}", "workers=0", "clip.min_seconds=3.24", *overrides],
        schema=ShardConfig,
    )
    return typed


@pytest.fixture(scope="session")
def good_video(tmp_path_factory) -> Path:
    """One good 3.6 s clip, made once per session."""
    return talking_video(tmp_path_factory.mktemp("good") / "speaker_a.mp4")


def ffmpeg(*args: str | Path) -> None:
    """Run the ffmpeg that imageio-ffmpeg ships (stream copies and metadata edits PyAV cannot make)."""
    import subprocess

    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-v", "error", *map(str, args)]
    subprocess.run(command, check=True)
