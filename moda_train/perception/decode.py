"""Decoding: probe a file, read its frames resampled to 25 fps by timestamp, read its audio at 16 kHz mono.

Times given to the readers are seconds from the first presented video frame (`VideoInfo.start_s` on the container
timeline), so a file whose video starts late (AAC priming after a stream-copy remux, `-output_ts_offset`) reads
like one that starts at 0; audio is read on the same timeline, so sync is kept. Frames come out as a player shows
them: the display matrix's rotation and the sample aspect ratio are applied (`to_display`).

Frames are read in chunks whose size is bounded in bytes (a 4K chunk holds fewer frames than a 360p one), and
audio only for the requested range, so an hour-long input never sits in memory whole. decord gives random access
for the sparse face-detection pass; PyAV streams the dense pass (see `FrameReader` for why), probes files and reads
audio, since its errors are precise enough to tell a person what is wrong.
"""

from __future__ import annotations

import errno
import logging
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
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
    """What probing a file found. Durations are the video stream's own, never the container's (the longest
    stream: audio often runs on past the video)."""

    duration_s: float
    """From the first presented video frame to the end of the last one."""
    fps: float
    width: int
    """Stored (coded) frame size; `display_size` is what a player shows."""
    height: int
    has_audio: bool
    variable_frame_rate: bool
    start_s: float = 0.0
    """Container time of the first presented video frame; reader times count from here."""
    rotation: int = 0
    """Counter-clockwise degrees (0, 90, 180, 270) by which the display matrix turns the stored frames."""
    sample_aspect_ratio: float = 1.0
    """Width of a stored pixel over its height (anamorphic video: not 1)."""
    discarded_frames: int = 0
    """Pre-roll frames the edit list hides (a stream-copy cut off a keyframe): not part of the video."""

    def display_size(self) -> tuple[int, int]:
        """(width, height) of the frames `FrameReader` yields: aspect ratio, then rotation applied."""
        width, height = _aspect_size(self.width, self.height, self.sample_aspect_ratio)
        return (height, width) if self.rotation in (90, 270) else (width, height)


def _aspect_size(width: int, height: int, sar: float) -> tuple[int, int]:
    # Stretch the short side rather than squeeze the long one, so no detail is lost; even sizes for H.264.
    if abs(sar - 1.0) < 1e-3:
        return width, height
    if sar > 1:
        return 2 * round(width * sar / 2), height
    return width, 2 * round(height / sar / 2)


