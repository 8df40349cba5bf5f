"""Decoding: probe a file, read its frames resampled to 25 fps by timestamp, read its audio at 16 kHz mono.

Frames are read in chunks whose size is bounded in bytes (a 4K chunk holds fewer frames than a 360p one), and
audio only for the requested range, so an hour-long input never sits in memory whole. decord gives random access
for the sparse face-detection pass; PyAV streams the dense pass (see `FrameReader` for why), probes files and reads
audio, since its errors are precise enough to tell a person what is wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from moda_train.core.rates import SAMPLE_RATE

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 2**20  # decoded RGB frames held at once per chunk
VFR_TOLERANCE = 0.1  # relative spread of frame intervals above which a video counts as variable frame rate
AUDIO_SLACK_S = 0.5
TRUNCATION_SLACK_S = 0.5  # audio may end this much before the video end; the gap is filled with silence


class BadInput(Exception):
    """An input that cannot become a clip; the message says why in words a person understands."""


@dataclass(frozen=True)
class VideoInfo:
    """What probing a file found."""

    duration_s: float
    fps: float
    width: int
    height: int
    has_audio: bool
    variable_frame_rate: bool


def _av_reason(err: Exception, path: str) -> str:
    # ffmpeg's own words (without errno and path), e.g. "Invalid data found when processing input".
    text = getattr(err, "strerror", None) or str(err)
    with open(path, "rb") as handle:
        head = handle.read(12)
    if head[4:8] == b"ftyp":  # an MP4/MOV that starts right but cannot be opened: its index is missing
        return f"MP4 file is truncated or corrupt: ffmpeg cannot read its index ({text})"
    if "End of file" in text:
        return f"file is truncated or corrupt ({text})"
    if isinstance(err, av.error.InvalidDataError):
        return f"not a readable video file ({text})"
    return f"cannot open file ({text})"


def check_readable(path: str) -> None:
    """Raise BadInput when the path is missing, a folder, empty or not readable."""
    p = Path(path)
    if p.is_symlink() and not p.exists():
        raise BadInput(f"broken link: {path} points to a missing file")
    if not p.exists():
        raise BadInput("file not found")
    if p.is_dir():
        raise BadInput("is a folder, not a video file")
    if p.stat().st_size == 0:
        raise BadInput("empty file (0 bytes)")
    try:
        with open(p, "rb") as handle:
            handle.read(1)
    except PermissionError as err:
        raise BadInput(f"permission denied: cannot read the file ({err.strerror})") from err
    except OSError as err:
        raise BadInput(f"cannot read the file ({err.strerror})") from err


def probe(path: str) -> VideoInfo:
    """Open the container, check it has a decodable video stream, and measure duration and frame timing."""
    check_readable(path)
    try:
        container = av.open(path)
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise BadInput(_av_reason(err, path)) from err
    with container:
        if not container.streams.video:
            kind = "audio only: the file has no video stream" if container.streams.audio else "no video stream"
            raise BadInput(kind)
        stream = container.streams.video[0]
        has_audio = bool(container.streams.audio)
        declared = container.duration / av.time_base if container.duration else None
        # Packet timestamps (no decoding) give duration and frame intervals cheaply, even for long files.
        times = []
        try:
            for packet in container.demux(stream):
                if packet.pts is not None and packet.size:
                    times.append(float(packet.pts * stream.time_base))
        except av.error.FFmpegError as err:
            raise BadInput(_av_reason(err, path)) from err
    if len(times) < 2:
        raise BadInput("the video stream holds fewer than two frames")
    times = np.unique(np.asarray(times))
    intervals = np.diff(times)
    frame_interval = float(np.median(intervals))
    if declared is not None and declared > times[-1] + frame_interval + TRUNCATION_SLACK_S:
        raise BadInput(
            f"file is truncated: its header promises {declared:.2f} s but the video data ends at {times[-1]:.2f} s"
        )
    vfr = bool(np.std(intervals) > VFR_TOLERANCE * frame_interval)
    # From the packets themselves: ffmpeg's stream.average_rate read here was seen to vary between runs.
    fps = (len(times) - 1) / float(times[-1] - times[0])
    return VideoInfo(
        duration_s=float(times[-1] - times[0] + frame_interval),
        fps=fps,
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        has_audio=has_audio,
        variable_frame_rate=vfr,
    )


def output_times(start_s: float, num_frames: int, fps: int) -> np.ndarray:
    """Presentation times of the output frames: start + k / fps."""
    return start_s + np.arange(num_frames) / fps


def chunk_size(width: int, height: int, budget_bytes: int = CHUNK_BYTES) -> int:
    """Frames per decoded chunk so that one chunk of RGB frames stays under the budget."""
    return max(1, budget_bytes // (width * height * 3))


class FrameReader:
    """Frames at given times (the last source frame shown at each time).

    Two access patterns, two decoders. `read` (every output frame, in order) streams with PyAV: each source frame
    is decoded once. `read_sparse` (every n-th frame, for face detection) uses decord's random access, with PyAV as
    the fallback where decord cannot open or decode a file. A decord VideoReader keeps decoding ahead in a
    background thread after `get_batch` and holds the frames, so its memory grows with the rest of the video
    (measured: 2.3 GB for a 5-minute 320 px input); each chunk therefore gets a reader of its own, dropped right
    after its batch. That re-decodes from the previous keyframe per chunk, which is why dense reading streams with
    PyAV instead (a 4K clip: 1.3 CPU-s with PyAV against 4.0 with per-chunk decord).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._timestamps = None
        try:
            reader = self._open()
            self._timestamps = reader.get_frame_timestamp(np.arange(len(reader)))[:, 0].astype(np.float64)
            del reader
        except Exception as err:  # decord raises its own DECORDError and plain RuntimeErrors
            log.info("decord cannot open %s (%s); decoding with PyAV", path, err)

    def _open(self):
        import decord

        return decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=1)

    def read(self, times: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
        """Yield uint8 [n, H, W, 3] RGB chunks covering increasing `times`, decoding sequentially."""
        yield from _read_pyav(self.path, times, chunk)

    def read_sparse(self, times: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
        """Like `read`, by random access: for times far apart (decord, PyAV where decord fails)."""
        done = 0
        if self._timestamps is not None:
            try:
                for batch in self._read_decord(times, chunk):
                    done += len(batch)
                    yield batch
                return
            except BadInput:
                raise
            except Exception as err:
                # decord fails mid-file on damaged data; PyAV below then reports how far the video really goes.
                log.info("decord failed on %s (%s); decoding with PyAV", self.path, err)
        yield from _read_pyav(self.path, times[done:], chunk)

    def _read_decord(self, times: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
        stamps = self._timestamps
        last = stamps[-1] + (stamps[-1] - stamps[-2] if len(stamps) > 1 else 0)
        if times[-1] > last + 1e-3:
            raise BadInput(f"video frames end at {last:.2f} s, before the requested {times[-1]:.2f} s")
        indices = np.clip(np.searchsorted(stamps, times + 1e-4, side="right") - 1, 0, None)
        for begin in range(0, len(indices), chunk):
            reader = self._open()
            batch = reader.get_batch(indices[begin : begin + chunk].tolist()).asnumpy()
            del reader
            yield batch


def _read_pyav(path: str, times: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
    try:
        container = av.open(path)
    except av.error.FFmpegError as err:
        raise BadInput(_av_reason(err, path)) from err
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if times[0] > 1.0:
            container.seek(int(max(0.0, times[0] - 1.0) / stream.time_base), stream=stream, backward=True)
        current, pending = None, None
        frames = container.decode(stream)
        out: list[np.ndarray] = []
        position = None
        for t in times:
            # Advance while the next frame is already due at time t.
            while True:
                if pending is None:
                    try:
                        pending = next(frames)
                    except StopIteration:
                        break
                    except av.error.FFmpegError as err:
                        position = f"{current.time:.2f} s" if current is not None else "the start"
                        raise BadInput(f"video data is damaged after {position} ({err})") from err
                if pending.time is not None and pending.time <= t + 1e-4:
                    current, pending = pending, None
                else:
                    break
            if current is None or (
                pending is None and t > current.time + 2.0 / max(1.0, float(stream.average_rate or 25))
            ):
                position = f"{current.time:.2f} s" if current is not None else "the start"
                raise BadInput(f"video frames end at {position}, before the requested {t:.2f} s (truncated file?)")
            out.append(current.to_ndarray(format="rgb24"))
            if len(out) == chunk:
                yield np.stack(out)
                out = []
        if out:
            yield np.stack(out)


def read_audio(path: str, start_s: float, end_s: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples of [start_s, end_s) at `sample_rate`; silence pads a gap of up to AUDIO_SLACK_S at
    the end, a longer one raises BadInput."""
    want = int(round((end_s - start_s) * sample_rate))
    try:
        container = av.open(path)
    except av.error.FFmpegError as err:
        raise BadInput(_av_reason(err, path)) from err
    with container:
        if not container.streams.audio:
            raise BadInput("no audio stream: the video is silent, a talking-head clip needs speech")
        stream = container.streams.audio[0]
        if start_s > 1.0:
            container.seek(int(max(0.0, start_s - 1.0) / stream.time_base), stream=stream, backward=True)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        pieces: list[np.ndarray] = []
        first_time = None
        have = 0
        try:
            for frame in container.decode(stream):
                if first_time is None:
                    first_time = float(frame.time or 0.0)
                for out in resampler.resample(frame):
                    pieces.append(out.to_ndarray().reshape(-1))
                    have += pieces[-1].size
                if first_time + have / sample_rate >= end_s:
                    break
        except av.error.FFmpegError as err:
            if not pieces:
                raise BadInput(f"audio stream cannot be decoded ({err})") from err
        for out in resampler.resample(None):
            pieces.append(out.to_ndarray().reshape(-1))
    if first_time is None or not pieces:
        raise BadInput("audio stream holds no samples")
    wave = np.concatenate(pieces).astype(np.float32)
    offset = int(round((start_s - first_time) * sample_rate))
    if offset < 0:  # the audio starts after the range start: pad its beginning with silence
        wave, offset = np.concatenate([np.zeros(-offset, np.float32), wave]), 0
    wave = wave[offset : offset + want]
    missing = want - wave.size
    if missing > AUDIO_SLACK_S * sample_rate:
        raise BadInput(
            f"audio ends at {start_s + wave.size / sample_rate:.2f} s, {missing / sample_rate:.2f} s before the "
            f"video range ending at {end_s:.2f} s"
        )
    return np.pad(wave, (0, missing)) if missing > 0 else wave
