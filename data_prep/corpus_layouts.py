"""Corpus layouts: each adapter turns a corpus folder (+ its annotation file) into a sorted list of clip sources.

A `ClipSource` names one video, optionally a time range inside it, and its labels (speaker, emotion, split).
Adapters only read names and annotation files; they never open videos, so a broken video becomes a row in
failures.jsonl later instead of stopping the listing. A broken annotation file (missing column, unknown emotion,
a speaker in two splits) raises a ValueError before any work starts.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
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
_CLEAN_PART = re.compile(r"[A-Za-z0-9]+(?:_+[A-Za-z0-9]+)*")
_CLIP_SUFFIX = re.compile(r"_c\d+$")
KEY_DIGEST_CHARS = 12  # 48 bits: a chance of 2 in 10^5 that two of 10^5 unclean names in a corpus share one
# HDTF names: `[WDA_|WRA_|RD_]<Person><video index>[_<clip index>]` (the release's lists have `AmyKlobuchar0`,
# the usual download scripts write `WDA_AmyKlobuchar0_000.mp4`). RD videos (`Radio<n>`) name no person: each
# is one.
HDTF_SPEAKER_PATTERN = r"(?:WDA_|WRA_|RD_)?(?P<speaker>Radio\d+|.+?)\d*(?:_\d+)?"


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


def make_key(corpus: str, *parts: str) -> str:
    """A WebDataset-safe clip key for the name `parts`, unique by construction and a function of the name alone
    (so it never changes when other files come or go).

    A name whose parts are all clean (letters, digits and inner `_`; not ending like a clip suffix `_c<k>`) keeps
    them, joined by `-`: that map is one-to-one. Any other name (spaces, dots, a `-`, a file ending other than
    `.mp4`, non-Latin letters, bytes that are not UTF-8) gets its readable remains plus `--` and a digest of the
    exact name; no clean key contains `--`, so the two kinds never meet. Clip keys append `_c<k>` to a source key,
    which a source key never ends with, so no source key equals another source's clip key."""
    if all(_CLEAN_PART.fullmatch(part) and not _CLIP_SUFFIX.search(part) for part in parts):
        body = "-".join(parts)
    else:
        readable = "-".join(p for p in (_KEY_UNSAFE.sub("_", part).strip("_") for part in parts) if p)
        exact = "\0".join(parts).encode("utf-8", "surrogateescape")  # undecodable bytes survive os.fsdecode
        body = f"{readable[:80]}--{hashlib.sha256(exact).hexdigest()[:KEY_DIGEST_CHARS]}"
    return f"{_KEY_UNSAFE.sub('_', corpus)}-{body}"


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


def _video_entries(root: Path, endings: tuple[str, ...]) -> list[Path]:
    """Every entry under `root` whose name has a video ending, whatever it is: files, but also folders, pipes,
    broken links and link loops, so that each becomes a clip or a row in failures.jsonl rather than vanish.
    Linked folders are followed once each (a link back to a parent cannot loop)."""
    found, visited = [], set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        try:
            status = os.stat(folder)
        except OSError:
            dirs[:] = []
            continue
        if (status.st_dev, status.st_ino) in visited:
            dirs[:] = []
            continue
        visited.add((status.st_dev, status.st_ino))
        dirs.sort()
        found.extend(Path(folder, name) for name in dirs + files if Path(name).suffix.lower() in endings)
    return sorted(found)


def _key_parts(rel: Path) -> tuple[str, ...]:
    # `.mp4` is dropped (the usual case keeps a clean key); any other ending stays, so x.mp4 and x.mov differ.
    return rel.with_suffix("").parts if rel.suffix == ".mp4" else rel.parts


def speaker_from(name: str, pattern: str) -> str:
    """The `speaker` group (or the whole match) of `pattern` matching all of `name`; ValueError if it does not."""
    match = re.fullmatch(pattern, name)
    if match is None:
        raise ValueError(f"input.speaker_pattern {pattern!r} does not match the name {name!r}")
    return match.groupdict().get("speaker") or match.group(0)


def generic_sources(cfg: InputConfig, corpus: str) -> list[ClipSource]:
    """A folder of videos. Without a CSV: every entry with a video ending, speaker = first sub-folder (or the file
    name for files at the top). With a CSV: exactly its rows (`path` required; speaker, emotion, split
    optional). `input.speaker_pattern`, when set, takes the speaker from the path (without its ending) instead
    of the folder rule."""
    root = Path(cfg.root)
    if not cfg.annotations:
        if not root.is_dir():
            raise ValueError(f"input.root={cfg.root!r} is not a folder")
        sources = []
        for path in _video_entries(root, tuple(e.lower() for e in cfg.extensions)):
            rel = path.relative_to(root)
            if cfg.speaker_pattern:
                speaker = speaker_from(rel.with_suffix("").as_posix(), cfg.speaker_pattern)
            else:
                speaker = rel.parts[0] if len(rel.parts) > 1 else rel.stem
            sources.append(ClipSource(str(path), rel.as_posix(), make_key(corpus, *_key_parts(rel)), speaker))
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
        speaker = (row.get("speaker") or "").strip()
        if not speaker:
            name = Path(rel).with_suffix("").as_posix()
            speaker = speaker_from(name, cfg.speaker_pattern) if cfg.speaker_pattern else Path(rel).stem
        split = (row.get("split") or "").strip() or None
        key = make_key(corpus, *_key_parts(Path(rel)))
        sources.append(ClipSource(str(path), rel, key, speaker, emotion, split=split))
    return sources


def hdtf_sources(cfg: InputConfig, corpus: str) -> list[ClipSource]:
    """HDTF: a text file of `<video> <start>-<end> [<start>-<end> ...]` lines (the annotation-time files of the
    HDTF release); a line with no range takes the whole video. Speaker = the person: `input.speaker_pattern`
    (default HDTF_SPEAKER_PATTERN) on the video name, which drops the set prefix, the video index and the clip
    index (`WDA_AmyKlobuchar1_000` -> `AmyKlobuchar`)."""
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
        speaker = speaker_from(Path(name).stem, cfg.speaker_pattern or HDTF_SPEAKER_PATTERN)
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
            parts = _key_parts(Path(name))
            key = make_key(corpus, *parts, f"{round(start * 1000):09d}") if span else make_key(corpus, *parts)
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
