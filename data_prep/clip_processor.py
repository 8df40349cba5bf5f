"""One source video to encoded clip samples: decode at 25 fps, face track and crops, motion, audio features,
meta.json. `ClipProcessor` holds the extractors and face detector of one process."""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import cv2
import numpy as np

from data_prep.config import ShardConfig
from data_prep.corpus_layouts import ClipSource
from moda_train.core.motion_layout import MOTION_DIM
from moda_train.core.rates import FPS, SAMPLE_RATE
from moda_train.core.sample import encode_sample
from moda_train.perception.decode import (
    BadInput,
    FrameReader,
    VideoInfo,
    chunk_size,
    output_times,
    probe,
    read_audio,
)
from moda_train.perception.face_align import LivePortraitCropper, smooth_squares
from moda_train.perception.face_crop import (
    FaceDetector,
    crop_frames,
    face_box,
    sample_indices,
    track_from_detections,
)

log = logging.getLogger("data_prep.shard")


JPEG_QUALITY = 95


@dataclass
class Outcome:
    """One clip's result: an encoded sample to write, or the reason it failed."""

    key: str
    split: str
    source: str
    sample: dict[str, bytes | str] | None = None
    frames: int = 0
    reason: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class SourceResult:
    """Everything one clip source produced, plus the CPU seconds each stage spent on it."""

    outcomes: list[Outcome]
    cpu: dict[str, float]
    clips: int = 0
    """How many clips the source is cut into (0 when the source itself failed)."""


