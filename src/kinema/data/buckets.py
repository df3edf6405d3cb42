"""Buckets keyed by ``(frames, height, width)`` with a batch size each, and the bucketed batch sampler.

Every sample is resized and cropped into one bucket, so a batch holds clips of one shape while
images and videos of several aspect ratios and durations train together (native-size training).

Assignment: images (one frame) go to one-frame buckets, videos to multi-frame buckets whose length
fits the clip at the target fps; among those the closest aspect ratio wins, then the longest clip,
then the largest area. A file that fits no bucket is skipped and counted.

Sampling is deterministic in ``(seed, epoch)``: each bucket's indices are shuffled, cut into global
batches of ``batch_size * world_size`` (the last one padded by wrapping around), the global batches
of all buckets are shuffled together, and rank ``r`` takes slice ``r`` of each. All ranks therefore
see the same bucket at every step and the same number of steps per epoch, and a run resumes at
``(epoch, batch)`` exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from kinema.data.decode import MediaInfo
from kinema.errors import InvalidInputError


@dataclass(frozen=True)
class Bucket:
    """Clips of ``frames x height x width`` pixels, ``batch_size`` per rank per step."""

    frames: int
    height: int
    width: int
    batch_size: int

    def __post_init__(self) -> None:
        for name in ("frames", "height", "width", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"Bucket.{name}={value!r} invalid; allowed: an integer >= 1")

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.frames, self.height, self.width)

    @property
    def aspect(self) -> float:
        return self.width / self.height

    def __str__(self) -> str:
        return f"{self.frames}x{self.height}x{self.width}"


def assign_bucket(info: MediaInfo, buckets: list[Bucket], target_fps: float | None) -> int | None:
    """Index of the bucket ``info`` trains in, or ``None`` when it fits none (see module doc)."""
    available = info.frames_at(target_fps)
    src_aspect = info.width / info.height
    best: tuple[float, int, int] | None = None
    best_index: int | None = None
    for i, b in enumerate(buckets):
        if info.is_image != (b.frames == 1) or b.frames > available:
            continue
        key = (round(abs(math.log(b.aspect / src_aspect)), 4), -b.frames, -b.height * b.width)
        if best is None or key < best:
            best, best_index = key, i
    return best_index


class BucketBatchSampler:
    """Per-rank batches of dataset indices, one bucket per step, resumable at a batch position.

    Args:
        bucket_of: bucket index of each dataset item (``-1`` = not trained on).
        batch_sizes: per-rank batch size of each bucket.
        rank, world_size: this process's slot.
        seed: shuffling seed; ``shuffle=False`` keeps the manifest order.
    """

    def __init__(
        self,
        bucket_of: list[int],
        batch_sizes: list[int],
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise InvalidInputError(f"rank {rank} invalid for world_size {world_size}; allowed: 0..{world_size - 1}")
        self.members: list[list[int]] = [[] for _ in batch_sizes]
        for index, b in enumerate(bucket_of):
            if b >= 0:
                self.members[b].append(index)
        if not any(self.members):
            raise InvalidInputError("no dataset item fits any bucket; check the bucket list against the data sizes")
        self.batch_sizes = batch_sizes
        self.rank, self.world_size = rank, world_size
        self.seed, self.shuffle = seed, shuffle

    def __len__(self) -> int:
        """Batches (= steps) per epoch, the same on every rank."""
        return sum(math.ceil(len(m) / (bs * self.world_size)) for m, bs in zip(self.members, self.batch_sizes) if m)

    def epoch_batches(self, epoch: int) -> list[tuple[int, list[int]]]:
        """``(bucket index, indices)`` of this rank's batches in ``epoch``."""
        rng = np.random.default_rng([self.seed, epoch])
        global_batches: list[tuple[int, list[int]]] = []
        for b, (members, bs) in enumerate(zip(self.members, self.batch_sizes)):
            if not members:
                continue
            order = [members[i] for i in rng.permutation(len(members))] if self.shuffle else list(members)
            size = bs * self.world_size
            count = math.ceil(len(order) / size)
            padded = [order[i % len(order)] for i in range(count * size)]  # wrap around to fill the last batch
            global_batches += [(b, padded[k * size : (k + 1) * size]) for k in range(count)]
        if self.shuffle:
            global_batches = [global_batches[i] for i in rng.permutation(len(global_batches))]
        out = []
        for b, batch in global_batches:
            bs = self.batch_sizes[b]
            out.append((b, batch[self.rank * bs : (self.rank + 1) * bs]))
        return out

    def iterate(self, start: int = 0) -> Iterator[tuple[int, int, list[int]]]:
        """Endless ``(position, bucket, indices)`` from global batch ``position = epoch * len + i``."""
        per_epoch = len(self)
        position = start
        while True:
            epoch, offset = divmod(position, per_epoch)
            batches = self.epoch_batches(epoch)
            for b, indices in batches[offset:]:
                yield position, b, indices
                position += 1
