"""One metric per failure mode. Each takes a ``Context`` and ``Thresholds`` and returns a
``MetricResult`` (or ``None`` when the clip has nothing the metric could check).

``METRICS`` maps metric names to functions; suites (``kinema.eval.suites``) are lists of these names.
"""

from __future__ import annotations

from typing import Final

from kinema.eval.metrics.base import Metric, MetricResult
from kinema.eval.metrics.objects import (
    attribute_accuracy,
    color_accuracy,
    count_accuracy,
    direction_accuracy,
    identity_persistence,
    shape_accuracy,
    speed_error,
    spurious_events,
    trajectory_error,
)
from kinema.eval.metrics.physics import (
    bounce_collision,
    gravity_fit,
    object_permanence,
    state_change,
)
from kinema.eval.metrics.scene import (
    background_stability,
    camera_pan,
    first_frame_fidelity,
    flicker,
    seam_continuity,
)

METRICS: Final[dict[str, Metric]] = {
    "count": count_accuracy,
    "attributes": attribute_accuracy,
    "color": color_accuracy,
    "shape": shape_accuracy,
    "spurious": spurious_events,
    "identity": identity_persistence,
    "direction": direction_accuracy,
    "speed": speed_error,
    "trajectory": trajectory_error,
    "gravity": gravity_fit,
    "bounce": bounce_collision,
    "permanence": object_permanence,
    "background": background_stability,
    "camera_pan": camera_pan,
    "flicker": flicker,
    "state_change": state_change,
    "first_frame": first_frame_fidelity,
    "seam": seam_continuity,
}

__all__ = ["METRICS", "Metric", "MetricResult"]
