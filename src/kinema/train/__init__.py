"""Training at scale: VAE, DiT and refiner loops, EMA, warmup-cosine AdamW, DDP/FSDP, atomic checkpoints."""

from __future__ import annotations

from kinema.train.config import (
    DIT_TRAIN_PRESETS,
    REFINER_TRAIN_PRESETS,
    VAE_TRAIN_PRESETS,
    CheckpointConfig,
    DataConfig,
    DiTTrainConfig,
    EMAConfig,
    FlowTrainConfig,
    MaskConfig,
    OptimConfig,
    ParallelConfig,
    RefinerTrainConfig,
    RuntimeConfig,
    ScheduleConfig,
    VAELossConfig,
    VAESourceConfig,
    VAETrainConfig,
)

__all__ = [
    "DIT_TRAIN_PRESETS",
    "REFINER_TRAIN_PRESETS",
    "VAE_TRAIN_PRESETS",
    "CheckpointConfig",
    "DataConfig",
    "DiTTrainConfig",
    "EMAConfig",
    "FlowTrainConfig",
    "MaskConfig",
    "OptimConfig",
    "ParallelConfig",
    "RefinerTrainConfig",
    "RuntimeConfig",
    "ScheduleConfig",
    "VAELossConfig",
    "VAESourceConfig",
    "VAETrainConfig",
]
