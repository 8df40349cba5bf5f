"""Benchmark splits: which clips to evaluate, with their ground truth.

A split is a `.csv` (header row) or `.jsonl` (one object per line) file with these columns:

    key              clip name: letters, digits, `_`, `-`; the generated video is <generated_dir>/<key>.mp4
    video            ground-truth video (25 fps face crops); relative paths are relative to the split file
    audio            optional driving audio (wav/mp4/...); empty = the ground-truth video's audio track
    reference_frame  optional index of the ground-truth frame that is the reference photo (default 0)
    reference        optional reference photo file instead (wins over reference_frame)
    emotion          optional emotion (name or class id 0..8) the clip is generated for and its ground truth shows;
                     empty or 8 (unknown) = none given (emotion accuracy then uses the config's
                     emotion.generated_for for the generated video)

A data_prep `manifest.jsonl` (key, shard, source, split, frames, emotion, status) is accepted too: the rows of the
requested split whose status is `ok` (or absent), with `source` as the ground-truth video and the clip's emotion
label (8 = unknown) as `emotion`.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from moda_train.core.motion_layout import NULL_EMOTION, emotion_index

_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Clip:
    """One benchmark clip."""

    key: str
    video: Path
    audio: Path | None = None
    reference_frame: int = 0
    reference: Path | None = None
    emotion: int | None = None


def _rows(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{number}: not valid JSON: {err}") from err
        return rows
    raise ValueError(f"{path}: a split must be a .csv or .jsonl file")


def _optional_path(value: object, root: Path) -> Path | None:
    if value in (None, ""):
        return None
    return Path(str(value)) if Path(str(value)).is_absolute() else root / str(value)


def load_split(path: str | Path, split_name: str = "test", video_root: str | Path = "") -> list[Clip]:
    """Read a split file (format in the module docstring); every problem found is raised as one ValueError.

    Relative paths are resolved against `video_root`, or the split file's folder when it is empty (a data_prep
    manifest's sources are relative to the corpus root it was made from, so give that as video_root)."""
    path = Path(path)
    root = Path(video_root) if video_root else path.parent
    if not path.is_file():
        raise ValueError(f"split file not found: {path}")
    rows = _rows(path)
    if rows and "source" in rows[0] and "video" not in rows[0]:  # a data_prep manifest
        rows = [
            {"key": r["key"], "video": r["source"], "emotion": r.get("emotion")}
            for r in rows
            if r.get("split") == split_name and r.get("status", "ok") == "ok"
        ]
    clips, problems, seen = [], [], set()
    for number, row in enumerate(rows, 1):
        key, video = str(row.get("key") or ""), row.get("video")
        if not _KEY.match(key):
            problems.append(f"row {number}: key {key!r} must be letters, digits, '_' or '-'")
        elif key in seen:
            problems.append(f"row {number}: duplicate key {key!r}")
        seen.add(key)
        if not video:
            problems.append(f"row {number}: no `video`")
            continue
        try:
            reference_frame = int(row.get("reference_frame") or 0)
        except ValueError:
            problems.append(f"row {number}: reference_frame {row.get('reference_frame')!r} is not an integer")
            continue
        try:
            label = row.get("emotion")
            emotion = emotion_index(label) if label not in (None, "") else None
            emotion = None if emotion == NULL_EMOTION else emotion
        except ValueError as err:
            problems.append(f"row {number}: {err}")
            continue
        clip = Clip(
            key=key,
            video=_optional_path(video, root),
            audio=_optional_path(row.get("audio"), root),
            reference_frame=reference_frame,
            reference=_optional_path(row.get("reference"), root),
            emotion=emotion,
        )
        for name in ("video", "audio", "reference"):
            file = getattr(clip, name)
            if file is not None and not file.is_file():
                problems.append(f"row {number} ({key}): {name} file not found: {file}")
        clips.append(clip)
    if not clips and not problems:
        problems.append(f"no clips (split_name={split_name!r} for a manifest)")
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return clips
