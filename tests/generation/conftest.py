"""Shared fixtures: a tiny MMDiT checkpoint trained for a few steps, a real face photo and its reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moda_train.data.synthetic import write_synthetic_shards
from moda_train.experiment import load_experiment
from moda_train.launch.run import run_experiment

from .generation_helpers import SMALL_MODEL, TINY


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> str:
    """A tiny MMDiT trained for a few optimizer steps on synthetic shards (logmel audio). The shards' stats.json
    is relabelled as `landmarks` motion, which the synthetic motion stands in for here."""
    root = tmp_path_factory.mktemp("tiny_ckpt")
    shards = write_synthetic_shards(root / "shards", num_clips=4, frames=100, clips_per_shard=2, val_clips=1)
    stats = json.loads((shards / "stats.json").read_text())
    stats["motion_backend"] = {"name": "landmarks", "version": "synthetic stand-in"}
    (shards / "stats.json").write_text(json.dumps(stats))
    cfg, tree = load_experiment(
        TINY,
        [
            f"data.train_shards={shards}/train-*.tar", "data.val_shards=", f"data.stats_path={shards}/stats.json",
            f"train.out_dir={root}", "train.run_name=run", "data.num_workers=0", "train.max_steps=6",
            "train.global_batch_size=4", "train.micro_batch_size=4", "optim.warmup_steps=1", "optim.ema_decay=0.0",
            *SMALL_MODEL,
        ],
    )  # fmt: skip
    run_dir = run_experiment(cfg, tree, TINY)
    return str(run_dir / "checkpoints" / "last.ckpt")


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """scikit-image's astronaut: a real face photo, uint8 [512, 512, 3]."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def reference(photo):
    """The astronaut's ReferenceFace as generation builds it (mediapipe detection, data_prep crop, landmarks)."""
    from moda_train.generation.render import ReferenceFace
    from moda_train.perception.config import FaceConfig
    from moda_train.perception.face_crop import FaceDetector, crop_square
    from moda_train.perception.motion import get_motion_extractor

    face = FaceConfig()
    detector = FaceDetector(face)
    x0, y0, w, h = detector.detect(photo)[0]
    detector.close()
    box = np.array([x0 + w / 2, y0 + h / 2, max(w, h) * face.crop_scale])
    sequence = get_motion_extractor("landmarks").extract(crop_square(photo, box, face.crop_size)[None])
    return ReferenceFace(photo, box, face.crop_size, sequence.motion[0], sequence.identity)
