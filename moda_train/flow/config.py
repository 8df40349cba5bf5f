"""Rectified-flow configuration: time sampling, loss weights, condition dropout and the sampler."""

from __future__ import annotations

from dataclasses import dataclass

TIME_GRIDS = ("uniform", "released")


@dataclass
class FlowConfig:
    time_sampling: str = "uniform"
    """How training draws t: `uniform` on [t_min, t_max] (MoDA), or `logit_normal` (SD3)."""
    t_min: float = 0.001
    """Smallest training t (t = 0 is data, t = 1 is noise)."""
    t_max: float = 1.0
    """Largest training t."""
    logit_normal_mean: float = 0.0
    """Mean of the normal whose sigmoid gives t, with time_sampling=logit_normal."""
    logit_normal_std: float = 1.0
    """Std of the normal whose sigmoid gives t, with time_sampling=logit_normal."""
    weight_expression: float = 1.0
    """Weight of the expression group (63 dims): scales its velocity MSE and its temporal and smooth terms."""
    weight_pose: float = 1.0
    """Weight of the pose group (7 dims): scales its velocity MSE and its temporal and smooth terms."""
    weight_lip: float = 1.0
    """Weight of the lip group (18 dims, a subset of expression, so counted on top of it), applied likewise."""
    weight_temporal: float = 0.1
    """Weight of the temporal-difference loss on the predicted clean motion (matches frame-to-frame change)."""
    weight_smooth: float = 0.01
    """Weight of the smoothness loss on the predicted clean motion (penalises second differences)."""
    drop_audio: float = 0.2
    """Probability that a training sample sees the null audio condition (enables audio guidance)."""
    drop_emotion: float = 0.1
    """Probability that a training sample sees the null emotion (enables emotion guidance)."""
    drop_prev_motion: float = 0.0
    """Probability that a training sample sees zero previous motion."""
    null_emotion: int = 8
    """Class id of the null emotion used for dropped labels and guidance; must equal model.num_emotions."""
    sample_steps: int = 10
    """Euler steps from t = 1 to t = 0 at sampling time."""
    sample_grid: str = "uniform"
    """Times the sampler evaluates the model at (`sampler.time_grid`): `uniform`, sample_steps equal steps from 1
    to 0; `released`, the released MoDA sampler's linspace(1, 0.001, sample_steps) and a last step to 0."""
    rescale_reference: bool = False
    """Generation: divide the reference photo's scale and translation by r = (its scale + 1e-5) / (the training
    mean scale + 1e-5) before they condition the model, and multiply the generated scale and translation by r (the
    released MoDA pipeline's; imported checkpoints set it). Off: the photo's own scale conditions the model."""
    guidance_audio: float = 1.15
    """Classifier-free guidance scale on audio (1 = off)."""
    guidance_emotion: float = 1.15
    """Classifier-free guidance scale on emotion (1 = off); separate from audio, unlike MoDA's single scale."""

    def __post_init__(self) -> None:
        problems = []
        if self.time_sampling not in ("uniform", "logit_normal"):
            problems.append(f"flow.time_sampling={self.time_sampling!r}: choose uniform or logit_normal")
        if not 0.0 <= self.t_min < self.t_max <= 1.0:
            problems.append("flow.t_min < flow.t_max must both lie in [0, 1]")
        for name in ("drop_audio", "drop_emotion", "drop_prev_motion"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"flow.{name} must be a probability in [0, 1]")
        if self.null_emotion < 0:
            problems.append("flow.null_emotion must be >= 0")
        if self.logit_normal_std <= 0:
            problems.append("flow.logit_normal_std must be > 0")
        for name in ("weight_expression", "weight_pose", "weight_lip", "weight_temporal", "weight_smooth"):
            if getattr(self, name) < 0:
                problems.append(f"flow.{name} must be >= 0")
        if self.guidance_audio < 0 or self.guidance_emotion < 0:
            problems.append("flow.guidance_audio and flow.guidance_emotion must be >= 0")
        if self.sample_grid not in TIME_GRIDS:
            problems.append(f"flow.sample_grid={self.sample_grid!r}: choose {' or '.join(TIME_GRIDS)}")
        if self.sample_steps < 1:
            problems.append("flow.sample_steps must be >= 1")
        if problems:
            raise ValueError("; ".join(problems))
