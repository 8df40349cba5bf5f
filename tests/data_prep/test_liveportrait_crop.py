"""data_prep with the `liveportrait` motion backend: crops cut with LivePortrait's convention, and the motion
convention recorded in meta.json and stats.json (random motion-extractor weights in the released layout)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from data_prep.shard import run
from moda_train.core.motion_layout import RELEASED_MOTION_CONVENTION
from moda_train.core.stats import MotionStats
from moda_train.perception.face_align import LivePortraitCropper
from moda_train.perception.motion.liveportrait_net import LivePortraitMotionNet

from .conftest import shard_config, talking_video
from .test_shard import read_split

pytestmark = pytest.mark.slow  # FaceMesh on every fifth frame plus the extractor on every frame


def test_liveportrait_backend_gets_liveportrait_crops_and_records_its_convention(tmp_path):
    torch.manual_seed(0)
    net = LivePortraitMotionNet(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64))
    weights = tmp_path / "liveportrait"
    weights.mkdir()
    torch.save({f"detector.{k}": v for k, v in net.state_dict().items()}, weights / "motion_extractor.pth")
    talking_video(tmp_path / "corpus" / "speaker.mp4", seconds=3.4)
    cfg = shard_config(
        tmp_path / "corpus", tmp_path / "shards", "motion.backend=liveportrait", f"motion.options.path={weights}"
    )
    run(cfg, progress=False)
    [sample] = read_split(tmp_path / "shards", "train")
    meta = sample["meta.json"]
    assert meta["motion_backend"]["convention"] == RELEASED_MOTION_CONVENTION
    assert RELEASED_MOTION_CONVENTION in meta["motion_backend"]["version"]
    stats = MotionStats.load(tmp_path / "shards" / "stats.json")
    assert (stats.motion_backend, stats.motion_convention) == ("liveportrait", RELEASED_MOTION_CONVENTION)
    assert json.loads((tmp_path / "shards" / "stats.json").read_text())["motion_backend"] == meta["motion_backend"]
    # The reference crop is LivePortrait's: LivePortrait's crop of it is (nearly) the whole crop again.
    ref = np.asarray(sample["ref.jpg"])
    assert ref.shape == (256, 256, 3)
    cropper = LivePortraitCropper()
    try:
        again = cropper.square(np.ascontiguousarray(ref), np.array([128.0, 128.0, 256.0]))
    finally:
        cropper.close()
    assert again is not None
    assert again[2] == pytest.approx(256, rel=0.08) and abs(np.degrees(again[3])) < 3
    np.testing.assert_allclose(again[:2], [128.0, 128.0], atol=0.05 * 256)
