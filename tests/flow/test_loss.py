"""The flow loss: zero for the exact velocity, group weights, returned terms, and a tiny model that overfits."""

import pytest
import torch

from moda_train.core.motion_layout import group_indices
from moda_train.flow import FlowConfig, flow_loss
from tests.tiny_moda import tiny_model

NO_DROP = FlowConfig(drop_audio=0.0, drop_emotion=0.0)


def _cond(n: int, frames: int, audio_dim: int = 8, identity_dim: int = 63, motion_dim: int = 70) -> dict:
    g = torch.Generator().manual_seed(2)
    return {
        "audio": torch.randn(n, frames, audio_dim, generator=g),
        "identity": torch.randn(n, identity_dim, generator=g),
        "emotion": torch.arange(n) % 8,
        "prev_motion": torch.randn(n, 1, motion_dim, generator=g),
    }


class ExactVelocity:
    """The true velocity field when all data is one known sequence x0: v(x_t, t) = (x_t - x0) / t."""

    def __init__(self, x0: torch.Tensor):
        self.x0 = x0

    def __call__(self, x_t, t, **cond):
        return (x_t - self.x0) / t[:, None, None]


def test_exact_velocity_gives_zero_loss_and_recovers_x0():
    frames = torch.linspace(-1, 1, 12)[None, :, None]
    x0 = (frames * torch.randn(1, 1, 70)).expand(5, 12, 70)  # linear in time: its acceleration is zero
    out = flow_loss(ExactVelocity(x0), x0, _cond(5, 12), FlowConfig(), group_indices(), torch.Generator())
    for name in ("loss", "velocity", "temporal", "smooth", "velocity/lip", "temporal/pose"):
        assert out[name].item() < 1e-8, name
    torch.testing.assert_close(out["x0_hat"], x0)


def test_terms_weights_and_returned_tensors():
    x0 = torch.randn(4, 10, 70)
    zero = lambda x_t, t, **cond: torch.zeros_like(x_t)  # noqa: E731
    cfg = FlowConfig(
        weight_expression=2.0, weight_pose=3.0, weight_lip=5.0, weight_temporal=0.5, weight_smooth=0.25
    )
    out = flow_loss(zero, x0, _cond(4, 10), cfg, group_indices(), torch.Generator().manual_seed(0))
    expected = {"loss", "velocity", "temporal", "smooth", "x0_hat", "t"} | {
        f"{term}/{group}" for term in ("velocity", "temporal", "smooth") for group in ("expression", "pose", "lip")
    }
    assert set(out) == expected
    velocity = 2.0 * out["velocity/expression"] + 3.0 * out["velocity/pose"] + 5.0 * out["velocity/lip"]
    torch.testing.assert_close(out["velocity"], velocity)
    torch.testing.assert_close(out["loss"], out["velocity"] + 0.5 * out["temporal"] + 0.25 * out["smooth"])
    # a zero prediction makes x0_hat = x_t: check one term by hand
    noise_free_err = (out["x0_hat"].diff(dim=1) - x0.diff(dim=1)).square()[..., 63:70].mean()
    torch.testing.assert_close(out["temporal/pose"], noise_free_err)
    assert out["t"].shape == (4,) and out["x0_hat"].shape == x0.shape


def test_groups_none_scores_every_channel_once():
    x0 = torch.randn(2, 6, 16)
    out = flow_loss(lambda x_t, t, **c: x_t, x0, _cond(2, 6, motion_dim=16), FlowConfig(), None, torch.Generator())
    assert {"velocity/all", "temporal/all", "smooth/all"} <= set(out)
    torch.testing.assert_close(out["velocity"], out["velocity/all"])


def test_bad_groups_and_shapes_are_named():
    x0, cond = torch.randn(2, 6, 70), _cond(2, 6)
    model = lambda x_t, t, **c: x_t  # noqa: E731
    with pytest.raises(ValueError, match="group 'jaw' has no weight"):
        flow_loss(model, x0, cond, FlowConfig(), {"jaw": [1, 2]})
    with pytest.raises(ValueError, match="group 'pose'.*within 0..69"):
        flow_loss(model, x0, cond, FlowConfig(), {"pose": [70]})
    with pytest.raises(ValueError, match=r"x0 must be \[B, T, C\]"):
        flow_loss(model, x0[0], cond, FlowConfig(), None)


def test_same_generator_same_loss_and_gradients_reach_the_model():
    model = tiny_model(0, perturb=False, depth_single_stream=1, audio_dim=8, motion_dim=70, identity_dim=63)
    x0, cond = torch.randn(3, 6, 70), _cond(3, 6)
    a = flow_loss(model, x0, cond, FlowConfig(), group_indices(), torch.Generator().manual_seed(4))
    b = flow_loss(model, x0, cond, FlowConfig(), group_indices(), torch.Generator().manual_seed(4))
    assert torch.equal(a["loss"], b["loss"]) and torch.equal(a["t"], b["t"])
    a["loss"].backward()
    assert model.final.linear.weight.grad.abs().sum() > 0


@pytest.mark.slow
def test_tiny_model_overfits_a_handful_of_windows():
    model = tiny_model(
        0, perturb=False, hidden_size=64, depth_single_stream=1, audio_dim=16, motion_dim=8, identity_dim=4
    )
    x0 = torch.randn(4, 8, 8)
    cond = _cond(4, 8, audio_dim=16, identity_dim=4, motion_dim=8)

    def held_out_loss() -> float:  # the same 20 draws of (t, noise) before and after training
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return sum(flow_loss(model, x0, cond, NO_DROP, None, g)["velocity"].item() for _ in range(20)) / 20

    before = held_out_loss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch_x0, batch_cond = x0.repeat(8, 1, 1), {k: torch.cat([v] * 8) for k, v in cond.items()}
    g = torch.Generator().manual_seed(1)
    for _ in range(150):
        loss = flow_loss(model, batch_x0, batch_cond, NO_DROP, None, g)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = held_out_loss()
    assert after < before / 8, (before, after)