class StageClock:
    """CPU seconds per pipeline stage: process time, so every thread of this process counts (mediapipe and
    ffmpeg run their own threads), time spent waiting does not."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        begin = time.process_time()
        try:
            yield
        finally:
            self.seconds[stage] += time.process_time() - begin

    def timed(self, stage: str, items: Iterator) -> Iterator:
        """Yield from `items`, charging the time spent producing each item (e.g. decoding) to `stage`."""
        iterator = iter(items)
        while True:
            with self(stage):
                item = next(iterator, None)
            if item is None:
                return
            yield item


@dataclass
class Task:
    """One clip source to process, with the clip keys a previous run already finished."""

    source: ClipSource
    split: str
    done: frozenset[str] = frozenset()


def clip_key(source_key: str, index: int) -> str:
    """Key of clip `index` of a source (`ClipSource.key` never ends like this, so the two never meet)."""
    return f"{source_key}_c{index:03d}"


def clip_ranges(start_s: float, end_s: float, max_seconds: float) -> list[tuple[float, float]]:
    """Cut [start, end) into equal parts no longer than max_seconds."""
    parts = max(1, math.ceil((end_s - start_s) / max_seconds - 1e-9))
    step = (end_s - start_s) / parts
    return [(start_s + k * step, start_s + (k + 1) * step) for k in range(parts)]


def backend_info(extractor) -> dict:
    """{name, version} of an extractor, as recorded in meta.json and stats.json, plus a motion backend's
    `convention` (crop and expression, checked at training and generation time)."""
    info = {"name": extractor.name, "version": str(extractor.version)}
    if getattr(extractor, "convention", ""):
        info["convention"] = extractor.convention
    return info


def build_extractors(cfg: ShardConfig) -> tuple:
    """The motion and audio extractors of the config; a missing checkpoint or unknown backend raises here."""
    from moda_train.perception.audio import get_audio_extractor
    from moda_train.perception.motion import get_motion_extractor

    motion = get_motion_extractor(cfg.motion.backend, **cfg.motion.options)
    audio = get_audio_extractor(cfg.audio.backend, **cfg.audio.options)
    return motion, audio


class ClipProcessor:
    """Turns one clip source into encoded samples; holds the extractors and face detector of one process."""

    def __init__(self, cfg: ShardConfig) -> None:
        self.cfg = cfg
        self.motion, self.audio = build_extractors(cfg)
        self.detector = FaceDetector(cfg.face)
        # LivePortrait's rotation-aligned crop, for a backend that takes it, from FaceMesh on the detected faces.
        self.aligner = LivePortraitCropper() if self.motion.crop == "liveportrait" else None

    def process(self, task: Task) -> SourceResult:
        """All clips of a source (skipping finished ones); a bad source gives one failed outcome."""
        self.clock = StageClock()
        outcomes, clips = self._process(task)
        return SourceResult(outcomes, dict(self.clock.seconds), clips)

    def _process(self, task: Task) -> tuple[list[Outcome], int]:
        source = task.source
        try:
            with self.clock("decode"):
                info = probe(source.path)
            if not info.has_audio:
                raise BadInput("no audio stream: the video is silent, a talking-head clip needs speech")
            end = source.end_s if source.end_s is not None else info.duration_s
            if end > info.duration_s + 0.5:
                raise BadInput(f"annotated range ends at {end:.2f} s but the video lasts {info.duration_s:.2f} s")
            # An annotated end up to 0.5 s past the video is rounding in the annotation: trim it, and say so.
            trimmed = max(0.0, end - info.duration_s)
            end = min(end, info.duration_s)
            length = end - source.start_s
            if length * FPS + 1e-6 < self.cfg.min_frames():
                raise BadInput(
                    f"too short: {max(length, 0):.2f} s, a clip needs at least {self.cfg.clip.min_seconds:.2f} s "
                    f"({self.cfg.min_frames()} frames: one window plus the previous frame)"
                )
        except BadInput as err:
            return [Outcome(source.key, task.split, source.source, reason=str(err))], 0
        outcomes = []
        ranges = clip_ranges(source.start_s, end, self.cfg.clip.max_seconds)
        for index, (start, stop) in enumerate(ranges):
            key = clip_key(source.key, index)
            if key in task.done:
                continue
            try:
                sample, frames = self.make_clip(source, task.split, key, info, start, stop, trimmed)
                outcomes.append(Outcome(key, task.split, source.source, sample, frames))
            except BadInput as err:
                outcomes.append(Outcome(key, task.split, source.source, reason=str(err), extra=_span(start, stop)))
            except Exception as err:  # noqa: BLE001 - one odd file must not stop a corpus-sized run
                log.exception("unexpected error on %s", source.source)
                reason = f"unexpected error ({type(err).__name__}: {err})"
                outcomes.append(Outcome(key, task.split, source.source, reason=reason, extra=_span(start, stop)))
        return outcomes, len(ranges)

    def _extract_motion(self, crops: np.ndarray):
        try:
            return self.motion.extract(crops, ref_index=0)
        except ValueError as err:  # e.g. the landmarks backend's NoFaceError
            raise BadInput(f"face landmarks: {err}") from err

    def make_clip(
        self,
        source: ClipSource,
        split: str,
        key: str,
        info: VideoInfo,
        start: float,
        stop: float,
        trimmed: float = 0.0,
    ) -> tuple[dict[str, bytes | str], int]:
        """Decode, crop, extract and encode one clip [start, stop) (seconds from the first video frame);
        `trimmed` is how far the source's annotated range ran past the video's end."""
        cfg, clock = self.cfg, self.clock
        num_frames = int(math.floor((stop - start) * FPS + 1e-6))
        times = output_times(start, num_frames, FPS)
        with clock("decode"):
            wave = read_audio(source.path, start, start + num_frames / FPS, SAMPLE_RATE, origin_s=info.start_s)

        reader = FrameReader(source.path, info)
        chunk = chunk_size(*info.display_size())
        detect_at = sample_indices(num_frames, cfg.face.detect_every)
        detections, squares = [], []
        for block in clock.timed("decode", reader.read_sparse(times[detect_at], chunk)):
            with clock("face"):
                for frame in block:
                    detections.append(self.detector.detect(frame))
                    if self.aligner is not None:
                        box = face_box(detections[-1], cfg.face)
                        squares.append(None if box is None else self.aligner.square(frame, box))
        with clock("face"):
            track = track_from_detections(detections, detect_at, num_frames, FPS, cfg.face)
            if self.aligner is not None:
                try:
                    aligned = smooth_squares(squares, detect_at, num_frames, cfg.face.smoothing_seconds * FPS)
                except ValueError as err:
                    raise BadInput(str(err)) from err

        motion, valid, identity, ref = [], [], None, None
        position = 0
        for frames in clock.timed("decode", reader.read(times, min(chunk, cfg.motion.chunk_frames))):
            with clock("face"):
                span = slice(position, position + len(frames))
                if self.aligner is None:
                    crops = crop_frames(frames, track.boxes[span], cfg.face.crop_size)
                else:
                    crops = self.aligner.crops(frames, aligned[span], cfg.face.crop_size)
            position += len(frames)
            # The reference frame goes first in every later chunk so expression stays relative to one frame.
            first = ref is None
            ref = crops[0] if first else ref
            with clock("motion"):
                seq = self._extract_motion(crops if first else np.concatenate([ref[None], crops]))
            identity = seq.identity if first else identity
            motion.append(seq.motion[0 if first else 1 :])
            valid.append(seq.valid[0 if first else 1 :])
        motion = np.concatenate(motion).astype(np.float32)
        valid = np.concatenate(valid)
        invalid = 1.0 - float(valid.mean())
        if invalid > cfg.motion.max_invalid_fraction:
            raise BadInput(f"face landmarks not found in {invalid:.0%} of the frames")

        with clock("audio"):
            audio = np.asarray(self.audio.extract(wave, num_frames))
        if audio.shape[0] != num_frames or audio.dtype != np.float16:
            raise RuntimeError(
                f"audio extractor returned {audio.dtype} {audio.shape}, expected float16 [{num_frames}, L, D]"
            )
        if motion.shape != (num_frames, MOTION_DIM):
            raise RuntimeError(f"motion extractor returned {motion.shape}, expected [{num_frames}, {MOTION_DIM}]")

        meta = {
            "corpus": cfg.corpus,
            "source": source.source,
            "speaker": source.speaker,
            "start_s": round(start, 4),
            "end_s": round(start + num_frames / FPS, 4),
            "fps": FPS,
            "num_frames": num_frames,
            "split": split,
            "emotion": source.emotion,
            "emotion_intensity": source.intensity,
            "motion_backend": backend_info(self.motion),
            "audio_backend": backend_info(self.audio),
            "audio_frame_shape": list(audio.shape[1:]),
            "crop_size": cfg.face.crop_size,
            "source_fps": round(info.fps, 3),
            "source_size": [info.width, info.height],
            "display_size": list(info.display_size()),
            "rotation": info.rotation,
            "sample_aspect_ratio": round(info.sample_aspect_ratio, 4),
            "video_start_s": round(info.start_s, 4),
            "discarded_preroll_frames": info.discarded_frames,
            "trimmed_end_s": round(trimmed, 4),
            "variable_frame_rate": info.variable_frame_rate,
            "valid_fraction": round(float(valid.mean()), 4),
        }
        with clock("write"):
            ok, jpeg = cv2.imencode(
                ".jpg", cv2.cvtColor(ref, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
            )
            if not ok:
                raise RuntimeError("JPEG encoding of the reference crop failed")
            sample = encode_sample(key, motion, audio, identity, jpeg.tobytes(), source.emotion, meta)
        return sample, num_frames


def _span(start: float, stop: float) -> dict:
    return {"start_s": round(start, 4), "end_s": round(stop, 4)}
