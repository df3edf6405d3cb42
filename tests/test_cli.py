"""`kinema` run as a real subprocess: outputs decode with PyAV; user errors are one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kinema.video import read_video


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kinema", *args], capture_output=True, text=True, timeout=timeout)


def test_generate_writes_decodable_mp4(tiny_model_dir: Path, tmp_path: Path):
    out = tmp_path / "clip.mp4"
    r = run_cli("generate", "a red ball moves left", "-o", str(out), "--model", str(tiny_model_dir),
                "--seconds", "1", "--fps", "16", "--size", "48x32", "--steps", "3", "--seed", "5", "--negative", "blue")
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout
    video = read_video(out)
    assert video.num_frames == 17 and (video.width, video.height) == (48, 32)
    assert video.fps == pytest.approx(16)


def test_generate_png_and_info(tiny_model_dir: Path, tmp_path: Path):
    out = tmp_path / "still.png"
    r = run_cli("generate", "a green triangle", "-o", str(out), "--model", str(tiny_model_dir), "--quiet")
    assert r.returncode == 0, r.stderr
    assert read_video(out).frames.shape == (1, 32, 32, 3)
    r = run_cli("info", "--model", str(tiny_model_dir))
    assert r.returncode == 0, r.stderr
    assert "kinema-tiny-test" in r.stdout and "32x32, 48x32, 32x48" in r.stdout and "torch" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "50x50"], "size 50x50 is not supported"),
        (["--size", "big"], "invalid size 'big'"),
        (["--seconds", "-2"], "seconds=-2.0 not supported"),
        (["--frames", "4"], "frames=4 not supported"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--model", "/nonexistent/model"], "model folder not found: '/nonexistent/model'"),
        (["-o", "x.xyz"], "unknown output type '.xyz'"),
    ],
)
def test_user_errors_exit_2_with_one_line(tiny_model_dir: Path, tmp_path: Path, args: list[str], message: str):
    base = ["generate", "a ball", "-o", str(tmp_path / "x.mp4"), "--model", str(tiny_model_dir)]
    if "-o" in args:
        base = ["generate", "a ball", "--model", str(tiny_model_dir)]
    if "--model" in args:
        base = ["generate", "a ball", "-o", str(tmp_path / "x.mp4")]
    r = run_cli(*base, *args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_refused_prompt_exits_2_and_writes_nothing(tiny_model_dir: Path, tmp_path: Path):
    out = tmp_path / "x.mp4"
    r = run_cli("generate", "a graphic video of a person being stabbed to death, blood everywhere", "-o", str(out), "--model", str(tiny_model_dir))
    assert r.returncode == 2 and "refused" in r.stderr.lower() and "Traceback" not in r.stderr
    assert not out.exists()


def test_outputs_have_content_credentials_and_a_sidecar(tiny_model_dir: Path, tmp_path: Path):
    import json

    out = tmp_path / "c.mp4"
    r = run_cli("generate", "a red ball", "-o", str(out), "--model", str(tiny_model_dir), "--seed", "9", "--quiet")
    assert r.returncode == 0, r.stderr
    record = json.loads(out.with_name(out.name + ".json").read_text()) if out.with_name(out.name + ".json").exists() else json.loads(out.with_suffix(".json").read_text())
    assert record["params"]["seed"] == 9 and record["params"]["prompt"] == "a red ball"
    r = run_cli("detect", str(out), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert "c2pa" in json.dumps(report).lower()
