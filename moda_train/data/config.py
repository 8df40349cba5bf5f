"""Configuration of the training data: which shards, how windows are cut, how batches are loaded."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING


@dataclass
class DataConfig:
    train_shards: str = MISSING
    """Training shards: a brace pattern or URL WebDataset understands; join several sources with `::`, and give
    a source a sampling weight with `@`, e.g. `hdtf-{000..099}.tar@2::mead-{000..049}.tar@1`."""
    val_shards: str = ""
    """Validation shards (same syntax); empty means no validation."""
    stats_path: str = MISSING
    """Motion normalisation statistics (`stats.json` written by data_prep beside the shards)."""
    window_frames: int = 80
    """Frames the model generates per window (80 = 3.2 s at 25 fps)."""
    prev_frames: int = 1
    """Frames before the window given as the previous-motion condition."""
    samples_per_epoch: int = 10000
    """Windows in one virtual epoch, over all ranks; every rank gets the same number of batches from it."""
    val_windows: int = 64
    """Fixed validation windows (the same ones at every validation)."""
    num_workers: int = 2
    """Loader worker processes per rank."""
    shuffle_buffer: int = 500
    """Windows held in the sample shuffle buffer per worker."""
    audio_backend: str = ""
    """Expected audio feature backend of the shards (checked against their meta.json); empty accepts any."""
    max_consecutive_skips: int = 100
    """Unreadable shards or bad samples in a row (per loader worker) that stop the run: data this broken is an
    error, not noise. 0 never stops."""
    motion_backend: str = ""
    """Motion extractor of the shards (checked against their stats.json when a run starts); generation extracts
    the reference photo's motion with it. Empty: whatever stats.json records."""
    motion_convention: str = ""
    """Crop and expression convention of that motion (e.g. `liveportrait-crop,native-expression`), checked against
    stats.json when a run starts, against an init_from checkpoint's and against the reference extractor at
    generation. Empty: a run takes what stats.json records and saves it in its checkpoints."""

    def __post_init__(self) -> None:
        problems = []
        if self.window_frames < 2:
            problems.append("data.window_frames must be >= 2")
        if self.prev_frames < 0:
            problems.append("data.prev_frames must be >= 0")
        if self.num_workers < 0:
            problems.append("data.num_workers must be >= 0")
        if self.max_consecutive_skips < 0:
            problems.append("data.max_consecutive_skips must be >= 0")
        if problems:
            raise ValueError("; ".join(problems))
