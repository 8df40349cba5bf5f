"""The rectified-flow training loss of MoDA: velocity MSE per motion group plus temporal terms on x0_hat."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from moda_train.flow.conditions import drop_conditions
from moda_train.flow.config import FlowConfig
from moda_train.flow.path import interpolate, predicted_x0, target_velocity
from moda_train.flow.timesteps import sample_t


def _group_weights(groups: Mapping[str, list[int]] | None, cfg: FlowConfig, channels: int) -> dict:
    if groups is None:  # e.g. a VAE latent: no named groups, one velocity term over every channel
        return {"all": (list(range(channels)), 1.0)}
    out = {}
    for name, indices in groups.items():
        if not hasattr(cfg, f"weight_{name}"):
            raise ValueError(f"loss group {name!r} has no weight: FlowConfig needs a field weight_{name}")
        if not indices or min(indices) < 0 or max(indices) >= channels:
            raise ValueError(f"loss group {name!r}: indices must be non-empty and within 0..{channels - 1}")
        out[name] = (list(indices), getattr(cfg, f"weight_{name}"))
    return out


def flow_loss(
    model: Callable[..., Tensor],
    x0: Tensor,
    cond: Mapping[str, Tensor],
    cfg: FlowConfig,
    groups: Mapping[str, list[int]] | None,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Draw t and noise, drop conditions for guidance, predict the velocity and score it.

    x0 [B, T, C] is the clean (normalised) motion; `cond` holds audio, identity, emotion and prev_motion (a full
    batch dict works too). `groups` maps a name to channel indices (`moda_train.core.motion_layout.group_indices()`
    for raw motion), each weighted by `cfg.weight_<name>`; None scores all channels as one group "all".
    Per group g with weight w_g:
        velocity/g = mean (v_hat - v)^2              over the group's channels
        temporal/g = mean (diff x0_hat - diff x0)^2  frame-to-frame change of the predicted clean motion
        smooth/g   = mean (diff^2 x0_hat)^2          its acceleration
    velocity, temporal and smooth are the w_g-weighted sums over groups, and
        loss = velocity + cfg.weight_temporal * temporal + cfg.weight_smooth * smooth.
    Also returned: x0_hat [B, T, C] (with its graph, for extra losses such as ALSE) and t [B].
    Random draws use `generator` (on x0's device) or the global RNG.
    """
    if x0.ndim != 3:
        raise ValueError(f"x0 must be [B, T, C], got {list(x0.shape)}")
    B, T, C = x0.shape
    t = sample_t(B, cfg, generator=generator, device=x0.device).to(x0.dtype)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = interpolate(x0, noise, t)
    v_hat = model(x_t, t, **drop_conditions(cond, cfg, generator))
    x0_hat = predicted_x0(x_t, v_hat, t)

    v_err = (v_hat - target_velocity(x0, noise)).square()
    step_err = (x0_hat.diff(dim=1) - x0.diff(dim=1)).square()
    accel = x0_hat.diff(n=2, dim=1).square() if T >= 3 else x0_hat.new_zeros(B, 0, C)
    out: dict[str, Tensor] = {}
    totals = {"velocity": x0.new_zeros(()), "temporal": x0.new_zeros(()), "smooth": x0.new_zeros(())}
    for name, (indices, weight) in _group_weights(groups, cfg, C).items():
        for term, err in (("velocity", v_err), ("temporal", step_err), ("smooth", accel)):
            value = err[..., indices].mean() if err.shape[1] else x0.new_zeros(())
            out[f"{term}/{name}"] = value
            totals[term] = totals[term] + weight * value
    out.update(totals)
    out["loss"] = (
        totals["velocity"] + cfg.weight_temporal * totals["temporal"] + cfg.weight_smooth * totals["smooth"]
    )
    out["x0_hat"] = x0_hat
    out["t"] = t
    return out
