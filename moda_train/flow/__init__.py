"""Rectified flow for motion generation: interpolation path, time sampling, losses, condition dropout, sampler.

Time convention (the only place it is stated): **t = 0 is data, t = 1 is noise.** The path is
x_t = (1 - t) x0 + t * noise, its velocity is v = dx_t/dt = noise - x0, and sampling integrates from t = 1 down
to t = 0. The network is called as `model(x_t, t, audio=..., identity=..., emotion=..., prev_motion=...,
audio_null=...)` and never sees anything of the schedule but t.
"""

from moda_train.flow.config import FlowConfig
from moda_train.flow.loss import flow_loss
from moda_train.flow.sampler import sample

__all__ = ["FlowConfig", "flow_loss", "sample"]
