"""The interpolation path and the training-time sampling of t (t = 0 data, t = 1 noise)."""

import pytest
import torch

from moda_train.flow import FlowConfig
from moda_train.flow.path import interpolate, predicted_x0, target_velocity
from moda_train.flow.timesteps import sample_t


def test_path_endpoints_velocity_and_x0_recovery():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 6, 3, generator=g), torch.randn(4, 6, 3, generator=g)
    torch.testing.assert_close(interpolate(x0, noise, torch.zeros(4)), x0)
    torch.testing.assert_close(interpolate(x0, noise, torch.ones(4)), noise)
    t = torch.tensor([0.1, 0.4, 0.7, 0.95])
    h = 1e-3  # the path is straight: a finite difference gives the velocity exactly
    finite = (interpolate(x0, noise, t + h) - interpolate(x0, noise, t)) / h
    torch.testing.assert_close(finite, target_velocity(x0, noise), rtol=1e-3, atol=1e-3)
    x_t = interpolate(x0, noise, t)
    torch.testing.assert_close(predicted_x0(x_t, target_velocity(x0, noise), t), x0)


def test_uniform_t_covers_its_range_evenly():
    cfg = FlowConfig(t_min=0.001, t_max=1.0)
    t = sample_t(50_000, cfg, torch.Generator().manual_seed(0))
    assert t.min() >= 0.001 and t.max() <= 1.0
    assert abs(t.mean().item() - 0.5005) < 0.01
    counts = torch.histc(t, bins=10, min=0.001, max=1.0)
    assert (counts / len(t) - 0.1).abs().max() < 0.01


def test_logit_normal_t_concentrates_mid_range_within_bounds():
    cfg = FlowConfig(time_sampling="logit_normal", t_min=0.0, t_max=1.0)
    t = sample_t(50_000, cfg, torch.Generator().manual_seed(0))
    assert 0.0 < t.min() and t.max() < 1.0
    assert abs(t.median().item() - 0.5) < 0.01
    middle = ((t > 0.25) & (t < 0.75)).float().mean().item()
    assert middle > 0.65  # uniform would give 0.5; logit-normal(0, 1) gives about 0.73
    shifted = sample_t(50_000, FlowConfig(time_sampling="logit_normal", logit_normal_mean=1.0))
    assert shifted.median() > 0.7


def test_t_is_reproducible_with_a_generator():
    cfg = FlowConfig()
    a = sample_t(8, cfg, torch.Generator().manual_seed(5))
    b = sample_t(8, cfg, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("time_sampling", "cosine", "choose uniform or logit_normal"),
        ("t_min", 1.0, "t_min < flow.t_max"),
        ("drop_audio", 1.5, "drop_audio must be a probability"),
        ("weight_lip", -1.0, "weight_lip must be >= 0"),
        ("sample_steps", 0, "sample_steps must be >= 1"),
    ],
)
def test_flow_config_checks_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        FlowConfig(**{field: value})
