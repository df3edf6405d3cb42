"""The result type every metric returns, and helpers the metric modules share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kinema.eval.assign import Context
from kinema.eval.thresholds import Thresholds
from kinema.world.simulate import PHYSICS


@dataclass
class MetricResult:
    """``value`` is compared with ``threshold``; ``detail`` says what failed, in words."""

    name: str
    value: float
    passed: bool
    threshold: float
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "value": float(self.value), "passed": bool(self.passed),
                "threshold": float(self.threshold), "detail": self.detail}


Metric = Callable[[Context, Thresholds], "MetricResult | None"]


def px_per_frame(ctx: Context, units_per_s: float) -> float:
    """A world speed (units / s, ``PHYSICS``) in pixels per frame of this clip."""
    return units_per_s * ctx.unit / ctx.fps


def world_gravity_px(ctx: Context) -> float:
    """Gravity in px / frame^2: the rollout's, else the world's at this clip's size and frame rate."""
    if ctx.exp.rollout is not None and ctx.exp.rollout.gravity > 0:
        return float(ctx.exp.rollout.gravity)
    return PHYSICS.gravity * ctx.unit / ctx.fps**2


def velocity(c: np.ndarray, t: int, before: bool, span: int = 2) -> np.ndarray | None:
    """Mean velocity (2,) over ``span`` frame steps ending (before) or starting (after) at ``t``; None if unseen."""
    a, b = (t - span, t) if before else (t, t + span)
    if a < 0 or b >= len(c) or np.isnan(c[a]).any() or np.isnan(c[b]).any():
        return None
    return (c[b] - c[a]) / span
