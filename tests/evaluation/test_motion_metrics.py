"""Diversity and smoothness on constructed motion with known answers."""

import numpy as np
import pytest

from evaluation.diversity import sample_diversity, temporal_pose_spread
from evaluation.smoothness import frame_acceleration, motion_jerk
from moda_train.core.motion_layout import EXPRESSION, POSE, ROTATION
from moda_train.metrics.motion import mouth_amplitude, mouth_opening


def _motion(frames: int = 100) -> np.ndarray:
    return np.zeros((frames, 70), np.float32)


def test_pose_spread_of_sines_and_of_a_frozen_head():
    t = np.arange(100)
    motion = _motion()
    # Whole periods: the std of A sin is A / sqrt(2); amplitudes 3, 6, 9 degrees average to 6 / sqrt(2).
    for axis, amplitude in zip(range(ROTATION.start, ROTATION.stop), (3.0, 6.0, 9.0)):
        motion[:, axis] = amplitude * np.sin(2 * np.pi * t / 25)
    assert temporal_pose_spread(motion) == pytest.approx(6.0 / np.sqrt(2), rel=1e-4)
    motion[:, EXPRESSION] = 5.0  # expression does not count
    assert temporal_pose_spread(motion) == pytest.approx(6.0 / np.sqrt(2), rel=1e-4)
    assert temporal_pose_spread(_motion()) == 0.0


def test_sample_diversity_is_zero_for_copies_and_the_pair_mean_otherwise():
    base = np.random.default_rng(0).normal(size=(50, 70))
    assert sample_diversity([base, base.copy(), base.copy()]) == {"expression": 0.0, "pose": 0.0}
    shifted = [base.copy() for _ in range(3)]
    for i, sample in enumerate(shifted):
        sample[:, 0] += i  # expression dim 0 moved by 0, 1, 2: pair distances 1, 2, 1
        sample[:, POSE.start] += 2 * i  # scale moved by 0, 2, 4: pair distances 2, 4, 2
    values = sample_diversity(shifted)
    assert values["expression"] == pytest.approx(4 / 3)
    assert values["pose"] == pytest.approx(8 / 3)
    with pytest.raises(ValueError, match="at least 2 samples"):
        sample_diversity([base])


def test_motion_jerk_ignores_steady_motion_and_sees_acceleration():
    t = np.arange(30, dtype=np.float64)
    motion = _motion(30).astype(np.float64)
    motion[:, 0] = 0.5 * t  # constant speed: no jerk
    motion[:, 64] = 2.0 + 0.0 * t
    assert motion_jerk(motion) == {"expression": 0.0, "pose": 0.0}
    motion[:, 67] = 0.25 * t**2  # constant acceleration: second difference 0.5 every frame
    assert motion_jerk(motion)["pose"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"\[T >= 3, 70\]"):
        motion_jerk(np.zeros((2, 70)))


def test_frame_acceleration_of_a_ramp_and_of_flicker():
    ramp = np.stack([np.full((8, 8, 3), 10 * t, np.uint8) for t in range(6)])
    assert frame_acceleration(ramp) == 0.0
    flicker = np.stack([np.full((8, 8, 3), 100 if t % 2 else 0, np.uint8) for t in range(6)])
    assert frame_acceleration(flicker) == pytest.approx(200.0)


def test_mouth_amplitude_separates_amplitude_from_timing():
    t = np.arange(125)
    truth = _motion(125)
    truth[:, 3 * 17 + 1] = 0.05 * (1 + np.sin(2 * np.pi * t / 25))  # lower inner lip drops 0..0.1, 5 periods
    opening = mouth_opening(truth)
    assert opening == pytest.approx(0.05 * (1 + np.sin(2 * np.pi * t / 25)))
    half = truth.copy()
    half[:, 3 * 12 + 1] = 0.5 * truth[:, 3 * 17 + 1]  # the upper lip follows halfway: half the opening
    same = mouth_amplitude(opening, opening)
    assert same["std_ratio"] == pytest.approx(1.0) and same["timing_r"] == pytest.approx(1.0)
    assert same["open_share"] == same["open_share_truth"] == pytest.approx(0.48)
    smaller = mouth_amplitude(mouth_opening(half), opening)
    assert smaller["std_ratio"] == pytest.approx(0.5)
    assert smaller["timing_r"] == pytest.approx(1.0)  # same timing, half the amplitude
    assert smaller["open_share"] < 0.1 and smaller["open_share_truth"] == pytest.approx(0.48)
    late = mouth_amplitude(np.roll(opening, 12), opening)  # half a period late: anti-correlated
    assert late["std_ratio"] == pytest.approx(1.0) and late["timing_r"] < -0.9
    with pytest.raises(ValueError, match="does not move"):
        mouth_amplitude(opening, np.zeros(125))
