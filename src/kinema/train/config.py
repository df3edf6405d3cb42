"""Training configs: typed dataclasses for both trainers, with named presets as data.

A run's config is built from a preset (or the defaults), then a YAML file from ``configs/``, then
dotted overrides (``--optim.lr=1e-4``) by :func:`kinema.config.load_config`; the resolved config is
saved in the run folder as ``config.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from kinema.data.buckets import Bucket
from kinema.dit.config import DIT_PRESETS, DiTConfig
from kinema.errors import InvalidInputError
from kinema.refine import RefinerConfig
from kinema.text.config import TextEncoderConfig
from kinema.vae.config import VAE_PRESETS, VAEConfig

ParallelMode = Literal["none", "ddp", "fsdp"]
MaskKind = Literal["none", "first_frame", "first_k", "last_k", "first_last"]
MASK_KINDS: tuple[str, ...] = ("none", "first_frame", "first_k", "last_k", "first_last")


@dataclass
class OptimConfig:
    """AdamW with decoupled weight decay on matrices only; clipping and accumulation."""

    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    grad_accum: int = 1  # micro-batches per optimizer step


@dataclass
class ScheduleConfig:
    """Linear warmup to ``optim.lr`` then cosine decay to ``min_lr_ratio * lr`` at ``total_steps``."""

    total_steps: int = 1000
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1


@dataclass
class EMAConfig:
    """Exponential moving average of the weights; its copy is what gets exported."""

    enabled: bool = True
    decay: float = 0.999  # reached gradually: min(decay, (1 + step) / (10 + step))
    start_step: int = 0  # before this step the EMA copies the weights


@dataclass
class DataConfig:
    """Where clips come from and how they are shaped (see :mod:`kinema.data`)."""

    buckets: list[Bucket] = field(default_factory=lambda: [Bucket(frames=9, height=32, width=32, batch_size=4)])
    fps: float | None = None  # clip frame rate; None = source rate
    seed: int = 0  # shuffling and clip sampling
    shuffle: bool = True
    random_crop: bool = True
    num_workers: int = 0  # DataLoader worker processes per rank
    world_clips: int = 100_000  # items per epoch of a ``world:SPLIT`` source
    text_cache: str | None = None  # folder built by `kinema cache text` (DiT only)
    latent_cache: str | None = None  # folder built by `kinema cache latents` (DiT only)


@dataclass
class ParallelConfig:
    """Data parallelism under ``torchrun``: ``ddp`` replicates, ``fsdp`` shards (FSDP2 ``fully_shard``)."""

    mode: ParallelMode = "none"
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # auto: nccl on GPU, gloo on CPU


@dataclass
class CheckpointConfig:
    every: int = 500  # steps between checkpoints (and at the end)
    keep_last: int = 3


@dataclass
class RuntimeConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    seed: int = 0  # model init and training noise
    log_every: int = 10
    progress: bool = True  # tqdm bar on rank 0
    peak_tflops: float | None = None  # for the MFU printout; None = known GPUs only
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)
    compile: bool = False  # torch.compile the DiT's forward (compiles once per bucket shape; see benchmarks/RESULTS.md)


@dataclass
class VAELossConfig:
    """Weights of :func:`kinema.vae.vae_loss`."""

    kl_weight: float = 1e-6
    l1_weight: float = 1.0
    mse_weight: float = 1.0  # L1 alone settles in a background-only minimum on flat clips (docs/architecture.md)
    grad_weight: float = 0.5
    foreground_weight: float = 0.0  # extra weight on object pixels (kinema.vae.losses.foreground_weights)
    temporal_weight: float = 0.0  # frame-to-frame changes (kinema.vae.losses.temporal_loss): jumps at latent-group boundaries


@dataclass
class VAETrainConfig:
    model: VAEConfig = field(default_factory=lambda: replace(VAE_PRESETS["tiny"]))
    loss: VAELossConfig = field(default_factory=VAELossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    data: DataConfig = field(default_factory=DataConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    scaling_batches: int = 4  # batches encoded at export to measure the latent scaling/shift
    init: str | None = None  # a trained VAE component folder to start from (its config replaces ``model``)
    train_encoder: bool = True  # False: fine-tune the decoder only; the latent space (and every DiT trained on it) stays valid


@dataclass
class MaskConfig:
    """Relative weights of the random conditioning masks (latent frames given to the DiT).

    ``first_frame``: image-to-video; ``first_k``: extend forward; ``last_k``: extend backward;
    ``first_last``: loops and connecting two clips; ``none``: text-to-video. ``k`` is uniform in
    ``1..max(1, ceil(max_fraction * f'))``. One-frame (image) latents always get ``none``.
    """

    none: float = 0.5
    first_frame: float = 0.2
    first_k: float = 0.1
    last_k: float = 0.1
    first_last: float = 0.1
    max_fraction: float = 0.5

    def weights(self) -> list[float]:
        w = [getattr(self, k) for k in MASK_KINDS]
        if any(x < 0 for x in w) or sum(w) <= 0:
            raise InvalidInputError(f"MaskConfig weights {dict(zip(MASK_KINDS, w))} invalid; allowed: >= 0 with a positive sum")
        return w


@dataclass
class FlowTrainConfig:
    """Flow-time sampling: ``t = shift(sigmoid(N(mean, std)))`` (``uniform`` ignores mean/std)."""

    sampling: Literal["logit_normal", "uniform"] = "logit_normal"
    mean: float = 0.0
    std: float = 1.0
    shift: float = 1.0


@dataclass
class VAESourceConfig:
    """The frozen VAE of DiT training: a trained component folder, or (smoke tests) a seeded init."""

    path: str | None = None  # component folder (e.g. runs/vae/final/vae); None = random init of ``preset``
    preset: str = "tiny"


@dataclass
class DiTTrainConfig:
    model: DiTConfig = field(default_factory=lambda: replace(DIT_PRESETS["tiny"]))
    vae: VAESourceConfig = field(default_factory=VAESourceConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    masks: MaskConfig = field(default_factory=MaskConfig)
    flow: FlowTrainConfig = field(default_factory=FlowTrainConfig)
    caption_dropout: float = 0.1  # probability of the empty caption (classifier-free guidance)
    foreground_weight: float = 0.0  # extra loss weight on latent positions of objects (kinema.train.latent_weights)
    foreground_threshold: float = 0.5  # rms distance from the frame's background latent that marks an object
    sample_posterior: bool = True  # x0 = a VAE posterior sample (True) or its mean
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    data: DataConfig = field(default_factory=DataConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    init: str | None = None  # a trained DiT component folder to continue from (its config replaces ``model``)


@dataclass
class RefinerTrainConfig:
    """The refiner DiT (:mod:`kinema.refine`): the DiT objective, conditioned on a guide of the
    low-resolution clip with every latent frame given, loss on every frame.

    ``data.buckets`` are the *high-resolution* (target) sizes; the low-resolution input of each clip
    is its exact ``refiner.scale_factor`` area average, so a source renders/decodes one size only.
    """

    model: DiTConfig = field(default_factory=lambda: replace(DIT_PRESETS["tiny"], in_channels=VAE_PRESETS["tiny"].latent_channels))
    vae: VAESourceConfig = field(default_factory=VAESourceConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    refiner: RefinerConfig = field(default_factory=RefinerConfig)
    flow: FlowTrainConfig = field(default_factory=FlowTrainConfig)
    caption_dropout: float = 0.1
    foreground_weight: float = 0.0  # as DiTTrainConfig's
    foreground_threshold: float = 0.5
    sample_posterior: bool = True  # target x0 = a VAE posterior sample (True) or its mean; the guide is always the mean
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    data: DataConfig = field(default_factory=DataConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    init: str | None = None  # a trained refiner DiT component folder to continue from (its config replaces ``model``)


_TINY_BUCKETS = [Bucket(frames=5, height=16, width=16, batch_size=2), Bucket(frames=1, height=16, width=16, batch_size=4)]
_WORLD_BUCKETS = [Bucket(frames=33, height=64, width=64, batch_size=8)]

VAE_TRAIN_PRESETS: dict[str, VAETrainConfig] = {
    # Unit tests and smoke runs: seconds on one CPU core.
    "tiny": VAETrainConfig(
        model=replace(VAE_PRESETS["tiny"]),
        schedule=ScheduleConfig(total_steps=20, warmup_steps=2),
        optim=OptimConfig(lr=2e-3),
        ema=EMAConfig(decay=0.9),
        data=DataConfig(buckets=list(_TINY_BUCKETS)),
        checkpoint=CheckpointConfig(every=10, keep_last=2),
        runtime=RuntimeConfig(log_every=5, progress=False),
        scaling_batches=1,
    ),
    # The default model's VAE on Kinema World (64x64, 33 frames -> 16x9x8x8 latents).
    "world": VAETrainConfig(
        model=replace(VAE_PRESETS["small"]),
        schedule=ScheduleConfig(total_steps=20_000, warmup_steps=500),
        optim=OptimConfig(lr=5e-4),
        ema=EMAConfig(decay=0.999),
        data=DataConfig(buckets=list(_WORLD_BUCKETS)),
        checkpoint=CheckpointConfig(every=1000, keep_last=3),
    ),
}

DIT_TRAIN_PRESETS: dict[str, DiTTrainConfig] = {
    "tiny": DiTTrainConfig(
        model=replace(DIT_PRESETS["tiny"], in_channels=VAE_PRESETS["tiny"].latent_channels),
        vae=VAESourceConfig(path=None, preset="tiny"),
        text=TextEncoderConfig(max_length=16),
        schedule=ScheduleConfig(total_steps=20, warmup_steps=2),
        optim=OptimConfig(lr=1e-3),
        ema=EMAConfig(decay=0.9),
        data=DataConfig(buckets=list(_TINY_BUCKETS)),
        checkpoint=CheckpointConfig(every=10, keep_last=2),
        runtime=RuntimeConfig(log_every=5, progress=False),
    ),
    # The default model's DiT on Kinema World latents (16 x 9 x 8 x 8 -> 144 tokens at patch 1x2x2).
    "world": DiTTrainConfig(
        model=replace(DIT_PRESETS["small"], in_channels=VAE_PRESETS["small"].latent_channels),
        vae=VAESourceConfig(path="runs/vae-world/final/vae", preset="small"),
        text=TextEncoderConfig(max_length=32),
        schedule=ScheduleConfig(total_steps=60_000, warmup_steps=1000),
        optim=OptimConfig(lr=3e-4, weight_decay=0.0),
        ema=EMAConfig(decay=0.9995),
        data=DataConfig(buckets=[Bucket(frames=33, height=64, width=64, batch_size=32)]),
        checkpoint=CheckpointConfig(every=2000, keep_last=3),
    ),
}

REFINER_TRAIN_PRESETS: dict[str, RefinerTrainConfig] = {
    # Unit tests and smoke runs: 16x16 -> 32x32 with the tiny VAE (latents 4 x f' x 8 x 8).
    "tiny": RefinerTrainConfig(
        model=replace(DIT_PRESETS["tiny"], in_channels=VAE_PRESETS["tiny"].latent_channels),
        vae=VAESourceConfig(path=None, preset="tiny"),
        text=TextEncoderConfig(max_length=16),
        schedule=ScheduleConfig(total_steps=20, warmup_steps=2),
        optim=OptimConfig(lr=1e-3),
        ema=EMAConfig(decay=0.9),
        data=DataConfig(buckets=[Bucket(frames=5, height=32, width=32, batch_size=2), Bucket(frames=1, height=32, width=32, batch_size=4)]),
        checkpoint=CheckpointConfig(every=10, keep_last=2),
        runtime=RuntimeConfig(log_every=5, progress=False),
    ),
    # The default model's refiner: Kinema World 64x64 -> 128x128 (latents 16 x 9 x 16 x 16, 576 tokens at patch 1x2x2).
    "world": RefinerTrainConfig(
        model=replace(DIT_PRESETS["small"], in_channels=VAE_PRESETS["small"].latent_channels),
        vae=VAESourceConfig(path="runs/vae-world/final/vae", preset="small"),
        text=TextEncoderConfig(max_length=32),
        schedule=ScheduleConfig(total_steps=30_000, warmup_steps=1000),
        optim=OptimConfig(lr=3e-4, weight_decay=0.0),
        ema=EMAConfig(decay=0.9995),
        data=DataConfig(buckets=[Bucket(frames=33, height=128, width=128, batch_size=8)]),
        checkpoint=CheckpointConfig(every=2000, keep_last=3),
    ),
}
