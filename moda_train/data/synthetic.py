"""A small synthetic shard set in the data contract's format, for tests and smoke runs without data_prep.

Motion is a learnable function of audio: the lip dimensions follow the audio feature energy, pose sways slowly,
so a model that learns shows it. With `emotion_signal` > 0 the expression also depends on the clip's emotion
label (a fixed offset per emotion, `emotion_offset`), so an emotion classifier has something to learn. It is not
a substitute for real data (see data_prep.demo_corpus for that).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image

from moda_train.core.motion_layout import EMOTIONS, EXPRESSION, LIP_DIMS, MOTION_DIM, NULL_EMOTION, POSE
from moda_train.core.rates import FPS
from moda_train.core.sample import encode_sample
from moda_train.core.stats import STATS_FILE, write_stats_file

AUDIO_FRAME_SHAPE = (4, 80)  # the logmel backend's layout


def synthetic_clip(rng: np.random.Generator, frames: int) -> dict[str, np.ndarray]:
    """One clip: motion [T, 70] float32, audio [T, 4, 80] float16, identity [63] float32."""
    envelope = np.convolve(rng.random(frames + 8), np.ones(5) / 5, mode="same")[4 : frames + 4]
    audio = rng.normal(0, 0.1, (frames, *AUDIO_FRAME_SHAPE)) + envelope[:, None, None]
    motion = rng.normal(0, 0.02, (frames, MOTION_DIM))
    motion[:, list(LIP_DIMS)] += 0.5 * envelope[:, None]
    phase = rng.uniform(0, 2 * np.pi)
    motion[:, POSE] += np.sin(np.arange(frames) / 12.0 + phase)[:, None] * np.linspace(0.1, 1.0, 7)
    return {
        "motion": motion.astype(np.float32),
        "audio": audio.astype(np.float16),
        "identity": rng.normal(0, 0.1, 63).astype(np.float32),
    }


def emotion_offset(emotion: int, signal: float) -> np.ndarray:
    """The expression offset [70] of emotion class `emotion` (none for the unknown class 8): a fixed random
    direction per emotion (the same in every process), `signal` long."""
    offset = np.zeros(MOTION_DIM, np.float32)
    if emotion != NULL_EMOTION:
        directions = np.random.default_rng(2024).normal(size=(len(EMOTIONS), EXPRESSION.stop - EXPRESSION.start))
        offset[EXPRESSION] = signal * directions[emotion] / np.linalg.norm(directions[emotion])
    return offset


def _reference_jpeg(rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_synthetic_shards(
    out_dir: str | Path,
    num_clips: int = 16,
    frames: int = 120,
    clips_per_shard: int = 4,
    val_clips: int = 4,
    seed: int = 0,
    emotion_signal: float = 0.0,
) -> Path:
    """Write `train-*.tar`, `val-*.tar` and `stats.json` into out_dir; return out_dir. `emotion_signal` is the
    length of the per-emotion expression offset (0: motion does not depend on the emotion label)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_motion = []
    for split, count in (("train", num_clips), ("val", val_clips)):
        with wds.ShardWriter(str(out_dir / f"{split}-%06d.tar"), maxcount=clips_per_shard, verbose=0) as sink:
            for index in range(count):
                clip = synthetic_clip(rng, frames)
                meta = {
                    "corpus": "synthetic",
                    "speaker": f"spk{index % 4}",
                    "split": split,
                    "fps": FPS,
                    "num_frames": frames,
                    "audio_backend": {"name": "logmel", "version": "synthetic"},
                    "motion_backend": {"name": "synthetic", "version": "1"},
                }
                emotion = int(rng.integers(0, 9))
                clip["motion"] += emotion_offset(emotion, emotion_signal)
                if split == "train":
                    train_motion.append(clip["motion"])
                key = f"{split}_{index:05d}"
                sink.write(
                    encode_sample(
                        key, clip["motion"], clip["audio"], clip["identity"], _reference_jpeg(rng), emotion, meta
                    )
                )
    stacked = np.concatenate(train_motion)
    stats = {
        "mean": stacked.mean(0).tolist(),
        "std": stacked.std(0).tolist(),
        "num_frames": len(stacked),
        "num_clips": num_clips,
        "audio_backend": {"name": "logmel", "version": "synthetic"},
        "motion_backend": {"name": "synthetic", "version": "1"},
        "audio_frame_shape": list(AUDIO_FRAME_SHAPE),
    }
    write_stats_file(out_dir / STATS_FILE, stats)
    return out_dir
