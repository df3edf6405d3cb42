"""benchmarks/failure_frames.py: the model card's failure figures pick clips by their measurements."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kinema.eval.runner import RunConfig, run_ground_truth
from kinema.eval.suites import SUITES

from conftest import load_benchmark

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "failure_frames.py"


def test_picks_failures_from_measurements_and_draws_them():
    ff = load_benchmark(SCRIPT, "kinema_bench_failure_frames")
    cfg = RunConfig(split="heldout", n=4)
    truth = run_ground_truth(SUITES["t2v"], cfg)
    broken = run_ground_truth(SUITES["t2v"], RunConfig(split="heldout", n=4, corruption="swap_colors"))
    assert not ff.pick(truth, ["color"])[:-1]  # the ground truth fails nothing: only a success row
    rows = ff.pick(broken, ["color", "shape"])
    assert rows[0][1] == "first to fail color" and "color" in ff.failed(broken, rows[0][0])
    first_bad = next(c.clip_id for c in broken.clips if c.metrics["color"].passed is False)
    assert rows[0][0] == first_bad
    assert len({cid for cid, _ in rows}) == len(rows)  # no clip shown twice
    image = ff.figure(broken, truth, rows, frames=6, scale=2)
    assert image.width == 6 * (64 * 2 + 2)
    pixels = np.asarray(image)
    lower = pixels[image.height // 4 :].reshape(-1, 3)
    assert (lower != 255).any()  # frames were pasted, not a blank canvas
