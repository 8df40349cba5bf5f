"""Per-video result cache, so a rerun (after a crash, or with more clips) skips videos already evaluated.

`<out_dir>/cache/<key>.npz` holds the arrays and `<key>.json` the values plus a fingerprint: a hash of the input
files (path, size, modification time), the enabled metrics, the weights files and every config field that changes
a per-video result. A record is reused only when its fingerprint matches; both files are written under temporary
names and renamed, the JSON last, so an interrupted write is never mistaken for a result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from evaluation.config import EvalConfig
from evaluation.per_video import VideoRecord, generated_path, seed_paths
from evaluation.split import Clip


def _file_id(path: Path | None) -> list:
    if path is None:
        return [None]
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def fingerprint(cfg: EvalConfig, clip: Clip, enabled: set[str], weights: dict[str, str]) -> str:
    """Hash of everything a clip's per-video results depend on (see the module docstring)."""
    inputs = [clip.video, clip.audio, clip.reference, generated_path(cfg, clip.key), *seed_paths(cfg, clip.key)]
    settings = {
        name: dataclasses.asdict(getattr(cfg, name))
        for name in ("fid", "fvd", "sync", "motion_sync", "fsim", "motion", "diversity", "emotion")
    }
    content = {
        "files": [_file_id(p) for p in inputs],
        "reference_frame": clip.reference_frame,
        "emotion": clip.emotion,
        "enabled": sorted(enabled),
        "weights": weights,
        "settings": settings,
        "max_frames": cfg.max_frames,
        "ground_truth": cfg.ground_truth,
        "fps": cfg.fps,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def load_cached(cache_dir: Path, key: str, expected: str) -> VideoRecord | None:
    """The cached record of `key` if its fingerprint is `expected`, else None."""
    meta = cache_dir / f"{key}.json"
    if not meta.is_file():
        return None
    stored = json.loads(meta.read_text())
    if stored.get("fingerprint") != expected:
        return None
    arrays_path = cache_dir / f"{key}.npz"
    arrays = {}
    if arrays_path.is_file():
        with np.load(arrays_path) as data:
            arrays = {name: data[name] for name in data.files}
    return VideoRecord(key, stored["values"], arrays)


def save_cached(cache_dir: Path, record: VideoRecord, fp: str) -> None:
    """Write a record atomically (arrays first, then the JSON that marks it complete)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f"{record.key}.tmp.npz"
    np.savez(tmp, **record.arrays)
    os.replace(tmp, cache_dir / f"{record.key}.npz")
    tmp = cache_dir / f"{record.key}.json.tmp"
    tmp.write_text(json.dumps({"fingerprint": fp, "values": record.values}, indent=1))
    os.replace(tmp, cache_dir / f"{record.key}.json")
