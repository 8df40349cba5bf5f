"""Per-dimension motion statistics (stats.json beside the shards): the one reader and writer, and z-scores.

data_prep computes the statistics (`data_prep.stats`); everything reads and writes the file through this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

STATS_FILE = "stats.json"
"""Name of the statistics file beside the shards."""

# A dimension that never moves in the data (e.g. tz, forced to 0) has std 0; clamp so it normalises to 0.
MIN_STD = 1e-4


@dataclass
class MotionStats:
    mean: np.ndarray
    """float32 [D] per-dimension mean over the training split."""
    std: np.ndarray
    """float32 [D] per-dimension standard deviation (clamped at MIN_STD)."""
    audio_backend: str = ""
    """Audio feature backend the shards were made with (from stats.json), empty if unrecorded."""
    motion_backend: str = ""
    """Motion extractor the shards were made with (from stats.json), empty if unrecorded."""

    @classmethod
    def load(cls, path: str | Path) -> MotionStats:
        raw = read_stats_file(path)
        missing = {"mean", "std"} - raw.keys()
        if missing:
            raise ValueError(f"{path}: missing {', '.join(sorted(missing))}")
        stats = cls.from_arrays(raw["mean"], raw["std"], backend_name(raw.get("audio_backend")))
        stats.motion_backend = backend_name(raw.get("motion_backend"))
        return stats

    @classmethod
    def from_arrays(cls, mean, std, audio_backend: str = "") -> MotionStats:
        mean = np.asarray(mean, dtype=np.float32)
        std = np.maximum(np.asarray(std, dtype=np.float32), MIN_STD)
        if mean.shape != std.shape or mean.ndim != 1:
            raise ValueError(f"mean {mean.shape} and std {std.shape} must be equal 1-D shapes")
        return cls(mean, std, audio_backend)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "audio_backend": self.audio_backend}

    def normalize(self, motion: np.ndarray | Tensor) -> np.ndarray | Tensor:
        mean, std = self._like(motion)
        return (motion - mean) / std

    def denormalize(self, motion: np.ndarray | Tensor) -> np.ndarray | Tensor:
        mean, std = self._like(motion)
        return motion * std + mean

    def _like(self, x):
        if isinstance(x, Tensor):
            return (
                torch.as_tensor(self.mean, dtype=x.dtype, device=x.device),
                torch.as_tensor(self.std, dtype=x.dtype, device=x.device),
            )
        return self.mean, self.std


def backend_name(record: dict | str | None) -> str:
    """The name of a backend as recorded in stats.json or meta.json (`{name, version}`, or a bare name)."""
    if isinstance(record, dict):
        return str(record.get("name", ""))
    return str(record or "")


def read_stats_file(path: str | Path) -> dict:
    """The stats.json content as a dict; a clear error when the file is missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"motion statistics not found at {path}: run data_prep.shard first, or set data.stats_path"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a stats.json file ({err})") from err


def write_stats_file(path: str | Path, stats: dict) -> None:
    """Write stats.json atomically (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(stats, indent=1) + "\n")
    tmp.replace(path)
