"""The rectified-flow (linear interpolation) probability path.

With data ``x_0 ~ p_data``, noise ``eps ~ N(0, I)`` and flow time ``t`` in [0, 1] (1 = pure noise):

    x_t = (1 - t) * x_0 + t * eps
    u_t = d x_t / dt = eps - x_0            (the conditional velocity, the training target)

The model ``v(x_t, t)`` is trained with ``|| v(x_t, t) - (eps - x_0) ||^2``; its minimiser is the
marginal velocity ``E[eps - x_0 | x_t]``. Sampling integrates ``dx/dt = v(x, t)`` from ``t = 1``
(noise) down to ``t = 0`` (data). From a velocity one reads both endpoints:

    x_0 = x_t - t * v        eps = x_t + (1 - t) * v

This is the conditional optimal-transport path of Lipman et al. (2023) / rectified flow of Liu et
al. (2023) with the time axis reversed (t = 1 is noise), as in Stable Diffusion 3 and Flux.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from kinema.errors import InvalidInputError


def broadcast_time(t: Tensor, x: Tensor) -> Tensor:
    """Reshape ``t (b,)`` to ``(b, 1, ..., 1)`` so it broadcasts against ``x (b, ...)``."""
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise InvalidInputError(
            f"flow time must have shape (b,) = ({x.shape[0]},); got {tuple(t.shape)}"
        )
    return t.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)  # (b, 1, ..., 1)


@dataclass
class PathSample:
    """One draw from the path: the noisy point, the velocity target and the time.

    Attributes:
        x_t: ``(b, ...)`` the interpolant ``(1 - t) x_0 + t eps``.
        velocity: ``(b, ...)`` the target ``eps - x_0``.
        t: ``(b,)`` flow time.
    """

    x_t: Tensor
    velocity: Tensor
    t: Tensor


class RectifiedFlowPath:
    """``x_t = (1 - t) x_0 + t eps``, velocity ``eps - x_0`` (stateless; see the module doc)."""

    def sample(self, x0: Tensor, noise: Tensor, t: Tensor) -> PathSample:
        """Interpolate data ``x0 (b, ...)`` and ``noise (b, ...)`` at times ``t (b,)``."""
        if x0.shape != noise.shape:
            raise InvalidInputError(
                f"x0 and noise must have one shape; got {tuple(x0.shape)} and {tuple(noise.shape)}"
            )
        tb = broadcast_time(t, x0)  # (b, 1, ..., 1)
        x_t = (1 - tb) * x0 + tb * noise
        return PathSample(x_t=x_t, velocity=noise - x0, t=t)

    @staticmethod
    def x0_from_velocity(x_t: Tensor, velocity: Tensor, t: Tensor) -> Tensor:
        """The data estimate ``x_0 = x_t - t v`` (the "denoised" image of a step)."""
        return x_t - broadcast_time(t, x_t) * velocity

    @staticmethod
    def noise_from_velocity(x_t: Tensor, velocity: Tensor, t: Tensor) -> Tensor:
        """The noise estimate ``eps = x_t + (1 - t) v``."""
        return x_t + (1 - broadcast_time(t, x_t)) * velocity
