"""Flow times: training-time distributions, the time shift and the sampling schedule.

Training draws ``t`` per sample. ``sample_logit_normal`` (Esser et al. 2024, SD3) puts more weight
on the middle times, where the velocity is hardest to predict, than ``sample_uniform``.

The shift ``t' = s t / (1 + (s - 1) t)`` moves times toward the noise end for ``s > 1``. It keeps
the endpoints (0 -> 0, 1 -> 1) and is the map that makes the signal-to-noise ratio at ``t'`` equal
to the one at ``t`` divided by ``s`` (``(1 - t') / t' = (1 - t) / (s t)``). Larger images/videos
hold more redundant tokens, so the same noise level destroys less of their content; they need
more time near the noise end, i.e. a larger ``s``. ``resolution_shift`` picks ``s`` from the
token count as Flux does: ``log s`` is linear in the number of tokens through two anchors.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kinema.errors import InvalidInputError


def sample_uniform(
    n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> Tensor:
    """``n`` times ``t ~ U[0, 1)`` -> ``(n,)`` float32."""
    _check_count(n)
    return torch.rand(n, generator=generator, device=device)


def sample_logit_normal(
    n: int,
    mean: float = 0.0,
    std: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """``n`` times ``t = sigmoid(u)``, ``u ~ N(mean, std^2)`` -> ``(n,)`` float32 in (0, 1).

    The density is ``p(t) = exp(-(logit t - mean)^2 / (2 std^2)) / (std sqrt(2 pi) t (1 - t))``;
    its median is ``sigmoid(mean)``. ``mean > 0`` favours noisier times.
    """
    _check_count(n)
    if not std > 0:
        raise InvalidInputError(f"logit-normal std={std} is invalid; allowed > 0")
    u = torch.randn(n, generator=generator, device=device) * std + mean
    return torch.sigmoid(u)


def shift_time(t: Tensor | float, shift: float) -> Tensor | float:
    """``t' = shift * t / (1 + (shift - 1) * t)``; shift 1 is the identity, > 1 -> noisier."""
    if not shift > 0:
        raise InvalidInputError(f"time shift={shift} is invalid; allowed > 0")
    return shift * t / (1 + (shift - 1) * t)


def resolution_shift(
    num_tokens: int,
    base_tokens: int = 256,
    max_tokens: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    """The shift ``s`` for a latent of ``num_tokens`` DiT tokens (Flux's rule).

    ``log s`` is linear in the token count through ``(base_tokens, base_shift)`` and
    ``(max_tokens, max_shift)`` and extrapolates beyond them::

        log s = base_shift + (num_tokens - base_tokens) * slope
        slope = (max_shift - base_shift) / (max_tokens - base_tokens)

    With the defaults (Flux's): 256 tokens -> s = e^0.5 = 1.65, 4096 tokens -> s = e^1.15 = 3.16,
    64 tokens -> s = 1.60. Flux writes the shifted time as ``e^mu / (e^mu + 1/t - 1)``, which is
    ``shift_time(t, e^mu)``.
    """
    if num_tokens < 1:
        raise InvalidInputError(f"num_tokens={num_tokens} is invalid; allowed >= 1")
    if max_tokens <= base_tokens:
        raise InvalidInputError(
            f"max_tokens={max_tokens} must exceed base_tokens={base_tokens}"
        )
    slope = (max_shift - base_shift) / (max_tokens - base_tokens)
    mu = base_shift + slope * (num_tokens - base_tokens)
    return math.exp(mu)


def get_schedule(steps: int, shift: float = 1.0) -> Tensor:
    """Sampling times ``(steps + 1,)`` float32 from 1.0 down to 0.0: uniform, then ``shift_time``.

    Step ``i`` integrates from ``schedule[i]`` to ``schedule[i + 1]``.
    """
    if steps < 1:
        raise InvalidInputError(f"steps={steps} is invalid; allowed >= 1")
    if not shift > 0:
        raise InvalidInputError(f"time shift={shift} is invalid; allowed > 0")
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)  # (steps + 1,)
    return (shift * t / (1 + (shift - 1) * t)).float()  # shift_time, computed in float64


def _check_count(n: int) -> None:
    if n < 1:
        raise InvalidInputError(f"number of times n={n} is invalid; allowed >= 1")
