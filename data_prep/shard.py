"""Talking-head corpora to WebDataset shards: `python -m data_prep.shard CONFIG.yaml [key=value ...]`.

Per clip: decode at 25 fps, face track and 256 px crops, 70-d motion + identity of the reference (first) frame,
16 kHz audio features aligned to the frames, emotion label, meta.json; written to `<split>-%06d.tar` with
manifest.jsonl, failures.jsonl and stats.json (schema in docs/CONTRACTS.md). Re-running the same command skips
what is done; an interrupted run resumes without losing or duplicating clips (see data_prep/writer.py).
With `num_tasks > 1` each Slurm array task writes under `<output.dir>/tasks/<task_index>` and
`python -m data_prep.shard --merge CONFIG.yaml` joins them into `<output.dir>`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from data_prep.config import FPS, SAMPLE_RATE, ShardConfig
from data_prep.decode import BadInput, FrameReader, VideoInfo, chunk_size, output_times, probe, read_audio
from data_prep.face_crop import FaceDetector, crop_frames, sample_indices, track_from_detections
from data_prep.layouts import ClipSource, list_sources
from data_prep.splits import SPLITS, speaker_splits
from data_prep.stats import merge_stats, shard_moments, stats_dict, write_stats
from data_prep.writer import (
    FAILURES,
    MANIFEST,
    SHARD_PATTERN,
    ShardSetWriter,
    canonical_rows,
    completed_shards,
    encode_npy,
    read_jsonl,
    write_jsonl,
)
from moda_train.config import ConfigError, describe_schema, load_config
from moda_train.motion_layout import MOTION_DIM

log = logging.getLogger("data_prep.shard")
STATS = "stats.json"
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


def clip_ranges(start_s: float, end_s: float, max_seconds: float) -> list[tuple[float, float]]:
    """Cut [start, end) into equal parts no longer than max_seconds."""
    parts = max(1, math.ceil((end_s - start_s) / max_seconds - 1e-9))
    step = (end_s - start_s) / parts
    return [(start_s + k * step, start_s + (k + 1) * step) for k in range(parts)]


def backend_info(extractor) -> dict:
    """{name, version} of an extractor, as recorded in meta.json and stats.json."""
    return {"name": extractor.name, "version": str(extractor.version)}


def build_extractors(cfg: ShardConfig) -> tuple:
    """The motion and audio extractors of the config; a missing checkpoint or unknown backend raises here."""
    from data_prep.audio import get_audio_extractor
    from data_prep.motion import get_motion_extractor

    motion = get_motion_extractor(cfg.motion.backend, **cfg.motion.options)
    audio = get_audio_extractor(cfg.audio.backend, **cfg.audio.options)
    return motion, audio


class ClipProcessor:
    """Turns one clip source into encoded samples; holds the extractors and face detector of one process."""

    def __init__(self, cfg: ShardConfig) -> None:
        self.cfg = cfg
        self.motion, self.audio = build_extractors(cfg)
        self.detector = FaceDetector(cfg.face)

    def process(self, task: Task) -> SourceResult:
        """All clips of a source (skipping finished ones); a bad source gives one failed outcome."""
        self.clock = StageClock()
        outcomes = self._process(task)
        return SourceResult(outcomes, dict(self.clock.seconds))

    def _process(self, task: Task) -> list[Outcome]:
        source = task.source
        try:
            with self.clock("decode"):
                info = probe(source.path)
            if not info.has_audio:
                raise BadInput("no audio stream: the video is silent, a talking-head clip needs speech")
            end = source.end_s if source.end_s is not None else info.duration_s
            if end > info.duration_s + 0.5:
                raise BadInput(f"annotated range ends at {end:.2f} s but the video lasts {info.duration_s:.2f} s")
            end = min(end, info.duration_s)
            length = end - source.start_s
            if length * FPS + 1e-6 < self.cfg.min_frames():
                raise BadInput(
                    f"too short: {max(length, 0):.2f} s, a clip needs at least {self.cfg.clip.min_seconds:.2f} s "
                    f"({self.cfg.min_frames()} frames: one window plus the previous frame)"
                )
        except BadInput as err:
            return [Outcome(source.key, task.split, source.source, reason=str(err))]
        outcomes = []
        for index, (start, stop) in enumerate(clip_ranges(source.start_s, end, self.cfg.clip.max_seconds)):
            key = f"{source.key}_c{index:03d}"
            if key in task.done:
                continue
            try:
                sample, frames = self.make_clip(source, task.split, key, info, start, stop)
                outcomes.append(Outcome(key, task.split, source.source, sample, frames))
            except BadInput as err:
                outcomes.append(Outcome(key, task.split, source.source, reason=str(err), extra=_span(start, stop)))
            except Exception as err:  # noqa: BLE001 - one odd file must not stop a corpus-sized run
                log.exception("unexpected error on %s", source.source)
                reason = f"unexpected error ({type(err).__name__}: {err})"
                outcomes.append(Outcome(key, task.split, source.source, reason=reason, extra=_span(start, stop)))
        return outcomes

    def _extract_motion(self, crops: np.ndarray):
        try:
            return self.motion.extract(crops, ref_index=0)
        except ValueError as err:  # e.g. the landmarks backend's NoFaceError
            raise BadInput(f"face landmarks: {err}") from err

    def make_clip(
        self, source: ClipSource, split: str, key: str, info: VideoInfo, start: float, stop: float
    ) -> tuple[dict[str, bytes | str], int]:
        """Decode, crop, extract and encode one clip [start, stop)."""
        cfg, clock = self.cfg, self.clock
        num_frames = int(math.floor((stop - start) * FPS + 1e-6))
        times = output_times(start, num_frames, FPS)
        with clock("decode"):
            wave = read_audio(source.path, start, start + num_frames / FPS, SAMPLE_RATE)

        reader = FrameReader(source.path)
        chunk = chunk_size(info.width, info.height)
        detect_at = sample_indices(num_frames, cfg.face.detect_every)
        detections = []
        for block in clock.timed("decode", reader.read_sparse(times[detect_at], chunk)):
            with clock("face"):
                detections.extend(self.detector.detect(frame) for frame in block)
        with clock("face"):
            track = track_from_detections(detections, detect_at, num_frames, FPS, cfg.face)

        motion, valid, identity, ref = [], [], None, None
        position = 0
        for frames in clock.timed("decode", reader.read(times, min(chunk, cfg.motion.chunk_frames))):
            with clock("face"):
                crops = crop_frames(frames, track.boxes[position : position + len(frames)], cfg.face.crop_size)
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
            "variable_frame_rate": info.variable_frame_rate,
            "valid_fraction": round(float(valid.mean()), 4),
        }
        with clock("write"):
            ok, jpeg = cv2.imencode(
                ".jpg", cv2.cvtColor(ref, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
            )
            if not ok:
                raise RuntimeError("JPEG encoding of the reference crop failed")
            sample = {
                "__key__": key,
                "motion.npy": encode_npy(motion),
                "audio.npy": encode_npy(audio.astype(np.float16)),
                "identity.npy": encode_npy(np.asarray(identity, dtype=np.float32)),
                "ref.jpg": jpeg.tobytes(),
                "emotion.cls": str(source.emotion).encode(),
                "meta.json": json.dumps(meta, sort_keys=True).encode(),
            }
        return sample, num_frames


def _span(start: float, stop: float) -> dict:
    return {"start_s": round(start, 4), "end_s": round(stop, 4)}


_WORKER: ClipProcessor | None = None


def _init_worker(cfg: ShardConfig) -> None:
    global _WORKER
    # One thread per worker: the workers are the parallelism, oversubscribed threads only slow them down.
    cv2.setNumThreads(1)
    import torch

    torch.set_num_threads(1)
    _WORKER = ClipProcessor(cfg)


def _work(task: Task) -> SourceResult:
    return _WORKER.process(task)


def task_dir(cfg: ShardConfig) -> Path:
    """Where this task writes: the output folder itself, or `tasks/<index>` under it for array jobs."""
    out = Path(cfg.output.dir)
    return out if cfg.num_tasks == 1 else out / "tasks" / f"{cfg.task_index:04d}"


def plan(cfg: ShardConfig) -> list[Task]:
    """This task's slice of the corpus with splits assigned; raises ValueError on a broken annotation file."""
    sources = list_sources(cfg.input, cfg.corpus)
    if not sources:
        raise ValueError(f"no videos found under input.root={cfg.input.root!r} (layout {cfg.input.layout})")
    splits = speaker_splits(
        ((s.speaker, s.split) for s in sources), cfg.split.val_fraction, cfg.split.test_fraction, cfg.split.seed
    )
    # Strided slices keep each task's share of long and short files balanced.
    return [Task(s, splits[s.speaker]) for s in sources[cfg.task_index :: cfg.num_tasks]]


