"""Corpus layouts: each adapter turns a corpus folder (+ its annotation file) into a sorted list of clip sources.

A `ClipSource` names one video, optionally a time range inside it, and its labels (speaker, emotion, split).
Adapters only read names and annotation files; they never open videos, so a broken video becomes a row in
failures.jsonl later instead of stopping the listing. A broken annotation file (missing column, unknown emotion,
a speaker in two splits) raises a ValueError before any work starts.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from data_prep.config import InputConfig
from data_prep.splits import check_speaker_splits
from moda_train.core.motion_layout import NULL_EMOTION, emotion_index

# Spellings used by MEAD folders and CelebV-HQ labels, mapped onto the names in motion_layout.EMOTIONS.
EMOTION_SYNONYMS = {
    "angry": "anger",
    "disgusted": "disgust",
    "fearful": "fear",
    "happy": "happiness",
    "sad": "sadness",
    "surprised": "surprise",
}
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class ClipSource:
    """One input video (or a time range of it) with its labels."""

    path: str
    """Path of the video file as given to the decoder."""
    source: str
    """The path relative to the corpus root, as recorded in meta.json, the manifest and failures."""
    key: str
    """Base sample key (letters, digits, `_`, `-`); clips cut from this source append `_c<k>`."""
    speaker: str
    """Speaker identity; splits are assigned per speaker."""
    emotion: int = NULL_EMOTION
    """Emotion class 0..7, or 8 when unknown."""
    intensity: int | None = None
    """Emotion intensity level where the corpus has one (MEAD level_1..3)."""
    split: str | None = None
    """Split given by the labels file, if any (otherwise assigned by speaker hash)."""
    start_s: float = 0.0
    """Start of the annotated range in the video, seconds."""
    end_s: float | None = None
    """End of the annotated range in seconds; None means the end of the video."""


def parse_emotion(label: str | int | None) -> int:
    """Emotion class from a name (any corpus spelling, any case) or index; empty or None means unknown (8)."""
    if label is None or str(label).strip() == "":
        return NULL_EMOTION
    text = str(label).strip().lower()
    return emotion_index(EMOTION_SYNONYMS.get(text, text))


def make_key(*parts: str) -> str:
    """A WebDataset-safe key: unsafe characters (including dots, which WebDataset splits on) become `_`."""
    return "-".join(_KEY_UNSAFE.sub("_", part).strip("_") for part in parts if part)


def parse_timestamp(text: str) -> float:
    """Seconds from `SS`, `MM:SS` or `HH:MM:SS` (fractions allowed)."""
    seconds = 0.0
    try:
        for part in text.strip().split(":"):
            seconds = seconds * 60 + float(part)
    except ValueError as err:
        raise ValueError(f"not a timestamp: {text!r} (use SS, MM:SS or HH:MM:SS)") from err
    return seconds


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def generic_sources(cfg: InputConfig, corpus: str) -> list[ClipSource]:
    """A folder of videos. Without a CSV: every file with a video ending, speaker = first sub-folder (or the file
    name for files at the top). With a CSV: exactly its rows (`path` required; speaker, emotion, split
    optional)."""
    root = Path(cfg.root)
    if not cfg.annotations:
        if not root.is_dir():
            raise ValueError(f"input.root={cfg.root!r} is not a folder")
        endings = tuple(e.lower() for e in cfg.extensions)
        # Broken links are listed too, so that they end up in failures.jsonl rather than vanish.
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in endings and not p.is_dir())
        sources = []
        for path in files:
            rel = path.relative_to(root)
            speaker = rel.parts[0] if len(rel.parts) > 1 else rel.stem
            sources.append(
                ClipSource(str(path), rel.as_posix(), make_key(corpus, str(rel.with_suffix(""))), speaker)
            )
        return sources

    labels = cfg.annotations_path()
    if not labels.is_file():
        raise ValueError(f"input.annotations={cfg.annotations!r}: file not found at {labels}")
    with labels.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "path" not in rows[0]:
        raise ValueError(
            f"{labels}: the CSV needs a header with a `path` column (optional: speaker, emotion, split)"
        )
    sources = []
    for line, row in enumerate(rows, start=2):
        rel = (row.get("path") or "").strip()
        if not rel:
            raise ValueError(f"{labels} line {line}: empty path")
        path = Path(rel) if Path(rel).is_absolute() else root / rel
        try:
            emotion = parse_emotion(row.get("emotion"))
        except ValueError as err:
            raise ValueError(f"{labels} line {line}: {err}") from err
        speaker = (row.get("speaker") or "").strip() or Path(rel).stem
        split = (row.get("split") or "").strip() or None
        sources.append(
            ClipSource(
                str(path), rel, make_key(corpus, str(Path(rel).with_suffix(""))), speaker, emotion, split=split
            )
        )
    return sources


def hdtf_sources(cfg: InputConfig, corpus: str) -> list[ClipSource]:
    """HDTF: a text file of `<video> <start>-<end> [<start>-<end> ...]` lines (the annotation-time files of the
    HDTF release); a line with no range takes the whole video. Speaker = video name without its `_NNN` suffix."""
    listing = cfg.annotations_path()
    if not listing.is_file():
        raise ValueError(f"input.annotations={cfg.annotations!r}: HDTF clip list not found at {listing}")
    root = Path(cfg.root)
    sources = []
    for number, raw in enumerate(listing.read_text().splitlines(), start=1):
        fields = raw.split("#")[0].replace(",", " ").split()
        if not fields:
            continue
        name = fields[0] if Path(fields[0]).suffix else fields[0] + ".mp4"
        speaker = re.sub(r"_\d+$", "", Path(name).stem)
        ranges = fields[1:] or [None]
        for span in ranges:
            start, end = 0.0, None
            if span is not None:
                try:
                    first, last = span.split("-")
                    start, end = parse_timestamp(first), parse_timestamp(last)
                except ValueError as err:
                    raise ValueError(f"{listing} line {number}: bad range {span!r}: {err}") from err
                if end <= start:
                    raise ValueError(f"{listing} line {number}: range {span!r} ends before it starts")
            key = make_key(corpus, Path(name).stem, f"{round(start * 1000):09d}" if span else "")
            sources.append(ClipSource(str(root / name), name, key, speaker, start_s=start, end_s=end))
    return sources


def mead_sources(cfg: InputConfig, corpus: str) -> list[ClipSource]:
    """MEAD: `<speaker>/video/front/<emotion>/level_<k>/<nnn>.mp4`; emotion and intensity come from the path."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise ValueError(f"input.root={cfg.root!r} is not a folder")
    sources = []
    for path in sorted(root.glob("*/video/front/*/level_*/*.mp4")):
        rel = path.relative_to(root)
        speaker, emotion_name, level = rel.parts[0], rel.parts[3], rel.parts[4]
        try:
            emotion = parse_emotion(emotion_name)
        except ValueError as err:
            raise ValueError(f"{rel}: {err}") from err
        intensity = int(level.removeprefix("level_")) if level.removeprefix("level_").isdigit() else None
        key = make_key(corpus, speaker, emotion_name, level, path.stem)
        sources.append(ClipSource(str(path), rel.as_posix(), key, speaker, emotion, intensity))
    return sources


