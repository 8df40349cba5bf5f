"""Generating every clip of a benchmark split (what `python -m evaluation.run checkpoint=...` calls)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from moda_train.core.files import link_or_copy
from moda_train.core.motion_layout import NULL_EMOTION, emotion_index
from moda_train.core.rates import SAMPLE_RATE
from moda_train.generation.inputs import load_image, read_video_frame
from moda_train.generation.pipeline import GenerationPipeline
from moda_train.perception.audio import load_audio


def split_outputs(out_dir: Path, key: str, seeds: Sequence[int]) -> list[Path]:
    """Every file a clip of `generate_split` leaves: per seed the motion and the video, then `<key>.mp4`."""
    per_seed = [out_dir / f"{key}_seed{seed}{suffix}" for seed in seeds for suffix in (".npy", ".mp4")]
    return [*per_seed, out_dir / f"{key}.mp4"]


def generate_split(
    checkpoint: str,
    rows: list[dict],
    out_dir: str | os.PathLike,
    seeds: Sequence[int] = (0,),
    emotion: str | int | None = None,
    progress: bool = True,
    **pipeline_options: Any,
) -> dict[str, Path]:
    """Generate every clip of a benchmark split from its reference frame and audio; returns {key: video path}.

    Each row has `key`, `video` (ground truth), optionally `audio` (driving audio; empty = the video's audio
    track), `reference_frame` (index into the video at 25 fps, default 0) and `reference` (a photo file, wins
    over reference_frame) and `emotion` (name or class id; empty = the `emotion` argument, None = no emotion).
    Per clip and seed it writes `<out_dir>/<key>_seed<s>.mp4` and `.npy`, and
    `<out_dir>/<key>.mp4` is the first seed's video (a hard link, or a copy where links are not possible), so
    the split can be scored with `generated_pattern: "{key}.mp4"` and the seeds used for sample diversity.
    Clips whose files all exist are skipped, so a rerun (e.g. for another metric) regenerates nothing; the
    checkpoint is loaded only when some clip needs generating.
    """
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed")
    out_dir = Path(out_dir)
    emotion_id = NULL_EMOTION if emotion is None else emotion_index(emotion)
    results: dict[str, Path] = {}
    todo = []
    for number, row in enumerate(rows, 1):
        key, video = str(row.get("key") or ""), row.get("video")
        if not key or not video:
            raise ValueError(f"row {number}: every row needs a `key` and a `video`, got {row}")
        results[key] = out_dir / f"{key}.mp4"
        if not all(path.is_file() for path in split_outputs(out_dir, key, seeds)):
            todo.append(row)
    if not todo:
        return results
    pipeline = GenerationPipeline(checkpoint, **pipeline_options)
    for row in tqdm(todo, desc="generate split", unit="clip", disable=not progress):
        key = str(row["key"])
        if row.get("reference"):
            image = load_image(row["reference"])
        else:
            image = read_video_frame(row["video"], int(row.get("reference_frame") or 0))
        wave = load_audio(row.get("audio") or row["video"], SAMPLE_RATE)
        row_emotion = row.get("emotion")
        clip_emotion = emotion_id if row_emotion in (None, "") else emotion_index(row_emotion)
        first = pipeline.run(image, wave, out_dir, key, seeds, clip_emotion, progress=False)[0]
        link_or_copy(first, results[key])
    return results
