"""Pieces both trainers share: run folder, logging (rank 0: tqdm + JSONL metrics + run.log),
precision, seeding, throughput/MFU and the data source.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from kinema.config import save_config
from kinema.data.buckets import Bucket, BucketBatchSampler
from kinema.data.datasets import BucketedDataset, open_dataset
from kinema.errors import InvalidInputError
from kinema.train.config import DataConfig, RuntimeConfig
from kinema.train.distributed import DistInfo

log = logging.getLogger("kinema.train")

# Dense peak TFLOP/s (bf16 tensor cores) of GPUs we know, for the MFU printout.
GPU_PEAK_TFLOPS: dict[str, float] = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "4090": 165.0}


@dataclass
class TrainResult:
    """What a training call returns (also written to ``RUN/summary.json``)."""

    run_dir: Path
    rank: int
    step: int
    final_dir: Path | None
    last_loss: float
    losses: list[float] = field(default_factory=list)  # per optimizer step of this invocation (rank-0 mean over ranks)
    skipped_files: list[str] = field(default_factory=list)
    steps_per_second: float = 0.0
    samples_per_second: float = 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast_dtype(runtime: RuntimeConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on GPU by default, plain fp32 on CPU (no fast bf16 there)."""
    if runtime.precision == "bf16" or (runtime.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def peak_flops(runtime: RuntimeConfig, device: torch.device) -> float | None:
    if runtime.peak_tflops is not None:
        return runtime.peak_tflops * 1e12
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in GPU_PEAK_TFLOPS.items():
            if key in name:
                return tflops * 1e12
    return None


class RunLog:
    """Rank 0 writes ``RUN/metrics.jsonl`` (one JSON object per logged step) and ``RUN/run.log``."""

    def __init__(self, run_dir: Path, info: DistInfo, total_steps: int, start_step: int, progress: bool) -> None:
        self.info = info
        self.metrics = (run_dir / "metrics.jsonl").open("a") if info.is_main else None
        self.handler: logging.Handler | None = None
        if info.is_main:
            self.handler = logging.FileHandler(run_dir / "run.log")
            self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            for name in ("kinema.train", "kinema.data"):
                logging.getLogger(name).addHandler(self.handler)
                logging.getLogger(name).setLevel(logging.INFO)
        self.bar = tqdm(total=total_steps, initial=start_step, dynamic_ncols=True) if info.is_main and progress else None

    def step(self, row: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}")

    def write(self, row: dict[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.write(json.dumps(row) + "\n")
            self.metrics.flush()
            text = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
            (self.bar.write if self.bar is not None else log.info)(text)
            if self.bar is not None:
                log.info(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.handler is not None:
            for name in ("kinema.train", "kinema.data"):
                logging.getLogger(name).removeHandler(self.handler)
            self.handler.close()


def prepare_run_dir(out: str | Path, config: Any, info: DistInfo, data: str) -> Path:
    """Create the run folder; rank 0 saves the resolved config (``config.yaml``) and the data source."""
    run_dir = Path(out)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
        (run_dir / "data.txt").write_text(f"{data}\n")
    return run_dir


def make_data(data: str, cfg: DataConfig, info: DistInfo) -> tuple[BucketedDataset, BucketBatchSampler]:
    """Open ``data`` (manifest, latent cache or ``world:SPLIT``) and this rank's bucketed sampler."""
    dataset = open_dataset(data, cfg.buckets, target_fps=cfg.fps, seed=cfg.seed, random_crop=cfg.random_crop, world_clips=cfg.world_clips)
    sampler = BucketBatchSampler(
        dataset.bucket_of,
        [b.batch_size for b in dataset.buckets],
        rank=info.rank,
        world_size=info.world_size,
        seed=cfg.seed,
        shuffle=cfg.shuffle,
    )
    if dataset.report.skipped:
        log.warning("data: %d files skipped at start-up (%d missing, %d unreadable, %d fit no bucket)",
                    dataset.report.skipped, len(dataset.report.missing), len(dataset.report.unreadable), len(dataset.report.unbucketed))
    return dataset, sampler


def check_buckets(buckets: list[Bucket], check: Any) -> None:
    """Validate every bucket with ``check(frames, height, width)`` (e.g. ``vae.check_input_size``)."""
    for b in buckets:
        try:
            check(b.frames, b.height, b.width)
        except InvalidInputError as e:
            raise InvalidInputError(f"bucket {b} does not fit the model: {e}") from e


class Throughput:
    """Steps/s, samples/s and (given FLOPs per step) achieved TFLOP/s and MFU since the last report."""

    def __init__(self, peak: float | None) -> None:
        self.peak = peak
        self.reset()

    def reset(self) -> None:
        self.t0, self.steps, self.samples, self.flops = time.perf_counter(), 0, 0, 0.0

    def add(self, samples: int, flops: float) -> None:
        self.steps += 1
        self.samples += samples
        self.flops += flops

    def report(self) -> dict[str, float]:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        out = {"steps_per_s": self.steps / dt, "samples_per_s": self.samples / dt}
        if self.flops > 0:
            out["tflops"] = self.flops / dt / 1e12
            if self.peak:
                out["mfu"] = self.flops / dt / self.peak
        self.reset()
        return out


def measure_flops(run: Callable[[], torch.Tensor]) -> float:
    """FLOPs of one training micro-step: ``run()`` builds a model and inputs and returns the loss.

    Runs on the meta device under ``FlopCounterMode`` (no memory, no numerics touched: counting
    inside the real step would change kernel dispatch and break bit-exact resumes). Returns 0.0
    when some op cannot run on meta.
    """
    try:  # fork_rng: building the probe model must not advance the global RNG (resumed runs skip no probe)
        with torch.random.fork_rng(devices=[]), torch.device("meta"), FlopCounterMode(display=False) as counter:
            run().backward()
        return float(counter.get_total_flops())
    except (RuntimeError, NotImplementedError, TypeError) as e:
        log.debug("FLOP count unavailable: %s", e)
        return 0.0
