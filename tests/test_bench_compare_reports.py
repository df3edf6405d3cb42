"""benchmarks/compare_reports.py: paired comparison of two evaluation reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from kinema.eval.report import summarize
from kinema.eval.runner import RunConfig, run_ground_truth
from kinema.eval.suites import SUITES

from conftest import load_benchmark

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_reports.py"


def test_sign_test_matches_the_binomial() -> None:
    cr = load_benchmark(SCRIPT, "kinema_bench_compare_reports")
    assert cr.sign_test(0, 0) == 1.0
    assert cr.sign_test(3, 3) == 1.0
    assert cr.sign_test(0, 6) == pytest.approx(2 / 64)  # all six discordant clips one way
    assert cr.sign_test(5, 18) == pytest.approx(0.0106, abs=1e-4)


def test_a_corruption_loses_clips_on_its_metric_only() -> None:
    cr = load_benchmark(SCRIPT, "kinema_bench_compare_reports")
    cfg = RunConfig(split="heldout", n=6)
    truth = summarize(run_ground_truth(SUITES["t2v"], cfg))
    broken = summarize(run_ground_truth(SUITES["t2v"], RunConfig(split="heldout", n=6, corruption="swap_colors")))
    rows = {r["metric"]: r for r in cr.compare(truth, broken)}
    assert rows["color"]["rate_a"] == 1.0 and rows["color"]["lost"] > 0 and rows["color"]["gained"] == 0
    assert rows["shape"]["lost"] == rows["shape"]["gained"] == 0  # a colour swap keeps every shape
    text = cr.table(list(rows.values()), ("truth", "swapped"))
    assert "| color | 100.0% (6) |" in text
