"""Long-audio motion generation: window bookkeeping, cross-fade, audio per window, seeds, the backend check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moda_train.core.motion_layout import EXPRESSION, MOTION_DIM, POSE
from moda_train.core.rates import SAMPLES_PER_FRAME
from moda_train.generation.motion_generator import (
    AudioBackendMismatch,
    MotionGenerator,
    WindowPlan,
    check_audio_backend,
    crossfade_weights,
    smooth_pose,
    window_starts,
)
from moda_train.generation.pipeline import load_checkpoint
from moda_train.perception.audio import LogMelExtractor, get_audio_extractor

from .generation_helpers import random_module, speech_like


@pytest.mark.parametrize(
    ("frames", "starts", "padded"),
    [
        (1, [0], 80),  # far shorter than a window: one window, trimmed
        (30, [0], 80),
        (80, [0], 80),  # exactly one window
        (81, [0, 64], 144),  # one frame more needs a second window
        (144, [0, 64], 144),
        (250, [0, 64, 128, 192], 272),  # 10 s
    ],
)
def test_window_plan(frames, starts, padded):
    plan = WindowPlan(frames, window=80, overlap=16)
    assert plan.starts == starts
    assert plan.padded_frames == padded
    assert window_starts(frames, 80, 16)[-1] + 80 >= frames


def test_window_plan_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_frames"):
        window_starts(0, 80, 16)
    with pytest.raises(ValueError, match="overlap"):
        window_starts(100, 80, 80)


@pytest.mark.parametrize("seconds", [1.0, 80 / 25, 10.3])
def test_output_length_is_the_audio_length_in_frames(seconds):
    """Shorter than a window, exactly one window, many windows: T = ceil(samples / 640), all finite."""
    generator = MotionGenerator(random_module(), LogMelExtractor(), steps=1)
    wave = speech_like(seconds)
    motion = generator.generate(wave, np.zeros(63), np.zeros(MOTION_DIM), seeds=[0, 3])
    assert motion.shape == (2, int(np.ceil(len(wave) / SAMPLES_PER_FRAME)), MOTION_DIM)
    assert np.isfinite(motion).all()
    assert not np.allclose(motion[0], motion[1])  # seeds differ


def test_seeds_are_independent_of_the_batch_and_deterministic():
    generator = MotionGenerator(random_module(), LogMelExtractor(), steps=2)
    wave = speech_like(4.0)
    ref = np.linspace(-0.1, 0.1, MOTION_DIM)
    both = generator.generate(wave, np.zeros(63), ref, seeds=[5, 7])
    alone = generator.generate(wave, np.zeros(63), ref, seeds=[7])
    np.testing.assert_allclose(both[1], alone[0], atol=1e-5)


def test_window_audio_equals_the_whole_file_features():
    """With context around each window, per-window logmel features are exactly the whole file's."""
    extractor = LogMelExtractor()
    generator = MotionGenerator(random_module(), extractor, steps=1)
    wave = speech_like(7.0, seed=2)
    plan = WindowPlan(int(np.ceil(len(wave) / SAMPLES_PER_FRAME)), 80, 16)
    whole = extractor.extract(wave, plan.padded_frames).astype(np.float32).reshape(plan.padded_frames, -1)
    for start in plan.starts:
        np.testing.assert_allclose(generator.window_audio(wave, start), whole[start : start + 80], atol=1e-2)


def test_crossfade_bookkeeping():
    """Two constant windows: the overlap ramps linearly from one level to the other, no step larger than the
    ramp's own, and frames outside the overlap are the windows' own."""
    generator = MotionGenerator(random_module(), LogMelExtractor(), steps=1)
    out = np.zeros((1, 144, MOTION_DIM), dtype=np.float32)
    generator._place(out, np.full((1, 80, MOTION_DIM), 1.0, np.float32), 0)
    generator._place(out, np.full((1, 80, MOTION_DIM), 2.0, np.float32), 64)
    track = out[0, :, 0]
    assert np.all(track[:64] == 1.0) and np.all(track[80:] == 2.0)
    np.testing.assert_allclose(track[64:80], 1.0 + crossfade_weights(16), rtol=1e-6)
    np.testing.assert_allclose(np.diff(track[63:81]), 1 / 17, rtol=1e-5)


def test_pose_smoothing_touches_only_pose():
    rng = np.random.default_rng(0)
    motion = rng.normal(size=(2, 50, MOTION_DIM)).astype(np.float32)
    smooth = smooth_pose(motion)
    np.testing.assert_array_equal(smooth[..., EXPRESSION], motion[..., EXPRESSION])
    np.testing.assert_allclose(smooth[0, 10, POSE], motion[0, 9:12, POSE].mean(0), rtol=1e-5)
    assert np.abs(np.diff(smooth[..., POSE], axis=1)).mean() < np.abs(np.diff(motion[..., POSE], axis=1)).mean()


@pytest.mark.slow
def test_no_jump_at_window_borders(checkpoint):
    """With a trained checkpoint, the frame-to-frame change around window borders stays within the model's own
    frame-to-frame change inside windows (expression dims, where the lips are)."""
    module = load_checkpoint(checkpoint)
    generator = MotionGenerator(module, LogMelExtractor())
    wave = speech_like(10.0, seed=4)
    motion = generator.generate(wave, np.zeros(63), module.motion_mean.numpy(), seeds=[0, 1])
    normalised = module.normalize(torch.from_numpy(motion)).numpy()
    step = np.linalg.norm(np.diff(normalised[..., EXPRESSION], axis=1), axis=-1)  # [S, T-1]
    border = np.zeros(step.shape[1], dtype=bool)
    for start in WindowPlan(motion.shape[1], 80, 16).starts[1:]:
        border[start - 1 : start + 16] = True  # into the overlap, through it, and out
    assert border.any() and (~border).any()
    assert step[:, border].max() <= step[:, ~border].max()
    assert step[:, border].mean() <= 1.2 * step[:, ~border].mean()


def test_audio_backend_mismatch_is_a_clear_error():
    module = random_module()  # trained (per its config) on logmel features
    with pytest.raises(AudioBackendMismatch, match=r"trained on 'logmel'.*'other' audio backend"):
        extractor = LogMelExtractor()
        extractor.name = "other"
        check_audio_backend(module, extractor)
    with pytest.raises(AudioBackendMismatch, match=r"model.audio_dim=320"):
        MotionGenerator(module, LogMelExtractor(num_mels=40))
    hubert_module = random_module("data.audio_backend=hubert", "model.audio_dim=9216")
    with pytest.raises(AudioBackendMismatch, match=r"trained on 'hubert'.*'logmel' audio backend"):
        MotionGenerator(hubert_module, get_audio_extractor("logmel"))
