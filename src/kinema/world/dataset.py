"""Kinema World datasets: a writer to the training manifest format and a streaming dataset.

Manifest format (``manifest.jsonl``, one line per clip; paths relative to the manifest's folder)::

    {"path": "clips/000000.mp4", "caption": "...", "fps": 16.0, "frames": 33, "width": 64,
     "height": 64, "spec": "clips/000000.json", "split": "train"}

Example ``i`` of a split is the same in the writer and in the stream (``sample_example``), for any
number of workers or ranks, and it is always clean (``kinema.world.is_clean``): a scene whose
layouts cannot show what its caption says is re-drawn, never written or streamed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import IterableDataset, get_worker_info
from tqdm import tqdm

from kinema.errors import InvalidInputError
from kinema.video import Video
from kinema.world import sample_example
from kinema.world.splits import SPLITS


def _check(split: str, n: int | None, width: int, height: int, fps: float, num_frames: int) -> None:
    if split not in SPLITS:
        raise InvalidInputError(f"split {split!r} not in {SPLITS}")
    if n is not None and n < 1:
        raise InvalidInputError(f"number of clips must be >= 1, got {n}")
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise InvalidInputError(f"size {width}x{height}: width and height must be even and >= 16")
    if fps <= 0 or num_frames < 1:
        raise InvalidInputError(f"fps {fps} and frames {num_frames} must be > 0")


def write_dataset(
    out_dir: str | Path, split: str = "train", n: int = 1000, width: int = 64, height: int = 64,
    fps: float = 16.0, num_frames: int = 33, seed: int = 0, *, start: int = 0, progress: bool = True,
    crf: int = 18,
) -> Path:
    """Render examples ``start .. start + n - 1`` of ``split`` to ``out_dir``; return the manifest path.

    Writes ``clips/NNNNNN.mp4`` (H.264) and ``clips/NNNNNN.json`` (the ``ClipSpec``) per example and
    appends one line per example to ``manifest.jsonl``.
    """
    _check(split, n, width, height, fps, num_frames)
    out = Path(out_dir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.jsonl"
    with manifest.open("a") as fh:
        for i in tqdm(range(start, start + n), desc=f"world {split}", disable=not progress, unit="clip"):
            spec, frames = sample_example(split, seed, i, width, height, fps, num_frames)
            stem = f"clips/{i:06d}"
            Video(frames, fps, {"comment": spec.caption}).save(out / f"{stem}.mp4", crf=crf)
            spec.to_json(out / f"{stem}.json")
            row = {
                "path": f"{stem}.mp4", "caption": spec.caption, "fps": fps, "frames": num_frames,
                "width": width, "height": height, "spec": f"{stem}.json", "split": split,
            }
            fh.write(json.dumps(row) + "\n")
    return manifest


class WorldStream(IterableDataset):
    """Renders examples of a split on the fly: dicts {video (3, f, h, w) in [-1, 1], caption, spec_json}.

    Examples ``shard, shard + num_shards, ...`` go to each (rank, worker) shard, so the union over
    workers is examples ``0, 1, 2, ...`` whatever the number of workers. ``length`` None = endless.
    """

    def __init__(
        self, split: str = "train", width: int = 64, height: int = 64, fps: float = 16.0,
        num_frames: int = 33, seed: int = 0, length: int | None = None,
    ) -> None:
        super().__init__()
        _check(split, length, width, height, fps, num_frames)
        self.split, self.width, self.height, self.fps = split, width, height, fps
        self.num_frames, self.seed, self.length = num_frames, seed, length

    def example(self, index: int) -> dict[str, object]:
        spec, frames = sample_example(self.split, self.seed, index, self.width, self.height, self.fps, self.num_frames)
        video = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0  # (3, f, h, w)
        return {"video": video, "caption": spec.caption, "spec_json": spec.to_json(), "index": index}

    def _shard(self) -> tuple[int, int]:
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * nw + wid, world * nw

    def __iter__(self) -> Iterator[dict[str, object]]:
        shard, num_shards = self._shard()
        index = shard
        while self.length is None or index < self.length:
            yield self.example(index)
            index += num_shards
