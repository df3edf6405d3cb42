"""Kinema eval: a pixel tracker and one metric per failure mode of video generators.

    from kinema.eval import evaluate_frames, from_spec, SUITES, METRICS
    result = evaluate_frames(frames, from_spec(spec), fps=16, metrics=list(SUITES["t2v"].metrics))

See docs/eval.md for the metrics, their thresholds and how to read a report.
"""

from __future__ import annotations

from kinema.eval.corruptions import CORRUPTIONS
from kinema.eval.evaluate import ClipResult, evaluate_frames, make_context
from kinema.eval.expectations import (
    Expectation,
    ObjectExpectation,
    from_caption,
    from_scene,
    from_spec,
)
from kinema.eval.metrics import METRICS, MetricResult
from kinema.eval.report import bootstrap_ci, summarize, write_reports
from kinema.eval.runner import (
    RunConfig,
    SuiteRun,
    mp4_round_trip,
    run_ground_truth,
    run_model,
    run_videos,
)
from kinema.eval.suites import SUITES, Suite, get_suite
from kinema.eval.thresholds import THRESHOLD_PRESETS, Thresholds
from kinema.eval.tracker import Track, TrackerConfig, TrackResult, track

__all__ = [
    "CORRUPTIONS", "ClipResult", "Expectation", "METRICS", "MetricResult", "ObjectExpectation", "RunConfig",
    "SUITES", "Suite", "SuiteRun", "THRESHOLD_PRESETS", "Thresholds", "Track", "TrackResult", "TrackerConfig",
    "bootstrap_ci", "evaluate_frames", "from_caption", "from_scene", "from_spec", "get_suite", "make_context",
    "mp4_round_trip", "run_ground_truth", "run_model", "run_videos", "summarize", "track", "write_reports",
]
