"""Evaluate one video against its expectation: track, measure, run a list of metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kinema.errors import InvalidInputError
from kinema.eval.assign import Context, assign, estimate_pan, scene_pixels
from kinema.eval.expectations import Expectation
from kinema.eval.metrics import METRICS, MetricResult
from kinema.eval.thresholds import Thresholds
from kinema.eval.tracker import TrackerConfig, track


@dataclass
class ClipResult:
    """Metric results of one clip (``metrics`` holds only the metrics that applied)."""

    clip_id: str
    caption: str
    metrics: dict[str, MetricResult]
    num_tracks: int = 0
    source: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(m.passed for m in self.metrics.values())

    def failed(self) -> list[str]:
        return [k for k, m in self.metrics.items() if not m.passed]

    def to_dict(self) -> dict[str, object]:
        return {"clip_id": self.clip_id, "caption": self.caption, "passed": self.passed, "source": self.source,
                "num_tracks": self.num_tracks, "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
                **({"extra": self.extra} if self.extra else {})}


def make_context(frames: np.ndarray, exp: Expectation, fps: float, th: Thresholds,
                 tracker: TrackerConfig = TrackerConfig()) -> Context:
    """Track ``frames`` (uint8 (f, h, w, 3)) and measure what every metric shares."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InvalidInputError(f"frames must be uint8 (f, h, w, 3), got {frames.dtype} {tuple(frames.shape)}")
    result = track(frames, tracker)
    scene = scene_pixels(frames, tracker.segment.fg_distance)
    pan, texture = estimate_pan(frames, scene)
    return Context(frames=frames, result=result, exp=exp, assigned=assign(result, exp, th.min_track_frames),
                   pan=pan, scene=scene, fps=float(fps), texture=texture)


def evaluate_frames(frames: np.ndarray, exp: Expectation, fps: float, metrics: list[str],
                    th: Thresholds = Thresholds(), tracker: TrackerConfig = TrackerConfig(),
                    clip_id: str = "", source: str = "") -> ClipResult:
    """Run ``metrics`` (names of ``METRICS``) on one clip."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise InvalidInputError(f"unknown metrics {unknown}; known: {sorted(METRICS)}")
    ctx = make_context(frames, exp, fps, th, tracker)
    out: dict[str, MetricResult] = {}
    for name in metrics:
        r = METRICS[name](ctx, th)
        if r is not None:
            out[name] = r
    return ClipResult(clip_id=clip_id, caption=exp.caption, metrics=out,
                      num_tracks=len(ctx.result.long_tracks(th.min_track_frames)), source=source)
