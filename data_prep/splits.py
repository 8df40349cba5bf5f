"""Deterministic train/val/test assignment by speaker.

Each speaker's split comes from a hash of its name alone, so it never depends on which other clips exist: adding
clips or speakers to a corpus never moves an existing speaker to another split, and no speaker can be in two.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

SPLITS = ("train", "val", "test")


def speaker_unit(speaker: str, seed: int = 0) -> float:
    """A number in [0, 1) fixed by (seed, speaker): the speaker's position on the split line."""
    # surrogateescape: a speaker taken from a file name that is not valid UTF-8 hashes by its bytes.
    digest = hashlib.sha256(f"{seed}:{speaker}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(speaker: str, val_fraction: float, test_fraction: float, seed: int = 0) -> str:
    """`test` for the first test_fraction of the hash line, then `val`, then `train`."""
    if not speaker:
        raise ValueError("a clip needs a speaker name to be assigned to a split")
    unit = speaker_unit(speaker, seed)
    if unit < test_fraction:
        return "test"
    if unit < test_fraction + val_fraction:
        return "val"
    return "train"


def check_speaker_splits(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Map speaker -> split from (speaker, split) pairs; raise a ValueError naming any speaker in two splits."""
    chosen: dict[str, str] = {}
    conflicts: dict[str, set[str]] = {}
    for speaker, split in pairs:
        if split not in SPLITS:
            raise ValueError(f"speaker {speaker!r}: split {split!r} is not one of {', '.join(SPLITS)}")
        previous = chosen.setdefault(speaker, split)
        if previous != split:
            conflicts.setdefault(speaker, {previous}).add(split)
    if conflicts:
        listed = "; ".join(f"{s}: {', '.join(sorted(v))}" for s, v in sorted(conflicts.items()))
        raise ValueError(f"speakers assigned to more than one split: {listed}")
    return chosen


def speaker_splits(
    labelled: Iterable[tuple[str, str | None]], val_fraction: float, test_fraction: float, seed: int = 0
) -> dict[str, str]:
    """Split of every speaker in (speaker, given split or None) pairs: a split given for any of a speaker's clips
    wins (and must agree across them); the others are hashed."""
    labelled = list(labelled)
    given = check_speaker_splits((speaker, split) for speaker, split in labelled if split)
    return {
        speaker: given.get(speaker) or assign_split(speaker, val_fraction, test_fraction, seed)
        for speaker, _ in labelled
    }
