"""The WebDataset pipeline: shards of clips -> shuffled batches of motion windows.

Each stage is a small generator function; `WindowDataset.__iter__` chains them. Every random choice of one
loader worker (which shard, which window, shuffle order) comes from one `random.Random` seeded by
(seed, epoch, rank, worker), so a run's data order is a pure function of those four numbers: that is what lets a
resumed run fast-forward to the exact batch it stopped at (see `datamodule.py`).

Shards are not split between ranks: every rank and every worker draws shards with replacement from the whole
(weighted) list, each with its own seeded stream, so ranks and workers read different samples (they coincide
only by chance) and no rank can run out of shards before another.
"""

from __future__ import annotations

import glob
import logging
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from braceexpand import braceexpand

from moda_train.core.sample import clip_problem, decode_sample
from moda_train.core.stats import MotionStats
from moda_train.data.shard_check import tar_samples

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardSource:
    urls: list[str]
    weight: float


def expand_urls(spec: str) -> list[ShardSource]:
    """Parse `a-{000..009}.tar@2::b/*.tar` into sources: `::` separates sources, `@w` weights one, braces and
    (for local paths) globs expand. Raises ValueError naming a source that matches no file."""
    sources = []
    for part in filter(None, (p.strip() for p in spec.split("::"))):
        pattern, _, weight = part.rpartition("@") if "@" in part.rsplit("/", 1)[-1] else (part, "", "1")
        urls: list[str] = []
        for url in braceexpand(pattern):
            is_remote = "://" in url or url.startswith("pipe:")
            urls.extend([url] if is_remote or not glob.has_magic(url) else sorted(glob.glob(url)))
        if not urls:
            raise ValueError(f"shard source {pattern!r} matches no files")
        sources.append(ShardSource(urls, float(weight)))
    if not sources:
        raise ValueError(f"no shard sources in {spec!r}")
    return sources


def draw_shards(sources: list[ShardSource], rng: random.Random) -> Iterator[dict]:
    """Endless weighted draw with replacement: pick a source by weight, then a shard of it uniformly."""
    weights = [s.weight for s in sources]
    while True:
        source = rng.choices(sources, weights)[0]
        yield {"url": rng.choice(source.urls)}


class SkipCounter:
    """A webdataset error handler that logs and counts what it skips instead of failing the run, up to a point:
    `max_consecutive` skips with no good sample between them (all shards unreadable, a vanished mount) stop the
    run with the last error. `lost=n` counts the n samples a damaged shard lost behind one error."""

    def __init__(self, max_consecutive: int = 0) -> None:
        self.count = 0
        self.consecutive = 0
        self.max_consecutive = max_consecutive
        self._reported = 0

    def __call__(self, exn: Exception, lost: int = 1) -> bool:
        self.count += lost
        self.consecutive += 1
        if self.count <= 10 or self.count % 100 == 0 or lost > 1:
            log.warning("skipped unreadable data (%d samples so far in this loader worker): %s", self.count, exn)
        if self.max_consecutive and self.consecutive >= self.max_consecutive:
            raise RuntimeError(
                f"{self.consecutive} unreadable shards or samples in a row (data.max_consecutive_skips="
                f"{self.max_consecutive}): the data is unusable, stopping. Last error: {exn}"
            )
        return True  # keep going

    def good(self) -> None:
        """A sample decoded: the run of skips is broken."""
        self.consecutive = 0

    def take_new(self) -> int:
        """Skips since the previous call (what a batch reports; the training side adds them up)."""
        new, self._reported = self.count - self._reported, self.count
        return new


def decode_clips(
    samples: Iterable[dict], stats: MotionStats, skipped: SkipCounter, audio_backend: str = ""
) -> Iterator[dict]:
    """Tar members -> clip dicts with normalised motion; a sample that fails to decode is counted and skipped."""
    for sample in samples:
        try:
            clip = decode_sample(sample)
            motion, audio = clip.motion.astype(np.float32), clip.audio.astype(np.float32)
            identity, emotion, meta = clip.identity.astype(np.float32), clip.emotion, clip.meta
            if motion.ndim != 2 or motion.shape[1] != stats.mean.shape[0] or len(audio) != len(motion):
                raise ValueError(f"motion {motion.shape} / audio {audio.shape} do not match the contract")
            if problem := clip_problem(clip):
                raise ValueError(problem)
            backend = meta.get("audio_backend", {}).get("name", "")
            if audio_backend and backend and backend != audio_backend:
                raise ValueError(f"audio backend {backend!r}, expected {audio_backend!r} (data.audio_backend)")
        except Exception as exn:  # any corrupt member: count it, never end the run
            skipped(ValueError(f"sample {sample.get('__key__', '?')} in {sample.get('__url__', '?')}: {exn}"))
            continue
        skipped.good()
        yield {
            "key": sample["__key__"],
            "motion": stats.normalize(motion),
            "audio": audio.reshape(len(audio), -1),
            "identity": identity,
            "emotion": emotion,
        }


