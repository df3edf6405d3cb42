"""Calibration: on ground-truth Kinema World renders every metric passes (>= 99% of clips), raw
and after an MP4 round trip, caption-level and against the rollout (image-to-video, extension).
The sample is not filtered: world samples are clean, and an unclean clip is reported, not dropped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kinema.eval.report import write_reports
from kinema.eval.runner import RunConfig, run_ground_truth, run_videos
from kinema.eval.suites import SUITES
from kinema.video import Video
from kinema.world import make_clip, parse_caption, sample_example


def _rate(run) -> float:  # noqa: ANN001
    fails = [(c.clip_id, c.caption, {k: c.metrics[k].detail for k in c.failed()}) for c in run.clips if not c.passed]
    rate = 1.0 - len(fails) / len(run.clips)
    if rate < 0.99:
        pytest.fail(f"pass rate {rate:.3f} on {len(run.clips)} ground-truth clips; failures: {fails}")
    return rate


@pytest.mark.parametrize("crf", [None, 23])
def test_every_metric_passes_on_ground_truth(crf: int | None) -> None:
    run = run_ground_truth(SUITES["t2v"], RunConfig(split="heldout", n=100, seed=0, crf=crf))
    assert len(run.clips) == 100 and run.skipped == []  # the full sample: examples 0..99, none left out
    assert [c.clip_id for c in run.clips] == [f"heldout-{i:05d}" for i in range(100)]
    _rate(run)
    applied = {k for c in run.clips for k in c.metrics}
    assert applied == set(SUITES["t2v"].metrics)  # every metric was exercised


@pytest.mark.parametrize("suite", ["i2v", "extend"])
def test_conditioned_suites_pass_on_ground_truth_after_mp4(suite: str) -> None:
    run = run_ground_truth(SUITES[suite], RunConfig(split="test", n=40, seed=3, crf=18))
    assert run.skipped == []
    _rate(run)
    extra = "first_frame" if suite == "i2v" else "seam"
    values = [c.metrics[extra].value for c in run.clips]
    assert len(values) == len(run.clips) and all(c.metrics[extra].passed for c in run.clips)
    assert "trajectory" in run.clips[0].metrics
    if suite == "i2v":
        assert float(np.median(values)) > 30.0  # dB


def test_unclean_ground_truth_is_reported_not_dropped(tmp_path: Path) -> None:
    clean_spec, clean = sample_example("test", 0, 0)
    caption = "four huge white balls bounce around"
    bad_spec, bad = make_clip(parse_caption(caption), seed=0, caption=caption)
    assert not clean_spec.problems and bad_spec.problems
    for name, spec, frames in (("a", clean_spec, clean), ("b", bad_spec, bad)):
        Video(frames, spec.fps).save(tmp_path / f"{name}.mp4", crf=18)
        spec.to_json(tmp_path / f"{name}.json")
    run = run_videos(SUITES["t2v"], tmp_path, RunConfig(n=10))
    assert [c.clip_id for c in run.clips] == ["a"]
    assert [k.clip_id for k in run.skipped] == ["b"] and run.skipped[0].reasons == bad_spec.problems
    jp, hp = write_reports(run, tmp_path / "out")
    report = json.loads(jp.read_text())
    assert report["skipped"] == 1 and report["skipped_clips"][0]["caption"] == caption
    assert "come within" in report["skipped_clips"][0]["reasons"][0]
    assert "1 clips skipped" in hp.read_text()