def to_display(frames: np.ndarray, info: VideoInfo, turned: bool = False) -> np.ndarray:
    """uint8 [n, H, W, 3] decoded frames as a player shows them: sample aspect ratio applied, then the rotation,
    unless the decoder already `turned` them (decord applies the display matrix itself)."""
    width, height = _aspect_size(info.width, info.height, info.sample_aspect_ratio)
    if turned and info.rotation in (90, 270):
        width, height = height, width
    if (frames.shape[2], frames.shape[1]) != (width, height):
        frames = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_CUBIC) for f in frames])
    if info.rotation and not turned:
        frames = np.ascontiguousarray(np.rot90(frames, info.rotation // 90, axes=(1, 2)))
    return frames


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
    """Raise BadInput when the path is missing, a folder, not a regular file, empty or not readable."""
    p = Path(path)
    try:
        status = p.stat()
    except FileNotFoundError as err:
        if p.is_symlink():
            raise BadInput(f"broken link: {path} points to a missing file") from err
        raise BadInput("file not found") from err
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise BadInput("symbolic link loop: the link resolves to itself") from err
        raise BadInput(f"cannot read the file ({err.strerror})") from err
    if stat.S_ISDIR(status.st_mode):
        raise BadInput("is a folder, not a video file")
    if not stat.S_ISREG(status.st_mode):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(status.st_mode) else "a device or socket"
        # Opening a FIFO would block until someone writes to it: refuse before opening.
        raise BadInput(f"not a regular file: {kind}")
    if status.st_size == 0:
        raise BadInput("empty file (0 bytes)")
    try:
        with open(p, "rb") as handle:
            handle.read(1)
    except PermissionError as err:
        raise BadInput(f"permission denied: cannot read the file ({err.strerror})") from err
    except OSError as err:
        raise BadInput(f"cannot read the file ({err.strerror})") from err


def _rotation(frame: av.VideoFrame) -> int:
    # PyAV reports the display matrix as counter-clockwise degrees in [-180, 180]; only quarter turns occur.
    return int(round((frame.rotation or 0) / 90.0)) % 4 * 90


def probe(path: str) -> VideoInfo:
    """Open the container, check it has a decodable video stream, and measure the video stream's own start,
    duration and frame timing, its rotation and sample aspect ratio."""
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
        # The stream's own declared length: the container's is the longest stream's (often the audio).
        declared = float(stream.duration * stream.time_base) if stream.duration else None
        # Packet timestamps (no decoding) give duration and frame intervals cheaply, even for long files. Packets
        # the edit list hides (pre-roll of a cut that is not on a keyframe) are no part of the video.
        times, discarded = [], 0
        try:
            for packet in container.demux(stream):
                if packet.pts is None or not packet.size:
                    continue
                if packet.is_discard:
                    discarded += 1
                else:
                    times.append(float(packet.pts * stream.time_base))
        except av.error.FFmpegError as err:
            raise BadInput(_av_reason(err, path)) from err
        rotation, sar = 0, stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
        if times:
            # One decoded frame gives what packets do not: the display matrix (rotation).
            try:
                container.seek(0, stream=stream)
                first = next(container.decode(stream), None)
            except av.error.FFmpegError as err:
                raise BadInput(f"video stream cannot be decoded ({err})") from err
            if first is not None:
                rotation = _rotation(first)
    if len(times) < 2:
        raise BadInput("the video stream holds fewer than two frames")
    times = np.unique(np.asarray(times))
    intervals = np.diff(times)
    frame_interval = float(np.median(intervals))
    span = float(times[-1] - times[0] + frame_interval)
    if declared is not None and declared > span + TRUNCATION_SLACK_S:
        raise BadInput(
            f"file is truncated: its header promises {declared:.2f} s but the video data ends at "
            f"{span - frame_interval:.2f} s"
        )
    vfr = bool(np.std(intervals) > VFR_TOLERANCE * frame_interval)
    # From the packets themselves: ffmpeg's stream.average_rate read here was seen to vary between runs.
    fps = (len(times) - 1) / float(times[-1] - times[0])
    return VideoInfo(
        duration_s=span,
        fps=fps,
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        has_audio=has_audio,
        variable_frame_rate=vfr,
        start_s=float(times[0]),
        rotation=rotation,
        sample_aspect_ratio=float(sar) if sar else 1.0,
        discarded_frames=discarded,
    )


def output_times(start_s: float, num_frames: int, fps: int) -> np.ndarray:
    """Presentation times of the output frames: start + k / fps."""
    return start_s + np.arange(num_frames) / fps


def chunk_size(width: int, height: int, budget_bytes: int = CHUNK_BYTES) -> int:
    """Frames per decoded chunk so that one chunk of RGB frames stays under the budget."""
    return max(1, budget_bytes // (width * height * 3))


class FrameReader:
    """Frames at given times (the last source frame shown at each time), as a player shows them (`to_display`).

    Two access patterns, two decoders. `read` (every output frame, in order) streams with PyAV: each source frame
    is decoded once. `read_sparse` (every n-th frame, for face detection) uses decord's random access, with PyAV as
    the fallback where decord cannot open or decode a file, or where its timeline or rotation cannot be matched
    to PyAV's. A decord VideoReader keeps decoding ahead in a background thread after `get_batch` and holds the
    frames, so its memory grows with the rest of the video (measured: 2.3 GB for a 5-minute 320 px input); each
    chunk therefore gets a reader of its own, dropped right after its batch. That re-decodes from the previous
    keyframe per chunk, which is why dense reading streams with PyAV instead (a 4K clip: 1.3 CPU-s with PyAV
    against 4.0 with per-chunk decord).
    """

    def __init__(self, path: str, info: VideoInfo | None = None) -> None:
        self.path = path
        self.info = info or probe(path)
        self._timestamps = None
        self._turned = False
        try:
            reader = self._open()
            stamps = reader.get_frame_timestamp(np.arange(len(reader)))[:, 0].astype(np.float64)
            # Decoding a frame costs time: look at the shape only where a rotation could have changed it.
            shape = reader[0].shape if self.info.rotation else (self.info.height, self.info.width)
            del reader
        except Exception as err:  # decord raises its own DECORDError and plain RuntimeErrors
            log.info("decord cannot open %s (%s); decoding with PyAV", path, err)
            return
        # decord counts from the stream's start, so its first frame must be the one PyAV presents first. It also
        # lists the edit list's pre-roll frames (negative times) and was seen to return wrong frames after them.
        if len(stamps) < 2 or abs(stamps[0]) > 1e-3:
            log.info("decord's timeline of %s does not start with the first frame; decoding with PyAV", path)
            return
        # decord turns frames by the display matrix itself; a half turn cannot be told from none by the shape.
        self._turned = shape[:2] != (self.info.height, self.info.width)
        if self.info.rotation == 180 or (self._turned and self.info.rotation not in (90, 270)):
            log.info("decord's rotation of %s cannot be checked; decoding with PyAV", path)
            return
        self._timestamps = stamps

    def _open(self):
        import decord

        return decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=1)

    def read(self, times: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
        """Yield uint8 [n, H, W, 3] RGB chunks covering increasing `times` (seconds from the first frame),
        decoding sequentially."""
        for batch in _read_pyav(self.path, times + self.info.start_s, chunk):
            yield to_display(batch, self.info)

    def read_sparse(self, times: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
        """Like `read`, by random access: for times far apart (decord, PyAV where decord fails)."""
        done = 0
        if self._timestamps is not None:
            try:
                for batch in self._read_decord(times, chunk):
                    done += len(batch)
                    yield to_display(batch, self.info, turned=self._turned)
                return
            except BadInput:
                raise
            except Exception as err:
                # decord fails mid-file on damaged data; PyAV below then reports how far the video really goes.
                log.info("decord failed on %s (%s); decoding with PyAV", self.path, err)
        yield from self.read(times[done:], chunk)

    def _read_decord(self, times: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
        stamps = self._timestamps
        last = stamps[-1] + (stamps[-1] - stamps[-2] if len(stamps) > 1 else 0)
        if times[-1] > last + 1e-3:
            raise BadInput(f"video frames end at {last:.2f} s, before the requested {times[-1]:.2f} s")
        # The last frame shown at each time.
        indices = np.clip(np.searchsorted(stamps, times + 1e-4, side="right") - 1, 0, None)
        for begin in range(0, len(indices), chunk):
            reader = self._open()
            batch = reader.get_batch(indices[begin : begin + chunk].tolist()).asnumpy()
            del reader
            yield batch


def _read_pyav(path: str, times: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
    # `times` here are container times, as PyAV's frame.time.
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


def read_audio(
    path: str, start_s: float, end_s: float, sample_rate: int = SAMPLE_RATE, origin_s: float = 0.0
) -> np.ndarray:
    """Mono float32 samples of [start_s, end_s) at `sample_rate`, times counted from container time `origin_s`
    (the video's `VideoInfo.start_s`, so audio and frames share one timeline); silence pads a gap of up to
    AUDIO_SLACK_S at the end, a longer one raises BadInput."""
    want = int(round((end_s - start_s) * sample_rate))
    start_s, end_s = start_s + origin_s, end_s + origin_s
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
            f"audio ends at {start_s - origin_s + wave.size / sample_rate:.2f} s, {missing / sample_rate:.2f} s "
            f"before the video range ending at {end_s - origin_s:.2f} s"
        )
    return np.pad(wave, (0, missing)) if missing > 0 else wave
