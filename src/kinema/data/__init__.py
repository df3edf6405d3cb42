"""Video datasets for training: manifests, decoding, buckets, bucketed loading and caches."""

from __future__ import annotations

from kinema.data.buckets import Bucket, BucketBatchSampler, assign_bucket
from kinema.data.cache import LatentDataset, TextEmbeddingCache, build_latent_cache, build_text_cache
from kinema.data.datasets import BucketedDataset, DataReport, VideoDataset, batch_stream, collate, open_dataset
from kinema.data.decode import MediaInfo, clip_indices, decode_frames, probe, resize_crop
from kinema.data.manifest import Manifest, ManifestEntry, read_manifest, write_manifest
from kinema.data.synthetic import write_synthetic_dataset

__all__ = [
    "Bucket",
    "BucketBatchSampler",
    "BucketedDataset",
    "DataReport",
    "LatentDataset",
    "Manifest",
    "ManifestEntry",
    "MediaInfo",
    "TextEmbeddingCache",
    "VideoDataset",
    "assign_bucket",
    "batch_stream",
    "build_latent_cache",
    "build_text_cache",
    "clip_indices",
    "collate",
    "decode_frames",
    "open_dataset",
    "probe",
    "read_manifest",
    "resize_crop",
    "write_manifest",
    "write_synthetic_dataset",
]
