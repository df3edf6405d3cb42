"""Training datasets: manifest-backed video/image clips, bucketed, resumable, robust to bad files.

A dataset item is addressed by ``(index, position)``: the manifest entry and the global batch
position it is drawn at. The random clip start and crop come from a generator seeded with
``(seed, position, index)``, so the same run position always yields the same pixels, whichever
worker decodes it; that is what makes ``--resume`` continue bit for bit.

Bad data never stops a run: files that fail probing are dropped at start-up, files that fail
decoding are replaced by another member of the same bucket (up to ``max_retries``); each is logged
once with a warning naming it and reported in the batch's ``skipped`` list so the trainer counts it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from kinema.data.buckets import Bucket, BucketBatchSampler, assign_bucket
from kinema.data.decode import MediaInfo, clip_indices, decode_frames, is_image_path, probe, resize_crop
from kinema.data.manifest import Manifest, read_manifest
from kinema.errors import InvalidInputError, VideoIOError

log = logging.getLogger(__name__)

Sample = dict[str, Any]


@dataclass
class DataReport:
    """What was dropped while opening a dataset (logged and written to the run log)."""

    missing: list[str] = field(default_factory=list)  # listed but absent
    unreadable: list[str] = field(default_factory=list)  # failed probing (corrupt, truncated, no stream)
    unbucketed: list[str] = field(default_factory=list)  # readable but fit no bucket (too short, ...)

    @property
    def skipped(self) -> int:
        return len(self.missing) + len(self.unreadable) + len(self.unbucketed)


class BucketedDataset(Protocol):
    """What the trainers need from a dataset: a bucket per item and ``(index, position)`` access."""

    buckets: list[Bucket]
    bucket_of: list[int]
    report: DataReport

    def __len__(self) -> int: ...

    def __getitem__(self, key: tuple[int, int]) -> Sample: ...


class VideoDataset(Dataset[Sample]):
    """Clips from a manifest, resized and cropped into ``buckets``.

    Items: ``{"video": (3, f, h, w) float32 in [-1, 1], "caption": str, "index": int, "bucket": int,
    "skipped": list[str]}``.

    Args:
        manifest: a :class:`Manifest` or the path of a CSV/JSONL manifest.
        buckets: the shapes to train on (see :mod:`kinema.data.buckets`).
        target_fps: clip frame rate (``None`` = source rate).
        seed: base seed of clip/crop sampling.
        random_crop: random crop offsets (else centred).
        max_retries: replacements tried when a file fails to decode.
    """

    def __init__(
        self,
        manifest: Manifest | str | Path,
        buckets: list[Bucket],
        *,
        target_fps: float | None = None,
        seed: int = 0,
        random_crop: bool = True,
        max_retries: int = 8,
    ) -> None:
        if not buckets:
            raise InvalidInputError("VideoDataset needs at least one bucket")
        self.manifest = manifest if isinstance(manifest, Manifest) else read_manifest(manifest)
        self.buckets = list(buckets)
        self.target_fps = target_fps
        self.seed = seed
        self.random_crop = random_crop
        self.max_retries = max_retries
        self.report = DataReport(missing=[str(p) for p in self.manifest.missing])
        self.entries = self.manifest.entries
        self.infos: list[MediaInfo | None] = []
        self.bucket_of: list[int] = []
        for entry in self.entries:
            info = self._info(entry)
            self.infos.append(info)
            b = -1
            if info is not None:
                found = assign_bucket(info, self.buckets, target_fps)
                if found is None:
                    log.warning(
                        "skipping %s: %dx%d, %d frames at %g fps fits no bucket of %s",
                        entry.path, info.width, info.height, info.frames, info.fps,
                        [str(bk) for bk in self.buckets],
                    )
                    self.report.unbucketed.append(str(entry.path))
                else:
                    b = found
            self.bucket_of.append(b)
        if all(b < 0 for b in self.bucket_of):
            raise InvalidInputError(
                f"manifest '{self.manifest.source}' has no usable file: {len(self.report.unreadable)} unreadable, "
                f"{len(self.report.unbucketed)} fit no bucket of {[str(bk) for bk in self.buckets]}, "
                f"{len(self.report.missing)} missing"
            )
        self._members = [[i for i, b in enumerate(self.bucket_of) if b == k] for k in range(len(self.buckets))]
        self._bad: set[int] = set()

    def _info(self, entry: Any) -> MediaInfo | None:
        if entry.has_metadata:
            frames = 1 if is_image_path(entry.path) else entry.frames
            return MediaInfo(frames=frames, fps=entry.fps or 24.0, width=entry.width, height=entry.height)
        try:
            info = probe(entry.path)
        except VideoIOError as e:
            log.warning("skipping unreadable file %s: %s", entry.path, e)
            self.report.unreadable.append(str(entry.path))
            return None
        if entry.fps is not None and not info.is_image:
            info = MediaInfo(frames=info.frames, fps=entry.fps, width=info.width, height=info.height)
        return info

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, index: int, bucket: Bucket, rng: np.random.Generator) -> torch.Tensor:
        """Decode a random clip of entry ``index`` into ``bucket``: ``(3, f, h, w)`` in [-1, 1]."""
        entry, info = self.entries[index], self.infos[index]
        if info is None:
            raise VideoIOError(f"'{entry.path}' was unreadable at start-up")
        frames = decode_frames(entry.path, clip_indices(info, bucket.frames, self.target_fps, rng))
        return resize_crop(frames, bucket.height, bucket.width, rng if self.random_crop else None)

    def __getitem__(self, key: tuple[int, int]) -> Sample:
        index, position = key
        b = self.bucket_of[index]
        if b < 0:
            raise InvalidInputError(f"dataset item {index} ('{self.entries[index].path}') is in no bucket")
        pick = np.random.default_rng([self.seed, position, index, 1])  # replacement draws only
        skipped: list[str] = []
        candidate = index
        members = self._members[b]
        for _ in range(self.max_retries + 1):
            if candidate not in self._bad:  # a file known bad is not decoded (or reported) again
                try:
                    rng = np.random.default_rng([self.seed, position, candidate])  # clip start and crop
                    video = self.load(candidate, self.buckets[b], rng)
                    return {"video": video, "caption": self.entries[candidate].caption, "index": candidate, "bucket": b, "skipped": skipped}
                except VideoIOError as e:
                    log.warning("skipping corrupt file %s: %s", self.entries[candidate].path, e)
                    self._bad.add(candidate)
                    skipped.append(str(self.entries[candidate].path))
            # Replacement drawn from the whole bucket (not only files not yet known bad), so the
            # draw does not depend on what this process has seen before: resumes stay exact.
            candidate = members[int(pick.integers(0, len(members)))]
        raise VideoIOError(
            f"{self.max_retries + 1} files tried for bucket {self.buckets[b]} all failed to decode "
            f"(e.g. {skipped[:3]}); check the data"
        )


def collate(samples: list[Sample]) -> Sample:
    """Stack items of one bucket: tensors along a new batch dim, the rest into lists."""
    out: Sample = {"skipped": [p for s in samples for p in s["skipped"]]}
    for key in samples[0]:
        if key == "skipped":
            continue
        values = [s[key] for s in samples]
        if isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)  # (b, ...)
        elif isinstance(values[0], int):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out


class _PositionedBatches:
    """Batch sampler for ``DataLoader``: ``[(index, position), ...]`` from a global batch position."""

    def __init__(self, sampler: BucketBatchSampler, start: int) -> None:
        self.sampler, self.start = sampler, start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for position, _, indices in self.sampler.iterate(self.start):
            yield [(i, position) for i in indices]


def batch_stream(
    dataset: BucketedDataset,
    sampler: BucketBatchSampler,
    *,
    start: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[tuple[int, Sample]]:
    """Endless ``(position, batch)`` pairs from global batch ``start`` on (see :class:`BucketBatchSampler`)."""
    loader = DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_sampler=_PositionedBatches(sampler, start),
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=2 if num_workers > 0 else None,
        # The loader draws its workers' base seed from this generator, not from the global RNG, so
        # opening a stream (again, on resume) leaves the global RNG alone; items seed themselves.
        generator=torch.Generator().manual_seed(start),
    )
    position = start
    for batch in loader:
        yield position, batch
        position += 1


def open_dataset(
    spec: str | Path,
    buckets: list[Bucket],
    *,
    target_fps: float | None = None,
    seed: int = 0,
    random_crop: bool = True,
    world_clips: int = 100_000,
) -> BucketedDataset:
    """Open a data source by its ``--data`` spec.

    - ``world:SPLIT``: Kinema World clips rendered on the fly (``world_clips`` items per epoch);
    - a folder holding ``latents/index.json`` (or ``index.json``): a latent cache (DiT training);
    - a ``.csv`` / ``.jsonl`` manifest.
    """
    text = str(spec)
    if text.startswith("world:"):
        from kinema.data.world import WorldDataset

        return WorldDataset(text.split(":", 1)[1], buckets, num_clips=world_clips, seed=seed, fps=target_fps or 16.0)
    path = Path(text).expanduser()
    if path.is_dir():
        from kinema.data.cache import LatentDataset

        return LatentDataset(path, buckets)
    return VideoDataset(path, buckets, target_fps=target_fps, seed=seed, random_crop=random_crop)
