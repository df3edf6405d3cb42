"""Manifests (CSV/JSONL), probing/decoding real files, corrupt files skipped and counted, buckets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kinema.data import (
    Bucket,
    BucketBatchSampler,
    MediaInfo,
    VideoDataset,
    assign_bucket,
    batch_stream,
    clip_indices,
    decode_frames,
    probe,
    read_manifest,
    resize_crop,
    write_synthetic_dataset,
)
from kinema.data.synthetic import render_clip, write_mp4
from kinema.errors import InvalidInputError, VideoIOError


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("media"), videos=4, images=2, frames=12, height=24, width=32)


def test_csv_manifest_resolves_relative_paths(media: Path) -> None:
    manifest = read_manifest(media)
    assert len(manifest) == 6 and manifest.missing == []
    assert manifest.entries[0].path == media.parent / "clip_000.mp4"
    assert manifest.entries[0].caption == "a red square moves right"
    assert manifest.entries[0].fps is None and not manifest.entries[0].has_metadata


def test_jsonl_manifest_with_metadata_and_missing_file(tmp_path: Path, media: Path) -> None:
    rows = [
        {"path": str(media.parent / "clip_001.mp4"), "caption": "a green square", "fps": 8, "frames": 12, "width": 32, "height": 24},
        {"path": "gone.mp4", "caption": "missing"},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    manifest = read_manifest(path)
    assert len(manifest) == 1 and manifest.entries[0].has_metadata and manifest.entries[0].fps == 8.0
    assert manifest.missing == [tmp_path / "gone.mp4"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty.csv", "path,caption\n", "lists no files"),
        ("nothing.csv", "path,caption\na.mp4,x\nb.mp4,y\n", "points at nothing"),
        ("bad.csv", "file,caption\na.mp4,x\n", "'path' column"),
        ("bad.jsonl", '{"path": "a.mp4", "colour": 1}\n', "unknown field"),
        ("bad.txt", "x", "allowed"),
    ],
)
def test_bad_manifests_fail_fast_with_clear_message(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=message):
        read_manifest(path)


def test_probe_decode_and_clip_sampling_at_target_fps(media: Path) -> None:
    video = media.parent / "clip_000.mp4"
    info = probe(video)
    assert (info.frames, info.fps, info.width, info.height) == (12, 8.0, 32, 24)
    assert info.frames_at(4.0) == 6  # every second frame
    rng = np.random.default_rng(0)
    indices = clip_indices(info, 5, 4.0, rng)
    assert len(indices) == 5 and all(b - a == 2 for a, b in zip(indices, indices[1:]))
    frames = decode_frames(video, indices)
    assert frames.shape == (5, 24, 32, 3) and frames.dtype == np.uint8
    expected = render_clip("red", "right", 12, 24, 32)[indices]
    assert np.abs(frames.astype(int) - expected.astype(int)).mean() < 6  # H.264 at crf 18
    with pytest.raises(VideoIOError, match="does not fit"):
        clip_indices(info, 7, 4.0, rng)
    image = probe(media.parent / "image_000.png")
    assert image.is_image and (image.width, image.height) == (32, 24)


def test_resize_crop_covers_then_crops() -> None:
    frames = np.zeros((2, 24, 32, 3), dtype=np.uint8)
    frames[:, :, 16:] = 255  # right half white
    out = resize_crop(frames, 16, 16)
    assert out.shape == (3, 2, 16, 16) and out.min() >= -1 and out.max() <= 1
    assert out[:, :, :, 0].mean() < 0 and out[:, :, :, -1].mean() > 0  # centre crop keeps both halves


def test_bucket_assignment() -> None:
    buckets = [Bucket(9, 32, 32, 2), Bucket(17, 32, 32, 2), Bucket(9, 32, 64, 2), Bucket(1, 32, 32, 4), Bucket(1, 32, 64, 4)]
    assert assign_bucket(MediaInfo(frames=40, fps=24.0, width=64, height=64), buckets, None) == 1  # longest square clip
    assert assign_bucket(MediaInfo(frames=12, fps=24.0, width=64, height=64), buckets, None) == 0  # too short for 17
    assert assign_bucket(MediaInfo(frames=40, fps=24.0, width=120, height=60), buckets, None) == 2  # wide
    assert assign_bucket(MediaInfo(frames=1, fps=1.0, width=70, height=64), buckets, None) == 3  # image, square-ish
    assert assign_bucket(MediaInfo(frames=1, fps=1.0, width=128, height=60), buckets, None) == 4
    assert assign_bucket(MediaInfo(frames=20, fps=24.0, width=64, height=64), buckets, 6.0) is None  # 5 frames at 6 fps


def test_sampler_shards_ranks_and_resumes_at_position() -> None:
    bucket_of = [0] * 7 + [1] * 3 + [-1]
    samplers = [BucketBatchSampler(bucket_of, [2, 1], rank=r, world_size=2, seed=3) for r in range(2)]
    assert len(samplers[0]) == len(samplers[1]) == 2 + 2  # ceil(7/4) + ceil(3/2)
    for epoch in range(2):
        a, b = samplers[0].epoch_batches(epoch), samplers[1].epoch_batches(epoch)
        assert [k for k, _ in a] == [k for k, _ in b]  # same bucket at every step on every rank
        seen = {i for _, batch in a + b for i in batch}
        assert seen == set(range(10))  # every usable item, never item 10
    full = [x for _, x in zip(range(9), samplers[0].iterate(0))]
    resumed = [x for _, x in zip(range(4), samplers[0].iterate(5))]
    assert full[5:] == resumed


def test_corrupt_and_missing_files_are_skipped_and_counted(tmp_path: Path, media: Path) -> None:
    good = media.parent / "clip_000.mp4"
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[:300])
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not a png at all")
    # Decodes at probe time but is cut mid-stream: found only when decoding frames.
    late = write_mp4(render_clip("blue", "up", 12, 24, 32), tmp_path / "late.mp4")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,caption,frames,width,height\n"
        f"{good},good,,,\n{truncated},bad,,,\n{garbage},bad,,,\nmissing.mp4,gone,,,\n{late},late,40,32,24\n"
    )
    ds = VideoDataset(manifest, [Bucket(5, 16, 16, 2)], seed=0)
    assert sorted(Path(p).name for p in ds.report.unreadable) == ["garbage.png", "truncated.mp4"]
    assert [Path(p).name for p in ds.report.missing] == ["missing.mp4"]
    sampler = BucketBatchSampler(ds.bucket_of, [2], seed=0)
    skipped: set[str] = set()
    for _, (_, batch) in zip(range(4), batch_stream(ds, sampler)):
        assert batch["video"].shape == (2, 3, 5, 16, 16)
        skipped.update(batch["skipped"])
    assert [Path(p).name for p in skipped] == ["late.mp4"]  # replaced by a good clip of its bucket


def test_dataset_with_only_bad_files_fails_fast(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,caption\n{bad},x\n")
    with pytest.raises(InvalidInputError, match="no usable file"):
        VideoDataset(manifest, [Bucket(5, 16, 16, 2)])


def test_dataset_items_are_deterministic_in_position(media: Path) -> None:
    ds = VideoDataset(media, [Bucket(5, 16, 16, 2), Bucket(1, 16, 16, 2)], seed=1)
    assert ds.bucket_of == [0, 0, 0, 0, 1, 1]
    a, b = ds[(0, 7)], ds[(0, 7)]
    assert torch.equal(a["video"], b["video"]) and a["video"].shape == (3, 5, 16, 16)
    assert a["bucket"] == 0 and ds[(5, 0)]["video"].shape == (3, 1, 16, 16)
    clips = {ds[(0, position)]["video"].numpy().tobytes() for position in range(10)}
    assert len(clips) > 1  # other positions draw other clip starts / crops
