"""Configuration of `python -m data_prep.shard`: which corpus, how clips are cut, cropped, featurised and sharded.

Filled from a YAML file plus `key=value` overrides by `moda_train.core.config_loader.load_config(path, overrides,
schema=ShardConfig)`; an unknown key, a wrong type or a failed check stops the run before any work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING

from moda_train.core.rates import FPS
from moda_train.perception.config import AudioBackendConfig, FaceConfig, MotionBackendConfig

LAYOUTS = ("generic", "hdtf", "mead", "celebvhq")


@dataclass
class InputConfig:
    root: str = MISSING
    """Folder holding the corpus's videos (paths in annotation files are relative to it)."""
    layout: str = "generic"
    """How the corpus is laid out: generic (a folder of videos, optional CSV of labels), hdtf (clip list with
    timestamps), mead (`<speaker>/video/front/<emotion>/level_<k>/<nnn>.mp4`), celebvhq (JSON annotations)."""
    annotations: str = ""
    """Labels/annotation file: generic = CSV with a `path` column and optional speaker, emotion, split columns;
    hdtf = text file of `<video> <start>-<end> ...` lines (required); celebvhq = `celebvhq_info.json`
    (required); mead = unused. A relative path is taken from input.root (so overriding input.root moves both);
    an absolute path is used as is."""
    corpus: str = ""
    """Corpus name written into meta.json and the clip keys; empty means the layout's name."""
    extensions: list[str] = field(default_factory=lambda: [".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"])
    """File endings treated as videos when a generic folder is listed without a CSV."""
    speaker_pattern: str = ""
    """Regular expression taking the speaker from a video's name; it must match the whole name, and its group
    `speaker` (or the whole match) is the speaker. hdtf: the file name without ending (default: the person, set
    prefix and video index dropped: `WDA_AmyKlobuchar1_000` -> `AmyKlobuchar`); generic: the path below
    input.root without ending, for rows without a CSV speaker (default: first sub-folder, else the file name).
    Not used by mead and celebvhq, whose speakers come from the layout itself."""

    def annotations_path(self) -> Path:
        """`annotations` as a path: relative ones are inside (or beside, with `..`) input.root."""
        return Path(self.root) / self.annotations  # pathlib keeps an absolute right-hand side as it is


@dataclass
class OutputConfig:
    dir: str = MISSING
    """Output folder for `<split>-%06d.tar`, manifest.jsonl, failures.jsonl and stats.json."""
    shard_max_clips: int = 500
    """A shard is closed once it holds this many clips."""
    shard_max_mb: float = 1024.0
    """... or once adding the next clip would take it past this many megabytes (a single larger clip still gets
    a shard of its own)."""
    retry_failed: bool = False
    """Re-run clips listed in failures.jsonl instead of skipping them (after fixing their files)."""


@dataclass
class ClipConfig:
    min_seconds: float = 81 / FPS
    """Shortest clip kept: one 80-frame window plus one previous frame at 25 fps (3.24 s)."""
    max_seconds: float = 60.0
    """Longer videos (or annotated ranges) are split into equal parts no longer than this; it bounds the memory
    one clip needs. Must be at least twice min_seconds so that no part falls below the minimum."""


@dataclass
class SplitConfig:
    val_fraction: float = 0.05
    """Fraction of speakers (not clips) assigned to val, by a hash of the speaker name."""
    test_fraction: float = 0.05
    """Fraction of speakers assigned to test. A split given in the labels CSV wins over the hash."""
    seed: int = 0
    """Salt of the speaker hash; change it to draw a different, equally stable split."""


@dataclass
class ShardConfig:
    input: InputConfig = field(default_factory=InputConfig)
    """The corpus to read."""
    output: OutputConfig = field(default_factory=OutputConfig)
    """Where and how shards are written."""
    clip: ClipConfig = field(default_factory=ClipConfig)
    """Clip length limits."""
    split: SplitConfig = field(default_factory=SplitConfig)
    """Train/val/test assignment by speaker."""
    face: FaceConfig = field(default_factory=FaceConfig)
    """Face detection and the stable square crop."""
    motion: MotionBackendConfig = field(default_factory=MotionBackendConfig)
    """Per-frame 70-d motion and reference identity."""
    audio: AudioBackendConfig = field(default_factory=AudioBackendConfig)
    """Audio features aligned to the video frames."""
    workers: int = 2
    """Worker processes preparing clips in parallel; 0 runs everything in the main process."""
    task_index: int = 0
    """This task's slice of the input when the corpus is split over a Slurm array (SLURM_ARRAY_TASK_ID)."""
    num_tasks: int = 1
    """Number of slices (array size). With more than one, each task writes under `<output.dir>/tasks/<index>`
    and `python -m data_prep.shard --merge CONFIG` joins them."""

    def __post_init__(self) -> None:
        problems = []
        if self.input.layout not in LAYOUTS:
            problems.append(f"input.layout={self.input.layout!r}: choose one of {', '.join(LAYOUTS)}")
        if self.input.speaker_pattern:
            if self.input.layout not in ("generic", "hdtf"):
                problems.append(f"input.speaker_pattern is not used by input.layout={self.input.layout}")
            try:
                re.compile(self.input.speaker_pattern)
            except re.error as err:
                problems.append(f"input.speaker_pattern={self.input.speaker_pattern!r}: {err}")
        if self.input.layout in ("hdtf", "celebvhq") and not self.input.annotations:
            problems.append(f"input.annotations is required with input.layout={self.input.layout}")
        if self.output.shard_max_clips < 1 or self.output.shard_max_mb <= 0:
            problems.append("output.shard_max_clips must be >= 1 and output.shard_max_mb > 0")
        if self.clip.min_seconds <= 0:
            problems.append("clip.min_seconds must be > 0")
        if self.clip.max_seconds < 2 * self.clip.min_seconds:
            problems.append(
                f"clip.max_seconds={self.clip.max_seconds} must be at least twice "
                f"clip.min_seconds={self.clip.min_seconds:g}"
            )
        fractions = (self.split.val_fraction, self.split.test_fraction)
        if min(fractions) < 0 or sum(fractions) >= 1:
            problems.append("split.val_fraction and split.test_fraction must be >= 0 and sum to less than 1")
        if self.face.crop_size < 16 or self.face.crop_scale <= 0:
            problems.append("face.crop_size must be >= 16 and face.crop_scale > 0")
        if self.face.detect_every < 1 or self.face.detect_max_side < 64:
            problems.append("face.detect_every must be >= 1 and face.detect_max_side >= 64")
        if self.face.model_selection not in (0, 1):
            problems.append("face.model_selection must be 0 or 1")
        if self.motion.chunk_frames < 1:
            problems.append("motion.chunk_frames must be >= 1")
        if self.workers < 0:
            problems.append("workers must be >= 0")
        if self.num_tasks < 1 or not 0 <= self.task_index < self.num_tasks:
            problems.append(f"task_index={self.task_index} must lie in [0, num_tasks={self.num_tasks})")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def corpus(self) -> str:
        """Corpus name for meta.json and keys."""
        return self.input.corpus or self.input.layout

    def min_frames(self) -> int:
        """Fewest frames a clip may have."""
        return round(self.clip.min_seconds * FPS)
