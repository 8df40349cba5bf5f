"""An imported released checkpoint drives `python -m moda_train.generate` end to end.

The synthetic net-200.pth has the released layout at a reduced width, with the logmel backend's audio width; the
import records logmel audio and the landmarks motion backend in its place (neither HuBERT nor LivePortrait weights
exist here), so the pipeline runs with the weight-free renderer.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from moda_train.generate import main
from moda_train.import_official import import_official
from tests.models.released_moda import write_released_net, write_released_stats

from .generation_helpers import speech_like, write_wav


@pytest.mark.slow
def test_generate_from_an_imported_checkpoint(photo, tmp_path, capsys):
    write_released_net(tmp_path / "net-200.pth", hidden=64, head_dim=16, audio_dim=320)
    write_released_stats(tmp_path / "mean.pt")
    overrides = ["data.audio_backend=logmel", "data.motion_backend=landmarks"]
    overrides.append("data.motion_convention=box-crop,canonical-expression")  # the landmarks backend's
    ckpt = import_official(tmp_path / "net-200.pth", tmp_path / "mean.pt", tmp_path / "official.ckpt", overrides)
    cv2.imwrite(str(tmp_path / "photo.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    audio = write_wav(tmp_path / "speech.wav", speech_like(1.0))
    args = ["--checkpoint", str(ckpt), "--image", str(tmp_path / "photo.png"), "--audio", audio]
    assert main([*args, "--out", str(tmp_path / "out"), "--name", "clip", "--steps", "2", "--no-progress"]) == 0
    motion = np.load(tmp_path / "out" / "clip_seed0.npy")
    assert motion.shape == (25, 70) and np.isfinite(motion).all()
    assert (tmp_path / "out" / "clip_seed0.mp4").is_file()
