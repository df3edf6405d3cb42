"""Calibration: on ground-truth Kinema World renders every metric passes (>= 99% of clips), raw
and after an MP4 round trip, caption-level and against the rollout (image-to-video, extension)."""

from __future__ import annotations

import numpy as np
import pytest

from kinema.eval.runner import RunConfig, run_ground_truth
from kinema.eval.suites import SUITES


def _rate(run) -> float:  # noqa: ANN001
    fails = [(c.clip_id, c.caption, {k: c.metrics[k].detail for k in c.failed()}) for c in run.clips if not c.passed]
    rate = 1.0 - len(fails) / len(run.clips)
    if rate < 0.99:
        pytest.fail(f"pass rate {rate:.3f} on {len(run.clips)} ground-truth clips; failures: {fails}")
    return rate


@pytest.mark.parametrize("crf", [None, 23])
def test_every_metric_passes_on_ground_truth(crf: int | None) -> None:
    run = run_ground_truth(SUITES["t2v"], RunConfig(split="heldout", n=100, seed=0, crf=crf))
    assert len(run.clips) == 100
    _rate(run)
    applied = {k for c in run.clips for k in c.metrics}
    assert applied == set(SUITES["t2v"].metrics)  # every metric was exercised


@pytest.mark.parametrize("suite", ["i2v", "extend"])
def test_conditioned_suites_pass_on_ground_truth_after_mp4(suite: str) -> None:
    run = run_ground_truth(SUITES[suite], RunConfig(split="test", n=40, seed=3, crf=18))
    _rate(run)
    extra = "first_frame" if suite == "i2v" else "seam"
    values = [c.metrics[extra].value for c in run.clips]
    assert len(values) == len(run.clips) and all(c.metrics[extra].passed for c in run.clips)
    assert "trajectory" in run.clips[0].metrics
    if suite == "i2v":
        assert float(np.median(values)) > 30.0  # dB
