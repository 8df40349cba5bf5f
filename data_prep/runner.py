"""Planning and running one shard task: list the corpus, assign splits, skip what is done, process the rest in a
worker pool, write shards, manifest, failures and stats.json."""

from __future__ import annotations

import logging
import multiprocessing
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import cv2
from tqdm import tqdm

from data_prep.clip_processor import (
    ClipProcessor,
    SourceResult,
    Task,
    backend_info,
    build_extractors,
    clip_key,
)
from data_prep.config import ShardConfig
from data_prep.corpus_layouts import list_sources
from data_prep.splits import SPLITS, speaker_splits
from data_prep.stats import shard_moments, stats_dict
from data_prep.writer import (
    FAILURES,
    MANIFEST,
    SOURCES,
    ShardSetWriter,
    canonical_rows,
    completed_shards,
    write_jsonl,
)
from moda_train.core.config_loader import ConfigError
from moda_train.core.rates import FPS
from moda_train.core.sample import EMOTION
from moda_train.core.stats import STATS_FILE, write_stats_file

log = logging.getLogger("data_prep.shard")


_WORKER: ClipProcessor | None = None
_CLIP_KEY = re.compile(r"(.+)_c\d{3,}")


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
    if not tasks:  # nothing to do: no worker pool, no extractors to load
        return
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
    try:
        writer = ShardSetWriter(
            out, cfg.output.shard_max_clips, int(cfg.output.shard_max_mb * 2**20), cfg.output.retry_failed
        )
    except OSError as err:
        raise ConfigError(f"output.dir={cfg.output.dir!r}: cannot write there ({err.strerror}: {err.filename})")
    todo = pending_tasks(tasks, writer)
    log.info("%d sources in this task, %d to process, output %s", len(tasks), len(todo), out)
    cpu: dict[str, float] = defaultdict(float)
    new_frames = 0
    for task, result in zip(todo, _run_tasks(cfg, todo, progress)):
        for stage, seconds in result.cpu.items():
            cpu[stage] += seconds
        begin = time.process_time()
        if result.clips:
            writer.planned(task.source.key, task.source.source, result.clips)
        for outcome in result.outcomes:
            if outcome.sample is not None:
                row = {"source": outcome.source, "frames": outcome.frames, "emotion": int(outcome.sample[EMOTION])}
                writer.write(outcome.split, outcome.sample, row)
                new_frames += outcome.frames
            else:
                writer.fail(outcome.source, outcome.key, outcome.reason, split=outcome.split, **outcome.extra)
        cpu["write"] += time.process_time() - begin
    begin = time.process_time()
    writer.close()
    cpu["write"] += time.process_time() - begin
    write_jsonl(out / SOURCES, writer.source_rows())
    summary = finalize(out, writer.rows, writer.failures, backends, frame_shape)
    summary["this_run"] = throughput(new_frames / FPS, cpu)
    return summary


def pending_tasks(tasks: list[Task], writer: ShardSetWriter) -> list[Task]:
    """The tasks with work left, each with its finished clip keys. A source that failed as a whole, or whose
    every clip (by the count sources.jsonl recorded) is in a finished shard or failures, is not even opened."""
    done_by_source: dict[str, set[str]] = defaultdict(set)
    for key in writer.done_keys:
        match = _CLIP_KEY.fullmatch(key)
        if match:
            done_by_source[match.group(1)].add(key)
    todo = []
    for task in tasks:
        key = task.source.key
        done = done_by_source.get(key, set())
        clips = writer.source_clips.get(key)
        finished = clips is not None and all(clip_key(key, i) in done for i in range(clips))
        if key not in writer.done_keys and not finished:
            todo.append(Task(task.source, task.split, frozenset(done)))
    return todo


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
    write_stats_file(out / STATS_FILE, stats)
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
