"""Refiner training ("diffuse-to-diffuse"): the DiT loop with a low-resolution guide as conditioning.

One micro-batch (``s = refiner.scale_factor``; shapes for a ``(b, 3, f, H, W)`` bucket)::

    high  = the clip                                   (b, 3, f, H, W)      pixels of the bucket
    x0    = normalize(VAE posterior of high)           (b, c, f', H/S, W/S) the target
    low   = area_downsample(high, s)                   (b, 3, f, H/s, W/s)  exact s x s average
    guide = guide_latents(low)                         (b, c, f', H/S, W/S) kinema.refine: pixel or latent upsampling
    cond  = (1 - a) guide + a eps, m = 1 on every frame (noise augmentation at the fixed level a)
    loss  = mean over all frames of |DiT(x_t, t, text, cond, m) - (eps' - x0)|^2

Everything else (buckets, caption dropout, EMA, checkpoints, exact resume, DDP/FSDP) is the DiT
loop of :mod:`kinema.train.dit_trainer`. The export is ``RUN/final/refiner`` (EMA weights),
``RUN/final/refiner.json`` (:class:`kinema.refine.RefinerConfig`), ``final/vae`` and
``final/text/config.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from kinema.data.buckets import Bucket
from kinema.data.datasets import Sample
from kinema.errors import InvalidInputError
from kinema.refine import area_downsample, augment_guide, check_refiner_sizes, guide_latents, save_refiner_config
from kinema.train.common import TrainResult, autocast
from kinema.train.config import RefinerTrainConfig
from kinema.train.dit_trainer import Conditioning, ConditioningFn, DiTTask, LatentSource, export_dit, run_dit_task

log = logging.getLogger("kinema.train")


def refiner_conditioning(cfg: RefinerTrainConfig, latents: LatentSource, buckets: list[Bucket]) -> ConditioningFn:
    """The refiner's :data:`ConditioningFn`: guide latents of the downsampled clip, every frame given."""
    vae = latents.vae
    if vae is None:
        raise InvalidInputError("refiner training needs pixels (a manifest or world:SPLIT) and a VAE; "
                                "a latent cache holds only the high-resolution latents (text caches are fine)")
    s = cfg.refiner.scale_factor
    for b in buckets:
        if b.height % s or b.width % s:
            raise InvalidInputError(f"bucket {b}: height and width must be multiples of refiner.scale_factor={s}")
        check_refiner_sizes(vae, cfg.refiner, b.frames, b.height // s, b.width // s)

    def condition(x0: torch.Tensor, batch: Sample, generator: torch.Generator, cpu_gen: torch.Generator) -> Conditioning:
        high = batch["video"].to(latents.device, non_blocking=True)  # (b, 3, f, H, W)
        with autocast(latents.device, latents.amp):
            guide = guide_latents(vae, area_downsample(high, s), cfg.refiner)  # (b, c, f', H/S, W/S)
        if guide.shape != x0.shape:
            raise InvalidInputError(f"guide latents {tuple(guide.shape)} do not match the target {tuple(x0.shape)}")
        cond = augment_guide(guide.float(), cfg.refiner.noise_augmentation, generator)
        ones = torch.ones(x0.shape[0], x0.shape[2], device=x0.device)  # (b, f'): every frame given, every frame in the loss
        return Conditioning(cond_latents=cond, cond_mask=ones, loss_weight=ones)

    return condition


def export_refiner(cfg: RefinerTrainConfig, weights: dict[str, torch.Tensor], latents: LatentSource, final_dir: Path) -> None:
    """``final/refiner`` + ``final/refiner.json`` (+ ``final/vae``, ``final/text/config.json``)."""
    export_dit(cfg, weights, latents, final_dir, name="refiner")
    save_refiner_config(cfg.refiner, final_dir)


REFINER_TASK = DiTTask(kind="refiner", conditioning=refiner_conditioning, export=export_refiner)


def train_refiner(
    cfg: RefinerTrainConfig,
    data: str,
    out: str | Path,
    *,
    resume: str | Path | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train a refiner DiT on ``data`` (manifest or ``world:SPLIT``; buckets = high-resolution sizes) into ``out``.

    ``resume`` and ``stop_after`` as in :func:`kinema.train.vae_trainer.train_vae`.
    """
    if cfg.data.latent_cache is not None:
        raise InvalidInputError(f"data.latent_cache={cfg.data.latent_cache!r}: the refiner needs pixels; unset it (text caches are fine)")
    return run_dit_task(REFINER_TASK, cfg, data, out, resume=resume, stop_after=stop_after)
