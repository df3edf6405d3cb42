"""Precomputed caches so DiT training does not re-run the encoders.

Text cache (``DIR/text``): the token states of every caption (and of the empty caption used for
caption dropout), unpadded, in safetensors shards ``text-00000.safetensors`` holding ``states``
``(sum l_i, d)``; ``index.json`` maps caption -> (shard, offset, length) and records the encoder's
identity hash, so a cache built with another encoder is refused.

Latent cache (``DIR/latents``): per usable manifest entry one clip (at ``position 0`` of the
dataset's deterministic sampling) encoded by the VAE; shards per bucket
``latents-FxHxW-00000.safetensors`` hold the posterior ``mean`` and ``logvar`` ``(n, c, f', h', w')``
(raw, not normalised). ``index.json`` lists the items and the VAE config (its scaling/shift are
applied at training time), so training from a latent cache needs no VAE at all.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from kinema.config import config_to_dict
from kinema.data.buckets import Bucket
from kinema.data.datasets import DataReport, Sample, VideoDataset
from kinema.errors import InvalidInputError, VideoIOError

log = logging.getLogger(__name__)

INDEX_NAME = "index.json"
TEXT_DIR = "text"
LATENT_DIR = "latents"


def _atomic_dir(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))


def _publish(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


# ---------------------------------------------------------------------------------------------- text


def build_text_cache(
    captions: Iterable[str],
    encoder: Any,
    out_dir: str | Path,
    *,
    shard_size: int = 4096,
    progress: bool = True,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Encode unique ``captions`` (plus ``""``) with ``encoder`` (a :class:`kinema.text.TextEncoder`).

    Writes ``out_dir/text`` atomically and returns it. ``dtype`` is the storage type of the states
    (``torch.float16`` halves the cache; :class:`TextEmbeddingCache` always returns float32).
    """
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise InvalidInputError(f"text cache dtype {dtype} invalid; allowed: float32, float16, bfloat16")
    unique = sorted(set(captions) | {""})
    final = Path(out_dir) / TEXT_DIR
    tmp = _atomic_dir(final)
    try:
        index: dict[str, Any] = {"encoder": encoder.identity, "dim": encoder.dim, "max_length": encoder.config.max_length, "captions": {}}
        bar = tqdm(total=len(unique), desc="caching text", unit="caption", disable=not progress)
        for shard_id, start in enumerate(range(0, len(unique), shard_size)):
            chunk = unique[start : start + shard_size]
            states = encoder.encode_unpadded(chunk)  # list of (l_i, d)
            bar.update(len(chunk))
            name = f"text-{shard_id:05d}.safetensors"
            offset = 0
            for caption, s in zip(chunk, states):
                index["captions"][caption] = [name, offset, int(s.shape[0])]
                offset += int(s.shape[0])
            save_file({"states": torch.cat(states).to(dtype).contiguous()}, str(tmp / name))  # (sum l, d)
        (tmp / INDEX_NAME).write_text(json.dumps(index))
        _publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("text cache: %d captions -> %s", len(unique), final)
    return final


class TextEmbeddingCache:
    """Reads a text cache: ``lookup(captions) -> list of (l_i, d)`` float32 states.

    Args:
        folder: ``DIR/text`` (or ``DIR``, which holds ``text``).
        encoder_identity: when given, must equal the identity the cache was built with.
    """

    def __init__(self, folder: str | Path, *, encoder_identity: str | None = None) -> None:
        folder = Path(folder)
        if (folder / TEXT_DIR / INDEX_NAME).is_file():
            folder = folder / TEXT_DIR
        if not (folder / INDEX_NAME).is_file():
            raise InvalidInputError(f"'{folder}' is not a text cache: no {INDEX_NAME} (build it with `kinema cache text`)")
        self.folder = folder
        index = json.loads((folder / INDEX_NAME).read_text())
        if encoder_identity is not None and index["encoder"] != encoder_identity:
            raise InvalidInputError(
                f"text cache '{folder}' was built with encoder {index['encoder'][:12]}, not {encoder_identity[:12]}; rebuild it"
            )
        self.dim: int = index["dim"]
        self.captions: dict[str, list[Any]] = index["captions"]
        self._shards: dict[str, torch.Tensor] = {}

    def __contains__(self, caption: str) -> bool:
        return caption in self.captions

    def lookup(self, captions: list[str]) -> list[torch.Tensor]:
        """Unpadded states ``(l_i, d)`` per caption; a caption not in the cache raises."""
        out = []
        for caption in captions:
            if caption not in self.captions:
                raise InvalidInputError(f"caption {caption[:80]!r} is not in the text cache '{self.folder}'; rebuild it")
            name, offset, length = self.captions[caption]
            if name not in self._shards:
                with safe_open(str(self.folder / name), framework="pt") as fh:
                    self._shards[name] = fh.get_tensor("states").float()  # stored float32 or float16
            out.append(self._shards[name][offset : offset + length])  # (l, d)
        return out


# ---------------------------------------------------------------------------------------------- latents


