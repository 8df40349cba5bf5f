"""The straight path between data and noise (t = 0 data, t = 1 noise) and the quantities derived from it."""

from __future__ import annotations

from torch import Tensor


def _per_sample(t: Tensor, like: Tensor) -> Tensor:
    """t [B] -> [B, 1, ..., 1] broadcastable against `like` [B, ...]."""
    return t.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def interpolate(x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """x_t = (1 - t) x0 + t noise, for x0, noise [B, ...] and t [B]."""
    t = _per_sample(t, x0)
    return (1 - t) * x0 + t * noise


def target_velocity(x0: Tensor, noise: Tensor) -> Tensor:
    """The path's velocity dx_t/dt = noise - x0 (the same at every t)."""
    return noise - x0


def predicted_x0(x_t: Tensor, v: Tensor, t: Tensor) -> Tensor:
    """The clean sample implied by a velocity prediction: x0_hat = x_t - t v."""
    return x_t - _per_sample(t, x_t) * v
