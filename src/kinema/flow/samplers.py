"""ODE samplers for the rectified-flow ODE ``dx/dt = v(x, t)``, integrated from t = 1 to t = 0.

Every sampler has the signature ``sampler(fn, x, schedule, callback=None) -> x_final`` where

- ``fn(x (b, ...), t (b,)) -> v (b, ...)`` is the velocity (the DiT, usually wrapped by
  ``kinema.flow.guidance.guided_velocity_fn``),
- ``x`` is the state at ``schedule[0]`` (pure noise when ``schedule[0] == 1``),
- ``schedule (n + 1,)`` strictly decreasing times in [0, 1] (``get_schedule``); step ``i`` goes from
  ``schedule[i]`` to ``schedule[i + 1]``,
- ``callback(StepInfo)`` is called once per step, after the step.

SDEdit-style editing starts below ``t = 1``: the pipeline noises the clean input to
``t_start = schedule[0]`` with ``RectifiedFlowPath.sample(x0, noise, t_start).x_t`` and passes the
truncated schedule from ``truncate_schedule(schedule, strength)``; the samplers need nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from kinema.errors import InvalidInputError

VelocityFn = Callable[[Tensor, Tensor], Tensor]  # (x (b, ...), t (b,)) -> velocity (b, ...)


@dataclass
class StepInfo:
    """State of one finished sampler step, handed to the callback.

    Attributes:
        step: index of the step, 0 .. total - 1.
        total: number of steps (``len(schedule) - 1``).
        t: flow time at the start of the step.
        t_next: flow time at its end.
        x: ``(b, ...)`` state at ``t`` (before the step).
        x_next: ``(b, ...)`` state at ``t_next`` (after the step).
        velocity: ``(b, ...)`` the model's velocity at ``(x, t)``.
        denoised: ``(b, ...)`` the data estimate at ``(x, t)``: ``x - t * velocity``.
    """

    step: int
    total: int
    t: float
    t_next: float
    x: Tensor
    x_next: Tensor
    velocity: Tensor
    denoised: Tensor


StepCallback = Callable[[StepInfo], None]


class Sampler(Protocol):
    def __call__(
        self, fn: VelocityFn, x: Tensor, schedule: Tensor, callback: StepCallback | None = None
    ) -> Tensor: ...


def check_schedule(schedule: Tensor) -> None:
    """Raise ``InvalidInputError`` unless ``schedule`` is 1-D, >= 2 long, decreasing, in [0, 1]."""
    if schedule.ndim != 1 or schedule.shape[0] < 2:
        raise InvalidInputError(
            f"schedule must be 1-D with >= 2 times; got shape {tuple(schedule.shape)}"
        )
    if not bool(torch.isfinite(schedule).all()) or schedule.min() < 0 or schedule.max() > 1:
        raise InvalidInputError(
            f"schedule times must lie in [0, 1]; got min {schedule.min().item()}, "
            f"max {schedule.max().item()}"
        )
    if not bool((schedule[1:] < schedule[:-1]).all()):
        raise InvalidInputError(
            "schedule must be strictly decreasing (t = 1 noise -> t = 0 data); "
            f"got {schedule.tolist()}"
        )


def truncate_schedule(schedule: Tensor, strength: float) -> Tensor:
    """Start a schedule at ``t_start = strength`` (SDEdit): ``[strength, *(times < strength)]``.

    ``strength`` is the flow time the input is noised to: 1.0 keeps the full schedule (the input is
    ignored), small values keep the input nearly unchanged. The steps of ``schedule`` below
    ``strength`` are kept as they are, so a shifted schedule keeps its spacing. The pipeline noises
    its clean latents to ``truncated[0]`` before sampling.
    """
    check_schedule(schedule)
    end, start = float(schedule[-1]), float(schedule[0])
    if not end < strength <= start:
        raise InvalidInputError(
            f"strength={strength} is out of range; allowed ({end}, {start}] for this schedule"
        )
    below = schedule[schedule < strength - 1e-6]  # (k,)
    return torch.cat([schedule.new_tensor([strength]), below])  # (k + 1,)


def _time(t: float, x: Tensor) -> Tensor:
    """Flow time ``t`` as ``(b,)``: float32, or float64 when ``x`` is float64."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    return torch.full((x.shape[0],), t, dtype=dtype, device=x.device)


@torch.no_grad()
def euler(
    fn: VelocityFn, x: Tensor, schedule: Tensor, callback: StepCallback | None = None
) -> Tensor:
    """Euler's method (1st order): ``x <- x + (t_next - t) v(x, t)``; one evaluation per step."""
    check_schedule(schedule)
    times = schedule.tolist()
    total = len(times) - 1
    for i in range(total):
        t, t_next = times[i], times[i + 1]
        v = fn(x, _time(t, x))
        x_next = x + (t_next - t) * v
        if callback is not None:
            callback(StepInfo(i, total, t, t_next, x, x_next, v, x - t * v))
        x = x_next
    return x


@torch.no_grad()
def heun(
    fn: VelocityFn, x: Tensor, schedule: Tensor, callback: StepCallback | None = None
) -> Tensor:
    """Heun's method (2nd-order trapezoid predictor-corrector); the final step to t = 0 is Euler.

    ``x' = x + dt v(x, t)``, ``x <- x + dt (v(x, t) + v(x', t_next)) / 2``: two evaluations per
    step, one for the last step to 0 (as in Karras et al. 2022): ``2 n - 1`` evaluations for a
    schedule of ``n`` steps ending at 0.
    """
    check_schedule(schedule)
    times = schedule.tolist()
    total = len(times) - 1
    for i in range(total):
        t, t_next = times[i], times[i + 1]
        dt = t_next - t
        v = fn(x, _time(t, x))
        x_next = x + dt * v  # Euler predictor
        if t_next > 0:
            v_next = fn(x_next, _time(t_next, x))
            x_next = x + dt * 0.5 * (v + v_next)  # trapezoid corrector
        if callback is not None:
            callback(StepInfo(i, total, t, t_next, x, x_next, v, x - t * v))
        x = x_next
    return x


SAMPLERS: dict[str, Sampler] = {"euler": euler, "heun": heun}


def get_sampler(name: str) -> Sampler:
    """The sampler called ``name``; raises ``InvalidInputError`` listing the known names."""
    if name not in SAMPLERS:
        raise InvalidInputError(f"unknown sampler {name!r}; allowed {sorted(SAMPLERS)}")
    return SAMPLERS[name]
