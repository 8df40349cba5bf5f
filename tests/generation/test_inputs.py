"""Generation's inputs: a photo, or a video whose first frame is the photo; clear errors for anything else."""

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
