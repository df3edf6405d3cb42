"""Clips written by Kinema World's dataset writer are a training manifest as they are."""

from __future__ import annotations

from kinema.data import read_manifest
from kinema.world.dataset import write_dataset


def test_world_dataset_manifest_reads_as_training_manifest(tmp_path):
    manifest = write_dataset(tmp_path / "w", split="train", n=3, width=32, height=32, num_frames=9, progress=False)
    entries = read_manifest(manifest)
    assert len(entries) == 3
    assert entries.missing == []
    first = entries.entries[0]
    assert first.path.is_file() and first.frames == 9 and first.width == 32 and first.caption
