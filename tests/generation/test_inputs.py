"""Generation's inputs: a photo, or a video whose first frame is the photo; clear errors for anything else."""

import json

import numpy as np
import pytest

from moda_train.generation.inputs import load_image
from moda_train.perception.video_io import write_video


def test_a_video_gives_its_first_frame(tmp_path):
    frames = np.zeros((5, 64, 64, 3), np.uint8)
    frames[0] = (200, 40, 40)  # a red first frame, then black: the first one must come back
    path = write_video(tmp_path / "clip.mp4", frames, fps=25)
    image = load_image(path)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert np.abs(image.reshape(-1, 3).mean(0) - (200, 40, 40)).max() < 12


def test_neither_image_nor_video_is_one_clear_error(tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(
        ValueError, match="cannot read image .*notes.png: neither an image OpenCV decodes nor a video"
    ):
        load_image(tmp_path / "notes.png")


def test_every_demo_test_clip_gives_its_reference_face(demo_shards):
    # What the quickstart's evaluation does for each test clip: its first frame is the reference photo. The
    # full-range face detector misses one of these close-up faces; the portrait fallback finds it.
    from moda_train.generation.inputs import read_video_frame
    from moda_train.generation.pipeline import reference_face
    from moda_train.perception.motion import get_motion_extractor

    rows = [json.loads(line) for line in (demo_shards / "manifest.jsonl").read_text().splitlines()]
    tests = [row for row in rows if row["split"] == "test" and row["status"] == "ok"]
    assert tests
    extractor = get_motion_extractor("landmarks")
    for row in tests:
        reference = reference_face(read_video_frame(demo_shards.parent / "videos" / row["source"], 0), extractor)
        assert reference.identity.shape == (63,), row["source"]
