"""Text and latent caches: build, read back, train from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kinema.data import Bucket, LatentDataset, TextEmbeddingCache, VideoDataset, build_latent_cache, build_text_cache, write_synthetic_dataset
from kinema.errors import InvalidInputError
from kinema.text import TextEncoder, TextEncoderConfig
from kinema.vae import VAE_PRESETS, CausalVAE


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("cache_media"), videos=3, images=2, frames=9, height=16, width=16)


def test_text_cache_round_trip(tmp_path: Path) -> None:
    encoder = TextEncoder(TextEncoderConfig(max_length=16))
    captions = ["a red ball falls", "a blue square moves left", "a red ball falls"]
    folder = build_text_cache(captions, encoder, tmp_path, shard_size=2)
    assert sorted(p.name for p in folder.iterdir()) == ["index.json", "text-00000.safetensors", "text-00001.safetensors"]
    cache = TextEmbeddingCache(tmp_path, encoder_identity=encoder.identity)
    assert "" in cache and cache.dim == 384
    got = cache.lookup(["a blue square moves left", ""])
    want = encoder.encode_unpadded(["a blue square moves left", ""])
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    with pytest.raises(InvalidInputError, match="not in the text cache"):
        cache.lookup(["never seen"])
    with pytest.raises(InvalidInputError, match="built with encoder"):
        TextEmbeddingCache(tmp_path, encoder_identity="0" * 64)


def test_float16_text_cache_is_half_the_size_and_reads_back_float32(tmp_path: Path) -> None:
    encoder = TextEncoder(TextEncoderConfig(max_length=16))
    captions = ["a red ball falls", "a blue square moves left"]
    full = build_text_cache(captions, encoder, tmp_path / "f32", progress=False)
    half = build_text_cache(captions, encoder, tmp_path / "f16", progress=False, dtype=torch.float16)
    size = lambda folder: (folder / "text-00000.safetensors").stat().st_size  # noqa: E731
    assert size(half) < 0.6 * size(full)
    got = TextEmbeddingCache(tmp_path / "f16").lookup(captions)
    want = encoder.encode_unpadded(captions)
    for g, w in zip(got, want):
        assert g.dtype == torch.float32 and g.shape == w.shape
        assert torch.allclose(g, w, atol=2e-3, rtol=1e-3) and not torch.equal(g, w)
    with pytest.raises(InvalidInputError, match="dtype"):
        build_text_cache(captions, encoder, tmp_path / "i8", progress=False, dtype=torch.int8)


def test_cache_text_for_a_refiner_config(tmp_path: Path) -> None:
    from kinema.cli import main

    common = ["--for", "refiner", "--preset", "tiny", "--config", str(Path(__file__).parents[1] / "configs" / "refiner_tiny.yaml"),
              "--data", "world:train", "--data.world_clips=3", "--out", str(tmp_path)]
    assert main(["cache", "text", "--dtype", "float16", *common]) == 0
    cache = TextEmbeddingCache(tmp_path)
    assert len(cache.captions) == 4  # three world clips' captions and ""
    assert main(["cache", "latents", *common]) != 0  # the refiner trains on pixels


def test_latent_cache_round_trip(tmp_path: Path, manifest: Path) -> None:
    buckets = [Bucket(5, 16, 16, 2), Bucket(1, 16, 16, 2)]
    dataset = VideoDataset(manifest, buckets, seed=0)
    torch.manual_seed(0)
    vae = CausalVAE(VAE_PRESETS["tiny"]).eval()
    folder, report = build_latent_cache(dataset, vae, tmp_path, batch_size=2, vae_path="somewhere/vae")
    assert report.skipped == 0
    cached = LatentDataset(tmp_path, buckets)
    assert len(cached) == 5 and cached.vae_path == "somewhere/vae"
    assert cached.vae_config["latent_channels"] == 4
    for index in range(len(cached)):
        item = cached[(index, 0)]
        source = dataset.entries.index(next(e for e in dataset.entries if str(e.path) == cached.items[index]["path"]))
        video = dataset.load(source, dataset.buckets[dataset.bucket_of[source]], np.random.default_rng([0, 0, source]))
        with torch.no_grad():
            posterior = vae.encode(video[None])
        assert torch.allclose(item["mean"], posterior.mean[0], atol=1e-6)
        assert torch.allclose(item["logvar"], posterior.logvar[0], atol=1e-6)
        assert item["caption"] == dataset.entries[source].caption
    with pytest.raises(InvalidInputError, match="do not list"):
        LatentDataset(tmp_path, [Bucket(5, 16, 16, 2)])
