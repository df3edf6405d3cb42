"""Reports (JSON + HTML, bootstrap intervals) and the `kinema eval` command on its three sources."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kinema.errors import InvalidInputError
from kinema.eval.expectations import from_caption
from kinema.eval.report import bootstrap_ci
from kinema.eval.suites import get_suite
from kinema.eval.thresholds import THRESHOLD_PRESETS, Thresholds


def test_bootstrap_interval() -> None:
    assert bootstrap_ci(np.ones(50)) == (1.0, 1.0)
    lo, hi = bootstrap_ci(np.array([1.0, 0.0] * 50))
    assert 0.38 < lo < 0.5 < hi < 0.62
    assert all(np.isnan(v) for v in bootstrap_ci(np.array([])))


def test_thresholds_are_data_and_suites_validate() -> None:
    assert THRESHOLD_PRESETS["default"] == Thresholds()
    assert THRESHOLD_PRESETS["strict"].count_frames > Thresholds().count_frames
    with pytest.raises(InvalidInputError, match="unknown suite 'nope'"):
        get_suite("nope")


def test_caption_expectation_from_the_world_parser() -> None:
    exp = from_caption("two red balls and a blue square fall on a dark background")
    assert exp.count == 3 and exp.background == "dark" and exp.gravity
    assert sorted((o.color, o.shape) for o in exp.objects) == [("blue", "square"), ("red", "ball"), ("red", "ball")]


def test_cli_ground_truth_writes_json_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kinema.cli import main

    out = tmp_path / "gt"
    assert main(["eval", "--ground-truth", "--suite", "t2v", "--n", "4", "--crf", "20", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["clips"] == 4 and report["suite"] == "t2v"
    assert report["metrics"]["count"]["clips"] == 4 and len(report["metrics"]["count"]["ci95"]) == 2
    assert len(report["results"]) == 4 and "metrics" in report["results"][0]
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 2  # chart + gallery strips
    assert "Worst clips" in page
    assert "count" in capsys.readouterr().out


def test_cli_corrupted_ground_truth_fails(tmp_path: Path) -> None:
    from kinema.cli import main

    out = tmp_path / "bad"
    assert main(["eval", "--ground-truth", "--corrupt", "add", "--n", "3", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["clip_pass_rate"] == 0.0
    assert report["metrics"]["spurious"]["pass_rate"] == 0.0


def test_cli_on_a_world_dataset_folder(tmp_path: Path) -> None:
    from kinema.cli import main
    from kinema.world.dataset import write_dataset

    write_dataset(tmp_path / "ds", split="test", n=3, progress=False)
    out = tmp_path / "vids"
    assert main(["eval", "--videos", str(tmp_path / "ds"), "--suite", "i2v", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["clips"] == 3 and report["metrics"]["first_frame"]["pass_rate"] == 1.0
    assert report["metrics"]["trajectory"]["clips"] == 3


def test_cli_on_a_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    from kinema.cli import main

    out = tmp_path / "model"
    code = main(["eval", "--model", str(tiny_model_dir), "--suite", "t2v", "--n", "2", "--size", "32x32",
                 "--frames", "17", "--steps", "2", "-o", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["clips"] == 2 and report["source"].startswith("model:")
    assert report["clip_pass_rate"] == 0.0  # random weights draw no objects


@pytest.mark.parametrize("suite", ["i2v", "extend"])
def test_cli_on_a_model_with_conditioning(tmp_path: Path, tiny_model_dir: Path, suite: str) -> None:
    """The conditioned suites hand the model the clip's first frame / first half and get the whole clip back."""
    from kinema.cli import main

    out = tmp_path / suite
    code = main(["eval", "--model", str(tiny_model_dir), "--suite", suite, "--n", "1", "--size", "32x32",
                 "--frames", "17", "--steps", "2", "-o", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["clips"] == 1
    measured = set(report["results"][0]["metrics"])
    assert ("seam" if suite == "extend" else "first_frame") in measured


def test_cli_rejects_bad_arguments(tmp_path: Path) -> None:
    from kinema.cli import main

    assert main(["eval", "--videos", str(tmp_path), "--crf", "20"]) == 2
    assert main(["eval", "--videos", str(tmp_path / "missing")]) == 2
    assert main(["eval", "--ground-truth", "--size", "big"]) == 2


def test_cli_vae_reconstruction_reports_psnr(tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`kinema eval --vae` reconstructs renders through a VAE and reports PSNR and every metric."""
    from kinema.cli import main
    from kinema.eval.runner import psnr

    a = np.full((2, 4, 4, 3), 100, np.uint8)
    b = a.copy()
    b[0, 0, 0, 0] = 110  # one value off by 10 over 96 values: mse = 100 / 96
    assert abs(psnr(a, b) - 10 * np.log10(255**2 / (100 / 96))) < 1e-9 and psnr(a, a) == float("inf")
    out = tmp_path / "vae"
    assert main(["eval", "--vae", str(tiny_model_dir), "--suite", "t2v", "--n", "2", "--frames", "9", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["clips"] == 2 and report["source"].startswith("vae:")
    assert report["psnr"]["clips"] == 2 and 0 < report["psnr"]["mean_db"] < 60  # an untrained tiny VAE: low but finite
    assert "reconstruction PSNR mean" in capsys.readouterr().out
    assert main(["eval", "--vae", str(tiny_model_dir), "--corrupt", "mirror"]) == 2