def _run_tasks(cfg: ShardConfig, tasks: list[Task], progress: bool) -> Iterator[SourceResult]:
    if cfg.workers == 0:
        processor = ClipProcessor(cfg)
        for task in tqdm(tasks, unit="video", disable=not progress):
            yield processor.process(task)
        return
    # spawn: workers must not inherit the parent's threads (torch, tqdm) through fork.
    context = multiprocessing.get_context("spawn")
    with context.Pool(cfg.workers, initializer=_init_worker, initargs=(cfg,)) as pool:
        # imap keeps input order, so the shards come out the same for any worker count.
        yield from tqdm(pool.imap(_work, tasks, chunksize=1), total=len(tasks), unit="video", disable=not progress)


def prepare(cfg: ShardConfig) -> tuple[list[Task], dict, list[int]]:
    """This task's work list, the extractors' {name, version} and the audio frame shape, without writing anything.

    Raises ConfigError for a broken annotation file, an empty corpus or an extractor that cannot be built
    (unknown backend or option, missing checkpoint, missing optional package)."""
    try:
        tasks = plan(cfg)
        motion, audio = build_extractors(cfg)
    except (ValueError, OSError, ImportError) as err:
        raise ConfigError(str(err)) from err
    backends = dict(motion_backend=backend_info(motion), audio_backend=backend_info(audio))
    return tasks, backends, list(audio.frame_shape)