@torch.no_grad()
def build_latent_cache(
    dataset: VideoDataset,
    vae: nn.Module,
    out_dir: str | Path,
    *,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    shard_size: int = 1024,
    vae_path: str | Path | None = None,
    progress: bool = True,
) -> tuple[Path, DataReport]:
    """Encode one clip per usable item of ``dataset`` with ``vae`` into ``out_dir/latents``.

    ``vae_path`` (the VAE's component folder) is recorded so a DiT run can export it beside the
    DiT. Unreadable files are skipped and counted (returned report). Returns ``(folder, report)``.
    """
    final = Path(out_dir) / LATENT_DIR
    tmp = _atomic_dir(final)
    report = DataReport(missing=list(dataset.report.missing), unreadable=list(dataset.report.unreadable), unbucketed=list(dataset.report.unbucketed))
    vae = vae.to(device).eval()
    items: list[dict[str, Any]] = []
    bar = tqdm(total=len(dataset.bucket_of), desc="caching latents", unit="clip", disable=not progress)
    try:
        for b, bucket in enumerate(dataset.buckets):
            members = [i for i, k in enumerate(dataset.bucket_of) if k == b]
            shard_id, rows_in_shard = 0, 0
            means: list[torch.Tensor] = []
            logvars: list[torch.Tensor] = []

            def flush() -> None:
                nonlocal shard_id, rows_in_shard, means, logvars
                if means:
                    name = f"latents-{bucket}-{shard_id:05d}.safetensors"
                    save_file({"mean": torch.cat(means).contiguous(), "logvar": torch.cat(logvars).contiguous()}, str(tmp / name))
                    shard_id, rows_in_shard, means, logvars = shard_id + 1, 0, [], []

            for start in range(0, len(members), batch_size):
                videos, kept = [], []
                for i in members[start : start + batch_size]:
                    try:
                        videos.append(dataset.load(i, bucket, np.random.default_rng([dataset.seed, 0, i])))
                        kept.append(i)
                    except VideoIOError as e:
                        log.warning("skipping corrupt file %s: %s", dataset.entries[i].path, e)
                        report.unreadable.append(str(dataset.entries[i].path))
                if not videos:
                    continue
                posterior = vae.encode(torch.stack(videos).to(device))  # (n, c, f', h', w')
                for j, i in enumerate(kept):
                    entry = dataset.entries[i]
                    name = f"latents-{bucket}-{shard_id:05d}.safetensors"
                    items.append({"path": str(entry.path), "caption": entry.caption, "bucket": list(bucket.key), "shard": name, "row": rows_in_shard + j})
                means.append(posterior.mean.float().cpu())
                logvars.append(posterior.logvar.float().cpu())
                rows_in_shard += len(kept)
                bar.update(len(members[start : start + batch_size]))
                if rows_in_shard >= shard_size:
                    flush()
            flush()
        if not items:
            raise InvalidInputError(f"latent cache: no readable item in '{dataset.manifest.source}'")
        index = {"vae": config_to_dict(vae.config), "vae_path": str(vae_path) if vae_path else None, "items": items, "skipped": report.unreadable}
        (tmp / INDEX_NAME).write_text(json.dumps(index))
        _publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("latent cache: %d clips -> %s (%d skipped)", len(items), final, report.skipped)
    return final, report


class LatentDataset:
    """Training items from a latent cache; same ``(index, position)`` protocol as :class:`VideoDataset`.

    Items: ``{"mean": (c, f', h', w'), "logvar": (c, f', h', w'), "caption": str, "index": int,
    "bucket": int, "skipped": []}``. Each cached bucket takes its batch size from the matching ``(frames, height,
    width)`` in ``buckets``; cached buckets without one are an error naming them.
    """

    def __init__(self, folder: str | Path, buckets: list[Bucket]) -> None:
        folder = Path(folder)
        if (folder / LATENT_DIR / INDEX_NAME).is_file():
            folder = folder / LATENT_DIR
        if not (folder / INDEX_NAME).is_file():
            raise InvalidInputError(f"'{folder}' is not a latent cache: no {INDEX_NAME} (build it with `kinema cache latents`)")
        self.folder = folder
        index = json.loads((folder / INDEX_NAME).read_text())
        self.vae_config: dict[str, Any] = index["vae"]
        self.vae_path: str | None = index.get("vae_path")
        self.items: list[dict[str, Any]] = index["items"]
        by_key = {b.key: b for b in buckets}
        keys = sorted({tuple(it["bucket"]) for it in self.items})
        unknown = [k for k in keys if k not in by_key]
        if unknown:
            raise InvalidInputError(
                f"latent cache '{folder}' holds buckets {unknown} that the config's data.buckets "
                f"{sorted(by_key)} do not list (they give the batch sizes); add them"
            )
        self.buckets = [by_key[k] for k in keys]  # type: ignore[index]
        self.bucket_of = [keys.index(tuple(it["bucket"])) for it in self.items]
        self.report = DataReport(unreadable=list(index.get("skipped", [])))
        self._handles: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]) -> Sample:
        index, _ = key
        item = self.items[index]
        if item["shard"] not in self._handles:
            self._handles[item["shard"]] = safe_open(str(self.folder / item["shard"]), framework="pt")
        fh = self._handles[item["shard"]]
        row = item["row"]
        return {
            "mean": fh.get_slice("mean")[row : row + 1][0],  # (c, f', h', w')
            "logvar": fh.get_slice("logvar")[row : row + 1][0],
            "caption": item["caption"],
            "index": index,
            "bucket": self.bucket_of[index],
            "skipped": [],
        }

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers reopen the shards
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state