def _window(clip: dict, start: int, window: int, prev: int) -> dict:
    return {
        "motion": clip["motion"][start : start + window],
        "prev_motion": clip["motion"][start - prev : start],
        "audio": clip["audio"][start : start + window],
        "identity": clip["identity"],
        "emotion": clip["emotion"],
        "key": clip["key"],
        "start": start,
    }


def random_windows(clips: Iterable[dict], window: int, prev: int, rng: random.Random) -> Iterator[dict]:
    """Cut about one window per `window` frames of each clip, at random starts (clips too short are skipped)."""
    for clip in clips:
        last_start = len(clip["motion"]) - window
        if last_start < prev:
            continue
        for _ in range(max(1, (last_start - prev) // window)):
            yield _window(clip, rng.randint(prev, last_start), window, prev)


def fixed_windows(clips: Iterable[dict], window: int, prev: int) -> Iterator[dict]:
    """Deterministic windows for validation: consecutive, non-overlapping, from frame `prev` on."""
    for clip in clips:
        for start in range(prev, len(clip["motion"]) - window + 1, window):
            yield _window(clip, start, window, prev)


def shuffle(items: Iterable[dict], buffer_size: int, rng: random.Random) -> Iterator[dict]:
    """Shuffle buffer: once `buffer_size` items are held, each new item releases a randomly chosen one."""
    buffer: list[dict] = []
    for item in items:
        buffer.append(item)
        if len(buffer) >= buffer_size:
            yield buffer.pop(rng.randrange(len(buffer)))
    rng.shuffle(buffer)
    yield from buffer


def collate(windows: list[dict]) -> dict:
    batch = {
        name: torch.from_numpy(np.stack([w[name] for w in windows]))
        for name in ("motion", "prev_motion", "audio", "identity")
    }
    batch["emotion"] = torch.tensor([w["emotion"] for w in windows], dtype=torch.long)
    batch["start"] = torch.tensor([w["start"] for w in windows], dtype=torch.long)
    batch["key"] = [w["key"] for w in windows]
    return batch


def batched(windows: Iterable[dict], batch_size: int, skipped: SkipCounter) -> Iterator[dict]:
    """Full batches only (every rank must step the same number of times); each carries the samples skipped since
    the previous batch of its worker (lit/guards.py sums them over workers and ranks)."""
    pending: list[dict] = []
    for window in windows:
        pending.append(window)
        if len(pending) == batch_size:
            batch = collate(pending)
            batch["num_skipped"] = torch.tensor(skipped.take_new())
            yield batch
            pending = []


class WindowDataset(torch.utils.data.IterableDataset):
    """Training windows: endless weighted resampling of shards, shuffled, batched inside the worker."""

    def __init__(
        self,
        sources,
        stats,
        window,
        prev,
        batch_size,
        buffer_size,
        seed,
        epoch,
        audio_backend="",
        rank=0,
        max_skips=0,
    ):
        super().__init__()
        self.sources, self.stats, self.window, self.prev = sources, stats, window, prev
        self.batch_size, self.buffer_size, self.seed, self.epoch = batch_size, buffer_size, seed, epoch
        self.audio_backend, self.rank, self.max_skips = audio_backend, rank, max_skips

    def __iter__(self) -> Iterator[dict]:
        # The rank is given by the datamodule (the trainer's global rank), not guessed from the environment
        # inside the worker: launchers differ in which variables they set.
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        rng = random.Random(f"{self.seed}-{self.epoch.get_value()}-{self.rank}-{worker}")
        skipped = SkipCounter(self.max_skips)
        samples = tar_samples(draw_shards(self.sources, rng), handler=skipped)
        clips = decode_clips(samples, self.stats, skipped, self.audio_backend)
        windows = shuffle(random_windows(clips, self.window, self.prev, rng), self.buffer_size, rng)
        return batched(windows, self.batch_size, skipped)


class ValidationDataset(torch.utils.data.IterableDataset):
    """The first `num_windows` fixed windows of the validation shards, read in order: the same every time."""

    def __init__(self, urls, stats, window, prev, batch_size, num_windows, audio_backend=""):
        super().__init__()
        self.urls, self.stats, self.window, self.prev = urls, stats, window, prev
        self.batch_size, self.num_windows, self.audio_backend = batch_size, num_windows, audio_backend

    def __iter__(self) -> Iterator[dict]:
        skipped = SkipCounter()
        samples = tar_samples(({"url": u} for u in self.urls), handler=skipped)
        windows = fixed_windows(
            decode_clips(samples, self.stats, skipped, self.audio_backend), self.window, self.prev
        )
        pending = []
        for index, window in enumerate(windows):
            if index == self.num_windows:
                break
            pending.append(window)
            if len(pending) == self.batch_size:
                yield collate(pending)
                pending = []
        if pending:
            yield collate(pending)