def run(cfg: ShardConfig, progress: bool = True) -> dict:
    """Process this task's slice of the corpus and finalise its folder; returns a summary dict."""
    tasks, backends, frame_shape = prepare(cfg)
    out = task_dir(cfg)
    writer = ShardSetWriter(
        out, cfg.output.shard_max_clips, int(cfg.output.shard_max_mb * 2**20), cfg.output.retry_failed
    )
    done_by_source: dict[str, set[str]] = defaultdict(set)
    for key in writer.done_keys:
        done_by_source[key.rpartition("_c")[0]].add(key)
    todo = [
        Task(t.source, t.split, frozenset(done_by_source.get(t.source.key, ())))
        for t in tasks
        if t.source.key not in writer.done_keys
    ]
    log.info("%d sources in this task, %d to process, output %s", len(tasks), len(todo), out)
    cpu: dict[str, float] = defaultdict(float)
    new_frames = 0
    for result in _run_tasks(cfg, todo, progress):
        for stage, seconds in result.cpu.items():
            cpu[stage] += seconds
        begin = time.process_time()
        for outcome in result.outcomes:
            if outcome.sample is not None:
                writer.write(outcome.split, outcome.sample, {"source": outcome.source, "frames": outcome.frames})
                new_frames += outcome.frames
            else:
                writer.fail(outcome.source, outcome.key, outcome.reason, split=outcome.split, **outcome.extra)
        cpu["write"] += time.process_time() - begin
    begin = time.process_time()
    writer.close()
    cpu["write"] += time.process_time() - begin
    summary = finalize(out, writer.rows, writer.failures, backends, frame_shape)
    summary["this_run"] = throughput(new_frames / FPS, cpu)
    return summary


def throughput(video_seconds: float, cpu: dict[str, float]) -> dict:
    """Seconds of video prepared per CPU-second, per stage and overall, for the clips this run wrote."""
    stages = ("decode", "face", "motion", "audio", "write")
    total = sum(cpu.get(stage, 0.0) for stage in stages)
    rate = {stage: round(video_seconds / cpu[stage], 2) if cpu.get(stage) else None for stage in stages}
    return {
        "video_seconds": round(video_seconds, 2),
        "cpu_seconds": {stage: round(cpu.get(stage, 0.0), 3) for stage in stages},
        "video_seconds_per_cpu_second": {**rate, "all": round(video_seconds / total, 3) if total else None},
    }


