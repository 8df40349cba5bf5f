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
# How a recorded std becomes the divisor of the z-score: `floor` max(std, epsilon), this framework's (data_prep
# writes it); `add` std + epsilon, the released MoDA statistics' own ((x - mean) / (std + 1e-5)).
STD_CONVENTIONS = ("floor", "add")


@dataclass
class MotionStats:
    mean: np.ndarray
    """float32 [D] per-dimension mean over the training split."""
    std: np.ndarray
    """float32 [D] the divisor of the z-score: the recorded std under `std_convention` and `std_epsilon`."""
    audio_backend: str = ""
    """Audio feature backend the shards were made with (from stats.json), empty if unrecorded."""
    motion_backend: str = ""
    """Motion extractor the shards were made with (from stats.json), empty if unrecorded."""
    motion_convention: str = ""
    """Crop and expression convention of that extractor (e.g. `liveportrait-crop,native-expression`), empty if
    unrecorded (shards made before it was recorded)."""

    @classmethod
    def load(cls, path: str | Path) -> MotionStats:
        raw = read_stats_file(path)
        missing = {"mean", "std"} - raw.keys()
        if missing:
            raise ValueError(f"{path}: missing {', '.join(sorted(missing))}")
        convention = raw.get("std_convention", "floor")
        epsilon = float(raw.get("std_epsilon", MIN_STD))
        try:
            stats = cls.from_arrays(
                raw["mean"], raw["std"], backend_name(raw.get("audio_backend")), convention, epsilon
            )
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
        stats.motion_backend = backend_name(raw.get("motion_backend"))
        stats.motion_convention = backend_convention(raw.get("motion_backend"))
        return stats

    @classmethod
    def from_arrays(
        cls, mean, std, audio_backend: str = "", std_convention: str = "floor", std_epsilon: float = MIN_STD
    ) -> MotionStats:
        """Statistics from a mean and a recorded std [D]; the divisor follows `std_convention` (STD_CONVENTIONS)
        with `std_epsilon`."""
        mean = np.asarray(mean, dtype=np.float32)
        std = np.asarray(std, dtype=np.float32)
        if mean.shape != std.shape or mean.ndim != 1:
            raise ValueError(f"mean {mean.shape} and std {std.shape} must be equal 1-D shapes")
        if std_convention not in STD_CONVENTIONS or not std_epsilon >= 0:
            raise ValueError(
                f"std_convention={std_convention!r}, std_epsilon={std_epsilon}: choose one of "
                f"{', '.join(STD_CONVENTIONS)} with an epsilon >= 0"
            )
        divisor = np.maximum(std, std_epsilon) if std_convention == "floor" else std + np.float32(std_epsilon)
        if not (divisor > 0).all():
            raise ValueError("a std divisor is not > 0: every dimension needs std > 0 or an epsilon > 0")
        return cls(mean, divisor.astype(np.float32), audio_backend)

    def to_dict(self) -> dict:
        """stats.json content that loads back to these statistics exactly (the divisor, with no epsilon)."""
        return {
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "std_convention": "floor",
            "std_epsilon": 0.0,
            "audio_backend": self.audio_backend,
            "motion_backend": {"name": self.motion_backend, "convention": self.motion_convention},
        }

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


def backend_convention(record: dict | str | None) -> str:
    """The convention a backend record of stats.json or meta.json names (`{name, version, convention}`), or ""."""
    return str(record.get("convention", "")) if isinstance(record, dict) else ""


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
