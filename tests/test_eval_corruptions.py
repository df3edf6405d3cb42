"""Calibration: the suite fails on deliberately broken ground-truth videos."""

from __future__ import annotations

import numpy as np
import pytest

from kinema.eval.corruptions import CORRUPTIONS
from kinema.eval.evaluate import evaluate_frames
from kinema.eval.expectations import from_spec
from kinema.eval.runner import mp4_round_trip
from kinema.eval.suites import SUITES
from kinema.world import sample_example

# corruption -> metrics that should catch it (at least one of them fails on each broken clip)
CATCHERS: dict[str, set[str]] = {
    "reverse": {"direction", "gravity", "state_change", "camera_pan", "attributes", "identity"},
    "swap_colors": {"attributes", "identity"},
    "mirror": {"direction", "camera_pan"},
    "delete": {"count", "spurious"},
    "add": {"count", "spurious"},
    "teleport": {"spurious", "direction", "count"},
    "flicker": {"flicker", "background"},
    "undo_state": {"state_change"},
}


@pytest.fixture(scope="module")
def clips() -> list:
    return [sample_example("heldout", 1, i) for i in range(36)]


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_suite_fails_on_broken_videos(name: str, clips: list) -> None:
    metrics = list(SUITES["t2v"].metrics)
    tried = caught = 0
    missed: list[str] = []
    for i, (spec, frames) in enumerate(clips):
        broken = CORRUPTIONS[name](frames, spec)
        if broken is None:
            continue
        if i % 2:  # half of them also through H.264
            broken = mp4_round_trip(broken, spec.fps, 23)
        res = evaluate_frames(broken, from_spec(spec), spec.fps, metrics)
        tried += 1
        if set(res.failed()) & CATCHERS[name]:
            caught += 1
        else:
            missed.append(f"{spec.caption} -> failed {res.failed()}")
    assert tried >= 6, f"only {tried} clips could be broken by {name}"
    assert caught / tried >= 0.9, f"{name}: caught {caught}/{tried}; missed: {missed}"


def test_seam_metric_fails_on_a_jump_at_the_seam() -> None:
    spec, frames = sample_example("test", 2, 0)
    k = frames.shape[0] // 2
    exp = from_spec(spec, rollout=True, condition_frames=k)
    exp.condition = frames[:k].copy()
    good = evaluate_frames(frames, exp, spec.fps, ["seam"])
    assert good.metrics["seam"].passed
    jumped = frames.copy()
    jumped[k:] = np.roll(frames[k:], 9, axis=2)  # everything after the seam shifted 9 px
    bad = evaluate_frames(jumped, exp, spec.fps, ["seam"])
    assert not bad.metrics["seam"].passed


def test_first_frame_metric_fails_on_another_image() -> None:
    spec, frames = sample_example("test", 2, 1)
    other_spec, other = sample_example("test", 2, 2)
    exp = from_spec(spec, rollout=True, condition_frames=1)
    exp.condition = frames[:1].copy()
    assert evaluate_frames(frames, exp, spec.fps, ["first_frame"]).metrics["first_frame"].passed
    assert not evaluate_frames(other, exp, spec.fps, ["first_frame"]).metrics["first_frame"].passed