def _celebvhq_emotion(attributes: dict) -> int:
    # `labels` is one name, or (sep_flag true) a list of {emotion, start_sec, end_sec}: take the longest one.
    info = attributes.get("emotion") or {}
    labels = info.get("labels")
    if isinstance(labels, list):
        if not labels:
            return NULL_EMOTION
        longest = max(labels, key=lambda s: float(s.get("end_sec", 0)) - float(s.get("start_sec", 0)))
        return parse_emotion(longest.get("emotion"))
    return parse_emotion(labels)


def celebvhq_sources(cfg: InputConfig, corpus: str) -> list[ClipSource]:
    """CelebV-HQ: `celebvhq_info.json` (`clips: {clip_id: {ytb_id, duration: {start_sec, end_sec},
    attributes: {emotion: ...}}}`). Uses `<root>/<clip_id>.mp4` (already cut) when present, otherwise the range
    of `<root>/<ytb_id>.mp4`. Speaker = ytb_id (one source video shows one celebrity)."""
    info_path = cfg.annotations_path()
    if not info_path.is_file():
        raise ValueError(f"input.annotations={cfg.annotations!r}: CelebV-HQ JSON not found at {info_path}")
    try:
        clips = json.loads(info_path.read_text())["clips"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{info_path}: expected a JSON object with a `clips` mapping ({err})") from err
    root = Path(cfg.root)
    sources = []
    for clip_id, clip in sorted(clips.items()):
        try:
            ytb_id = clip["ytb_id"]
            emotion = _celebvhq_emotion(clip.get("attributes", {}))
            cut = root / f"{clip_id}.mp4"
            if cut.exists():
                source = ClipSource(str(cut), cut.name, make_key(corpus, clip_id), ytb_id, emotion)
            else:
                span = clip["duration"]
                start, end = float(span["start_sec"]), float(span["end_sec"])
                full = root / f"{ytb_id}.mp4"
                source = ClipSource(
                    str(full), full.name, make_key(corpus, clip_id), ytb_id, emotion, None, None, start, end
                )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{info_path}: clip {clip_id!r}: {err}") from err
        sources.append(source)
    return sources


LAYOUT_READERS: dict[str, Callable[[InputConfig, str], list[ClipSource]]] = {
    "generic": generic_sources,
    "hdtf": hdtf_sources,
    "mead": mead_sources,
    "celebvhq": celebvhq_sources,
}


def list_sources(cfg: InputConfig, corpus: str) -> list[ClipSource]:
    """All clip sources of the corpus, sorted by key; raises a ValueError for duplicate keys or split conflicts."""
    sources = sorted(LAYOUT_READERS[cfg.layout](cfg, corpus), key=lambda s: s.key)
    seen: dict[str, str] = {}
    for source in sources:
        if source.key in seen:
            raise ValueError(
                f"two inputs map to the same clip key {source.key!r}: {seen[source.key]}, {source.source}"
            )
        seen[source.key] = source.source
    check_speaker_splits((s.speaker, s.split) for s in sources if s.split)
    return sources
