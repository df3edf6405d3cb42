"""Kinema World dataset writer, streaming dataset and CLI, with real PyAV encode/decode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from kinema.video import read_video
from kinema.world import ClipSpec, sample_example
from kinema.world.cli import main
from kinema.world.dataset import WorldStream, write_dataset


def test_write_dataset(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path, "heldout", n=3, width=64, height=48, fps=8.0, num_frames=9, seed=1, progress=False)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(rows) == 3
    for i, row in enumerate(rows):
        assert set(row) >= {"path", "caption", "fps", "frames", "width", "height", "spec"}
        assert (row["fps"], row["frames"], row["width"], row["height"]) == (8.0, 9, 64, 48)
        video = read_video(tmp_path / row["path"])
        assert video.frames.shape == (9, 48, 64, 3)
        spec = ClipSpec.from_json(tmp_path / row["spec"])
        assert spec.caption == row["caption"] and spec.split == "heldout"
        _, frames = sample_example("heldout", 1, i, 64, 48, 8.0, 9)
        # lossy H.264 stays close to the rendered frames
        assert np.abs(video.frames.astype(float) - frames.astype(float)).mean() < 4.0


def test_stream_shapes_and_determinism() -> None:
    ds = WorldStream("train", width=64, height=64, fps=16.0, num_frames=17, seed=3, length=4)
    items = list(ds)
    assert [it["index"] for it in items] == [0, 1, 2, 3]
    v = items[0]["video"]
    assert isinstance(v, torch.Tensor) and v.shape == (3, 17, 64, 64) and v.dtype == torch.float32
    assert v.min() >= -1.0 and v.max() <= 1.0
    assert isinstance(items[0]["caption"], str) and json.loads(items[0]["spec_json"])["caption"] == items[0]["caption"]
    again = list(WorldStream("train", 64, 64, 16.0, 17, seed=3, length=4))
    assert all(torch.equal(a["video"], b["video"]) for a, b in zip(items, again))


def test_stream_workers_partition_the_examples() -> None:
    ds = WorldStream("test", width=32, height=32, fps=8.0, num_frames=5, seed=0, length=6)
    loader = DataLoader(ds, batch_size=None, num_workers=2)
    got = sorted(int(it["index"]) for it in loader)
    assert got == list(range(6))


def test_cli_render_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, spec_path = tmp_path / "gt.mp4", tmp_path / "gt.json"
    rc = main(["world", "render", "two red balls fall on a dark background", "-o", str(out),
               "--size", "96x64", "--seconds", "1", "--spec", str(spec_path)])
    assert rc == 0
    video = read_video(out)
    assert video.frames.shape == (17, 64, 96, 3)
    spec = ClipSpec.from_json(spec_path)
    assert [o.color for o in spec.objects] == ["red", "red"] and spec.background == "dark"
    rc = main(["world", "render", "a red dragon flies", "-o", str(tmp_path / "x.mp4")])
    assert rc == 2 and "dragon" in capsys.readouterr().err
    assert main(["world", "sample", "--split", "ood", "--n", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    assert main(["world", "dataset", "--split", "train", "--n", "2", "--out", str(tmp_path / "ds"),
                 "--frames", "5"]) == 0
    assert len((tmp_path / "ds" / "manifest.jsonl").read_text().splitlines()) == 2
