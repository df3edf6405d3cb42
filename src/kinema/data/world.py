"""Kinema World as a training source (``--data world:SPLIT``): clips rendered on the fly.

Item ``i`` is example ``i`` of the split (:meth:`kinema.world.dataset.WorldStream.example`),
rendered at the size of bucket ``i % len(buckets)``, so any bucket list works (a one-frame bucket
gets the first frame of a clip). Items are deterministic in ``(split, seed, i)``, which keeps
resumes exact and makes the stream identical to a manifest written by ``kinema world write``.
"""

from __future__ import annotations

from kinema.data.buckets import Bucket
from kinema.data.datasets import DataReport, Sample
from kinema.errors import InvalidInputError
from kinema.world.dataset import WorldStream


class WorldDataset:
    """``num_clips`` rendered examples of ``split``; the :class:`BucketedDataset` protocol."""

    def __init__(self, split: str, buckets: list[Bucket], *, num_clips: int = 100_000, seed: int = 0, fps: float = 16.0) -> None:
        if not buckets:
            raise InvalidInputError("WorldDataset needs at least one bucket")
        if num_clips < 1:
            raise InvalidInputError(f"world_clips={num_clips} invalid; allowed: >= 1")
        self.split = split
        self.buckets = list(buckets)
        self.streams = [
            WorldStream(split=split, width=b.width, height=b.height, fps=fps, num_frames=b.frames, seed=seed) for b in self.buckets
        ]
        self.bucket_of = [i % len(self.buckets) for i in range(num_clips)]
        self.report = DataReport()

    def __len__(self) -> int:
        return len(self.bucket_of)

    def __getitem__(self, key: tuple[int, int]) -> Sample:
        index, _ = key
        b = self.bucket_of[index]
        example = self.streams[b].example(index)
        return {"video": example["video"], "caption": example["caption"], "index": index, "bucket": b, "skipped": []}
