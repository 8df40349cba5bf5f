"""The shard sample schema: the members of one WebDataset sample (one clip) and how each is encoded.

data_prep writes samples with `encode_sample`, training and the tools that read shards decode them with
`decode_sample`; the member names and encodings live here and nowhere else (docs/CONTRACTS.md describes them).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

MOTION = "motion.npy"
"""float32 [T, 70] raw (not normalised) motion, layout in `moda_train.core.motion_layout`."""
AUDIO = "audio.npy"
"""float16 [T, L, D] (or [T, D]) audio features aligned to the video frames."""
IDENTITY = "identity.npy"
"""float32 [63] canonical keypoints of the reference frame."""
REFERENCE = "ref.jpg"
"""JPEG of the reference face crop (256 px)."""
EMOTION = "emotion.cls"
"""Emotion class 0..7, or 8 (`NULL_EMOTION`) when unknown, as decimal text."""
META = "meta.json"
"""Corpus, source, speaker, times, fps, split, extractor names and versions."""
MEMBERS = (MOTION, AUDIO, IDENTITY, REFERENCE, EMOTION, META)


@dataclass
class ClipSample:
    """One decoded sample; arrays keep their stored dtypes."""

    key: str
    motion: np.ndarray
    audio: np.ndarray
    identity: np.ndarray
    emotion: int
    meta: dict[str, Any]
    reference_jpeg: bytes = b""


def encode_npy(array: np.ndarray) -> bytes:
    """`.npy` bytes of an array (no pickles)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def decode_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def encode_sample(
    key: str,
    motion: np.ndarray,
    audio: np.ndarray,
    identity: np.ndarray,
    reference_jpeg: bytes,
    emotion: int,
    meta: dict[str, Any],
) -> dict[str, bytes | str]:
    """The tar members of one clip, in the contract's dtypes (`__key__` included, for WebDataset writers)."""
    return {
        "__key__": key,
        MOTION: encode_npy(np.asarray(motion, dtype=np.float32)),
        AUDIO: encode_npy(np.asarray(audio, dtype=np.float16)),
        IDENTITY: encode_npy(np.asarray(identity, dtype=np.float32)),
        REFERENCE: bytes(reference_jpeg),
        EMOTION: str(int(emotion)).encode(),
        META: json.dumps(meta, sort_keys=True).encode(),
    }


def decode_sample(sample: dict[str, Any]) -> ClipSample:
    """A WebDataset sample dict (member name -> bytes) back to arrays; a missing member raises KeyError."""
    return ClipSample(
        key=str(sample.get("__key__", "")),
        motion=decode_npy(sample[MOTION]),
        audio=decode_npy(sample[AUDIO]),
        identity=decode_npy(sample[IDENTITY]),
        emotion=int(sample[EMOTION]),
        meta=json.loads(sample[META]) if META in sample else {},
        reference_jpeg=bytes(sample.get(REFERENCE, b"")),
    )


# Stored dtypes each array may have (audio features may be stored in float32 by other writers).
ARRAY_DTYPES = {"motion": ("float32",), "audio": ("float16", "float32"), "identity": ("float32",)}
IDENTITY_SHAPE = (63,)


def clip_problem(clip: ClipSample) -> str | None:
    """Why a decoded clip breaks the schema (dtype, shape, non-finite values), or None. A few flipped bytes in a
    float16 payload decode to inf/NaN, which poison every weight they reach."""
    arrays = {"motion": clip.motion, "audio": clip.audio, "identity": clip.identity}
    for name, array in arrays.items():
        if array.dtype.name not in ARRAY_DTYPES[name]:
            return f"{name} has dtype {array.dtype}, expected {' or '.join(ARRAY_DTYPES[name])}"
        if not np.isfinite(array).all():
            return f"{name} holds {int(array.size - np.isfinite(array).sum())} non-finite values (NaN/inf)"
    if clip.motion.ndim != 2 or clip.audio.ndim not in (2, 3) or clip.identity.shape != IDENTITY_SHAPE:
        return f"shapes motion {clip.motion.shape}, audio {clip.audio.shape}, identity {clip.identity.shape}"
    return None
