"""Flow matching: the rectified-flow path, flow-time sampling and shift, ODE samplers, guidance.

Convention: ``x_t = (1 - t) x_0 + t * noise``, velocity target ``noise - x_0``; ``t = 1`` is noise
and sampling integrates ``dx/dt = v(x, t)`` from ``t = 1`` down to ``t = 0``.
"""

from __future__ import annotations

from kinema.flow.guidance import VelocityModel, combine_guidance, guided_velocity_fn
from kinema.flow.path import PathSample, RectifiedFlowPath, broadcast_time
from kinema.flow.samplers import (
    SAMPLERS,
    Sampler,
    StepCallback,
    StepInfo,
    VelocityFn,
    check_schedule,
    euler,
    get_sampler,
    heun,
    truncate_schedule,
)
from kinema.flow.timesteps import (
    get_schedule,
    resolution_shift,
    sample_logit_normal,
    sample_uniform,
    shift_time,
)

__all__ = [
    "SAMPLERS",
    "PathSample",
    "RectifiedFlowPath",
    "Sampler",
    "StepCallback",
    "StepInfo",
    "VelocityFn",
    "VelocityModel",
    "broadcast_time",
    "check_schedule",
    "combine_guidance",
    "euler",
    "get_sampler",
    "get_schedule",
    "guided_velocity_fn",
    "heun",
    "resolution_shift",
    "sample_logit_normal",
    "sample_uniform",
    "shift_time",
    "truncate_schedule",
]
