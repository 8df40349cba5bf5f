"""Euler sampling and classifier-free guidance with separate audio and emotion scales."""

import pytest
import torch

from moda_train.flow.sampler import guided_velocity, sample
from moda_train.models import MoDA
from tests.tiny_moda import tiny_model


def _tiny_model() -> MoDA:
    # perturbed out of adaLN-Zero so every condition reaches the output
    return tiny_model(0, depth_single_stream=1, audio_dim=8, motion_dim=6, identity_dim=5).eval()


def _cond(n: int = 2, frames: int = 5) -> dict:
    g = torch.Generator().manual_seed(3)
    return {
        "audio": torch.randn(n, frames, 8, generator=g),
        "identity": torch.randn(n, 5, generator=g),
        "emotion": torch.tensor([2, 6])[:n],
        "prev_motion": torch.randn(n, 1, 6, generator=g),
    }


class CountingModel:
    def __init__(self, model):
        self.model, self.calls, self.batch_sizes = model, 0, []

    def __call__(self, x, *args, **kwargs):
        self.calls += 1
        self.batch_sizes.append(len(x))
        return self.model(x, *args, **kwargs)


def test_guidance_scales_one_equal_the_conditional_prediction():
    model, cond = _tiny_model(), _cond()
    x, t = torch.randn(2, 5, 6), torch.tensor([0.3, 0.8])
    with torch.no_grad():
        conditional = model(x, t, **cond)
        torch.testing.assert_close(guided_velocity(model, x, t, cond, 1.0, 1.0), conditional)
        # the batched three-pass composition reduces to it too (s_a = s_e = 1 up to rounding)
        torch.testing.assert_close(guided_velocity(model, x, t, cond, 1.0 + 1e-7, 1.0), conditional)


@pytest.mark.parametrize(
    ("s_audio", "s_emotion", "passes"),
    [
        (2.0, 1.0, 3),  # an emotion scale of 1 alone does not reduce: all three weights are non-zero
        (1.5, 0.5, 3),
        (1.15, 1.15, 2),  # MoDA's single scale: unconditional and conditional only
        (1.0, 3.0, 2),  # audio scale 1: audio-only and conditional
        (1.5, 0.0, 2),  # emotion scale 0: unconditional and audio-only
        (0.0, 0.0, 1),  # the unconditional prediction
        (1.0, 0.0, 1),  # the audio-only prediction
    ],
)
def test_guidance_makes_only_the_needed_passes_and_equals_the_three_pass_formula(s_audio, s_emotion, passes):
    model, cond = _tiny_model(), _cond()
    x, t = torch.randn(2, 5, 6), torch.tensor([0.3, 0.8])
    counting = CountingModel(model)
    with torch.no_grad():
        guided = guided_velocity(counting, x, t, cond, s_audio, s_emotion)
        v_full = model(x, t, **cond)
        v_audio = model(x, t, **{**cond, "emotion": torch.full((2,), 8)})
        v_uncond = model(
            x, t, **{**cond, "emotion": torch.full((2,), 8)}, audio_null=torch.ones(2, dtype=torch.bool)
        )
    assert counting.calls == 1 and counting.batch_sizes == [2 * passes]  # two samples, `passes` conditions each
    expected = v_uncond + s_audio * (v_audio - v_uncond) + s_emotion * (v_full - v_audio)
    torch.testing.assert_close(guided, expected, rtol=1e-4, atol=1e-5)
    assert (guided - v_full).abs().max() > 1e-3  # guidance really changes the velocity


@pytest.mark.parametrize("guidance", [(1.0, 1.0), (1.5, 2.0)])
def test_sampler_with_the_exact_velocity_field_reaches_the_target(guidance):
    target = torch.randn(2, 5, 6)

    def exact(x_t, t, **cond):  # all data is `target`; guidance batches three copies of it
        return (x_t - target.repeat(x_t.shape[0] // 2, 1, 1)) / t[:, None, None]

    out = sample(
        exact,
        _cond(),
        num_frames=5,
        steps=4,
        guidance_audio=guidance[0],
        guidance_emotion=guidance[1],
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(out, target, rtol=1e-5, atol=1e-5)


def test_sampler_is_one_model_call_per_step_and_seeded():
    model, cond = _tiny_model(), _cond()
    counting = CountingModel(model)
    a = sample(
        counting,
        cond,
        5,
        steps=3,
        guidance_audio=1.2,
        guidance_emotion=1.5,
        generator=torch.Generator().manual_seed(9),
    )
    b = sample(
        model,
        cond,
        5,
        steps=3,
        guidance_audio=1.2,
        guidance_emotion=1.5,
        generator=torch.Generator().manual_seed(9),
    )
    assert counting.calls == 3
    assert torch.equal(a, b) and a.shape == (2, 5, 6)
    noise = torch.randn(2, 5, 6)
    c = sample(model, cond, 5, steps=3, noise=noise)
    d = sample(model, cond, 5, steps=3, noise=noise)
    assert torch.equal(c, d)


def test_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        sample(_tiny_model(), _cond(), 5, steps=0)
    with pytest.raises(ValueError, match=r"noise must have shape \[2, 5, 6\]"):
        sample(_tiny_model(), _cond(), 5, noise=torch.zeros(2, 4, 6))


def test_time_grids():
    from moda_train.flow.sampler import time_grid

    torch.testing.assert_close(time_grid(10), torch.linspace(1, 0, 11))
    released = time_grid(10, "released")
    assert len(released) == 11 and released[-1] == 0
    torch.testing.assert_close(released[:-1], torch.linspace(1, 0.001, 10))
    with pytest.raises(ValueError, match="time grid 'cosine'"):
        time_grid(10, "cosine")
