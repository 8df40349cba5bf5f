"""Euler sampling from noise (t = 1) to motion (t = 0) with separate audio and emotion guidance."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from moda_train.flow.conditions import null_conditions, select_conditions
from moda_train.flow.config import TIME_GRIDS

RELEASED_LAST_T = 0.001  # the released MoDA sampler's last evaluated time; it then steps straight to t = 0


def time_grid(steps: int, grid: str = "uniform", device=None, dtype=None) -> Tensor:
    """The steps + 1 times [1, ..., 0] an Euler sampler passes through; the model is evaluated at all but the last.

    `uniform`: linspace(1, 0, steps + 1). `released`: linspace(1, 0.001, steps), then 0, the released MoDA
    sampler's grid (its weights were trained and tuned on it; one window differs by about 0.37 relative between
    the two grids with the same model and noise).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if grid == "uniform":
        return torch.linspace(1.0, 0.0, steps + 1, device=device, dtype=dtype)
    if grid == "released":
        evaluated = torch.linspace(1.0, RELEASED_LAST_T, steps, device=device, dtype=dtype)
        return torch.cat([evaluated, evaluated.new_zeros(1)])
    raise ValueError(f"time grid {grid!r}: choose {' or '.join(TIME_GRIDS)}")


def guidance_weights(guidance_audio: float, guidance_emotion: float) -> dict[tuple[bool, bool], float]:
    """The guided velocity as a weighted sum of predictions: {(null_audio, null_emotion): weight}, zero weights
    left out. Expanding the guidance formula (see `guided_velocity`) gives

        v = (1 - s_a) v(null, null) + (s_a - s_e) v(audio, null) + s_e v(audio, emotion),

    so equal scales (MoDA's single scale) need two passes, s_a = 1 or s_e = 0 two, s_a = s_e = 1 one (the
    conditional prediction); any other pair needs all three. The weights always sum to 1.
    """
    weights = {
        (True, True): 1.0 - guidance_audio,
        (False, True): guidance_audio - guidance_emotion,
        (False, False): guidance_emotion,
    }
    return {condition: w for condition, w in weights.items() if w != 0.0}


def guided_velocity(
    model: Callable[..., Tensor],
    x: Tensor,
    t: Tensor,
    cond: Mapping[str, Tensor],
    guidance_audio: float = 1.0,
    guidance_emotion: float = 1.0,
    null_emotion: int = 8,
) -> Tensor:
    """Classifier-free guided velocity with separate audio and emotion scales s_a, s_e:

        v = v(null, null) + s_a [v(audio, null) - v(null, null)] + s_e [v(audio, emotion) - v(audio, null)]

    (conditions written as (audio, emotion); identity and previous motion are always kept). With s_a = s_e = s
    this is MoDA's single scale, v_uncond + s (v_cond - v_uncond); s_e alone strengthens the emotion on top of the
    audio-driven motion. Only the predictions with a non-zero weight are made (`guidance_weights`: one to three),
    batched into one model call.
    """
    weights = guidance_weights(guidance_audio, guidance_emotion)
    passes = [null_conditions(cond, audio, emotion, null_emotion) for audio, emotion in weights]
    n = len(passes)
    batched = {key: torch.cat([p[key] for p in passes]) for key in passes[0]}
    velocities = model(torch.cat([x] * n), torch.cat([t] * n), **batched).chunk(n)
    if n == 1:
        return velocities[0]  # its weight is exactly 1: the prediction itself, bit for bit
    return sum(w * v for w, v in zip(weights.values(), velocities))


@torch.no_grad()
def sample(
    model: Callable[..., Tensor],
    cond: Mapping[str, Tensor],
    num_frames: int,
    steps: int = 10,
    guidance_audio: float = 1.0,
    guidance_emotion: float = 1.0,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
    null_emotion: int = 8,
    grid: str = "uniform",
) -> Tensor:
    """Integrate dx/dt = v from t = 1 (noise) to t = 0 in `steps` Euler steps on the `grid` of `time_grid`
    (equal steps by default); returns x0 [B, T, C].

    `cond` holds audio [B, T, A], identity, emotion [B] and prev_motion [B, P, C] (C, the motion width, is read
    from prev_motion). The starting noise is `noise` [B, T, C] if given, else drawn from `generator` (on the
    conditions' device) or the global RNG. `model` is any callable with MoDA's signature (EMA copy, compiled).
    """
    cond = select_conditions(cond)
    prev = cond["prev_motion"]
    shape = (prev.shape[0], num_frames, prev.shape[-1])
    if noise is None:
        noise = torch.randn(shape, generator=generator, device=prev.device, dtype=prev.dtype)
    elif tuple(noise.shape) != shape:
        raise ValueError(
            f"noise must have shape {list(shape)} (batch, num_frames, motion width), got {list(noise.shape)}"
        )
    times = time_grid(steps, grid, device=noise.device, dtype=noise.dtype)
    x = noise
    for t_now, t_next in zip(times[:-1], times[1:]):
        v = guided_velocity(model, x, t_now.expand(shape[0]), cond, guidance_audio, guidance_emotion, null_emotion)
        x = x + (t_next - t_now) * v
    return x
