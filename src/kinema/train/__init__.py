"""Training at scale: VAE and DiT loops, EMA, warmup-cosine AdamW, DDP/FSDP, atomic checkpoints."""

from __future__ import annotations

from kinema.train.config import (
    DIT_TRAIN_PRESETS,
    VAE_TRAIN_PRESETS,
    CheckpointConfig,
    DataConfig,
    DiTTrainConfig,
    EMAConfig,
    FlowTrainConfig,
    MaskConfig,
    OptimConfig,
    ParallelConfig,
    RuntimeConfig,
    ScheduleConfig,
    VAELossConfig,
    VAESourceConfig,
    VAETrainConfig,
)

__all__ = [
    "DIT_TRAIN_PRESETS",
    "VAE_TRAIN_PRESETS",
    "CheckpointConfig",
    "DataConfig",
    "DiTTrainConfig",
    "EMAConfig",
    "FlowTrainConfig",
    "MaskConfig",
    "OptimConfig",
    "ParallelConfig",
    "RuntimeConfig",
    "ScheduleConfig",
    "VAELossConfig",
    "VAESourceConfig",
    "VAETrainConfig",
]