def finalize(out: Path, rows: list[dict], failures: list[dict], backends: dict, frame_shape: list[int]) -> dict:
    """Write the canonical manifest and failures and the training-split statistics; return a summary."""
    manifest, failed = canonical_rows(rows, failures)
    write_jsonl(out / MANIFEST, manifest)
    write_jsonl(out / FAILURES, failed)
    train = [p for p in completed_shards(out) if p.name.startswith("train-")]
    stats = stats_dict(shard_moments(train), backends["motion_backend"], backends["audio_backend"], frame_shape)
    write_stats(out / STATS, stats)
    return summarize(out, manifest, failed)


def summarize(out: Path, manifest: list[dict], failed: list[dict]) -> dict:
    """Clips and frames per split, failures, shard count."""
    clips = {split: sum(1 for r in manifest if r["status"] == "ok" and r["split"] == split) for split in SPLITS}
    frames = {
        split: sum(r["frames"] for r in manifest if r["status"] == "ok" and r["split"] == split)
        for split in SPLITS
    }
    return {
        "output": str(out),
        "clips": clips,
        "frames": frames,
        "failed": len(failed),
        "shards": len(completed_shards(out)),
    }


def publish(shard: Path, target: Path) -> None:
    """Hard-link a task's shard under its merged name (a copy where the file system has no hard links), via a
    temporary name so the merged name only ever shows a complete file. The task folder keeps its shard, so a
    re-submitted task still resumes and the merge can run again."""
    tmp = target.with_name(f".{target.name}.partial")
    tmp.unlink(missing_ok=True)
    try:
        os.link(shard, tmp)
    except OSError:
        shutil.copyfile(shard, tmp)
    os.replace(tmp, target)


def merge(cfg: ShardConfig) -> dict:
    """Join the task folders of an array job into `<output.dir>`: shards renumbered per split in task order,
    manifests and failures concatenated, statistics merged exactly. Safe to re-run at any time."""
    out = Path(cfg.output.dir)
    task_dirs = [out / "tasks" / f"{i:04d}" for i in range(cfg.num_tasks)]
    unfinished = [str(d) for d in task_dirs if not (d / STATS).is_file()]
    if unfinished:
        raise ValueError(f"cannot merge: these tasks have not finished (no {STATS}): {', '.join(unfinished)}")
    rows, failures, stats = [], [], []
    next_index = {split: 0 for split in SPLITS}
    for directory in task_dirs:
        task_rows = [r for r in read_jsonl(directory / MANIFEST) if r["status"] == "ok"]
        renamed = {}
        for row in task_rows:
            if row["shard"] not in renamed:
                split = row["split"]
                renamed[row["shard"]] = SHARD_PATTERN.format(split=split, index=next_index[split])
                next_index[split] += 1
        for old, new in renamed.items():
            if not (directory / old).is_file():
                raise ValueError(f"cannot merge: shard {directory / old} is missing")
            publish(directory / old, out / new)
        rows.extend(dict(r, shard=renamed[r["shard"]]) for r in task_rows)
        failures.extend(read_jsonl(directory / FAILURES))
        stats.append(json.loads((directory / STATS).read_text()))
    manifest, failed = canonical_rows(rows, failures)
    write_jsonl(out / MANIFEST, manifest)
    write_jsonl(out / FAILURES, failed)
    write_stats(out / STATS, merge_stats(stats))
    return summarize(out, manifest, failed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.shard",
        description="Turn a talking-head corpus into WebDataset shards (see configs/data_prep/).",
        epilog=f"Config keys (override any with key=value):\n{describe_schema(ShardConfig)}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="shard config YAML, e.g. configs/data_prep/demo.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. workers=4 output.dir=out")
    parser.add_argument("--merge", action="store_true", help="merge the task folders of a Slurm array run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    parser.add_argument(
        "--dry-run", action="store_true", help="check the config, list the inputs per split, write nothing"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns 2 on a configuration error (before any work), 0 on success."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg, _ = load_config(args.config, args.overrides, schema=ShardConfig)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    try:
        if args.dry_run:
            tasks, backends, _ = prepare(cfg)
            per_split = {split: sum(t.split == split for t in tasks) for split in SPLITS}
            summary = {"inputs": per_split, **backends}
        else:
            summary = merge(cfg) if args.merge else run(cfg, progress=not args.no_progress)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # merge of unfinished or inconsistent task folders
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
