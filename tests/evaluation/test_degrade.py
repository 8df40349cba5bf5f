"""The degradations that sanity-check the metrics do exactly what their names say."""

import numpy as np
import pytest

from evaluation.degrade import DEGRADATIONS, SHIFT_FRAMES, make_degraded_split


@pytest.fixture()
def clip():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), rng.uniform(-1, 1, 16 * 640 + 11).astype(
        np.float32
    )


def test_shifted_delays_the_audio_by_ten_frames_and_keeps_frames(clip):
    frames, audio = clip
    out_frames, out_audio = DEGRADATIONS["shifted"](frames, audio, np.random.default_rng(0))
    delay = SHIFT_FRAMES * 640
    assert out_frames is frames and len(out_audio) == len(audio)
    assert not out_audio[:delay].any()
    short = DEGRADATIONS["shifted"](frames, audio[:100], None)[1]  # shorter than the delay: all silence
    assert len(short) == 100 and not short.any()
    np.testing.assert_array_equal(out_audio[delay:], audio[:-delay])


def test_frozen_blur_and_jitter(clip):
    frames, audio = clip
    frozen, _ = DEGRADATIONS["frozen"](frames, audio, np.random.default_rng(0))
    assert (frozen == frames[0]).all()
    blurred, _ = DEGRADATIONS["blur"](frames, audio, np.random.default_rng(0))
    assert np.abs(np.diff(blurred.astype(int), axis=2)).mean() < np.abs(np.diff(frames.astype(int), axis=2)).mean()
    first, _ = DEGRADATIONS["jitter"](frames, audio, np.random.default_rng(1))
    again, _ = DEGRADATIONS["jitter"](frames, audio, np.random.default_rng(1))
    np.testing.assert_array_equal(first, again)  # seeded
    assert not np.array_equal(first, frames)


def test_unknown_kind_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown kinds \['smear'\]"):
        make_degraded_split([tmp_path / "a.mp4"], tmp_path, ["smear"])
