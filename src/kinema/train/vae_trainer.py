"""VAE training: a flat loop from one CPU to many GPUs.

Each optimizer step reads ``grad_accum`` bucketed micro-batches of pixels ``(b, 3, f, h, w)``,
computes :func:`kinema.vae.vae_loss` (L1 + edge + KL) under bf16 autocast on GPU (fp32 on CPU),
clips the gradient norm, steps AdamW and the warmup-cosine schedule, and updates the EMA. Rank 0
logs (tqdm + ``metrics.jsonl``) and every rank joins the checkpoint. At the end the EMA weights,
with the latent scaling/shift measured on training clips, are exported to ``RUN/final/vae``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from collections.abc import Callable
from pathlib import Path

import torch

from kinema.checkpoint import load_component, save_component
from kinema.data.buckets import Bucket
from kinema.data.datasets import batch_stream
from kinema.errors import InvalidInputError
from kinema.train.checkpointing import export_state, latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from kinema.train.common import (
    RunLog,
    Throughput,
    TrainResult,
    autocast,
    autocast_dtype,
    check_buckets,
    make_data,
    measure_flops,
    peak_flops,
    prepare_run_dir,
    seed_everything,
)
from kinema.train.config import VAETrainConfig
from kinema.train.distributed import DistInfo, all_gather_objects, all_reduce_mean, cleanup, gradient_sync, init_distributed, wrap_model
from kinema.train.optim import EMA, build_optimizer, build_scheduler
from kinema.vae import CausalVAE, VAEConfig, estimate_latent_scaling, vae_loss

log = logging.getLogger("kinema.train")


def train_vae(
    cfg: VAETrainConfig,
    data: str,
    out: str | Path,
    *,
    resume: str | Path | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train a :class:`CausalVAE` on ``data`` into run folder ``out``.

    Args:
        resume: ``"latest"`` (the newest checkpoint in ``out``, or a fresh start when there is none)
            or a checkpoint folder.
        stop_after: stop after this many optimizer steps of this invocation (an interruption that
            can be resumed; no final export unless the schedule is complete).
    """
    info = init_distributed(cfg.parallel.mode, cfg.runtime.device, cfg.parallel.backend)
    try:
        return _train(cfg, data, Path(out), info, resume, stop_after)
    finally:
        cleanup(info)


def _train(cfg: VAETrainConfig, data: str, out: Path, info: DistInfo, resume: str | Path | None, stop_after: int | None) -> TrainResult:
    device = info.device
    torch.use_deterministic_algorithms(cfg.runtime.deterministic)
    init = _load_init(cfg)
    if init is not None:
        cfg = replace(cfg, model=replace(init.config, gradient_checkpointing=cfg.model.gradient_checkpointing))
    run_dir = prepare_run_dir(out, cfg, info, data)
    dataset, sampler = make_data(data, cfg.data, info)

    seed_everything(cfg.runtime.seed)  # identical initial weights on every rank
    model = CausalVAE(cfg.model).to(device)
    if init is not None:
        model.load_state_dict(init.state_dict())
        log.info("starting from %s%s", cfg.init, "" if cfg.train_encoder else " (decoder only: the encoder and the latent scaling stay)")
    if not cfg.train_encoder:
        model.encoder.requires_grad_(False)
    check_buckets(dataset.buckets, model.check_input_size)
    n_params = sum(p.numel() for p in model.parameters())
    wrapped = wrap_model(model, info, shard_units=vae_shard_units(model) if info.mode == "fsdp" else None)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule)
    ema = EMA(model, cfg.ema) if cfg.ema.enabled else None
    generator = torch.Generator(device).manual_seed(cfg.runtime.seed * 1_000_003 + info.rank)  # posterior samples

    step, position, skipped = 0, 0, set()
    checkpoint = latest_checkpoint(run_dir) if resume == "latest" else (Path(resume) if resume else None)
    if resume == "latest" and checkpoint is None:
        log.warning("--resume: no checkpoint in %s yet; starting from scratch", run_dir)
    if checkpoint is not None:
        state, rank_state = load_checkpoint(checkpoint, model=wrapped, optimizer=optimizer, ema=ema, info=info)
        scheduler.load_state_dict(state["scheduler"])
        step, position = int(state["step"]), int(state["position"])
        skipped = set(rank_state["skipped"])
        set_rng_state(rank_state["rng"], generator)
        log.info("resumed from %s at step %d (data position %d)", checkpoint, step, position)

    amp = autocast_dtype(cfg.runtime, device)
    total = cfg.schedule.total_steps
    end = total if stop_after is None else min(total, step + stop_after)
    runlog = RunLog(run_dir, info, total, step, cfg.runtime.progress)
    meter = Throughput(peak_flops(cfg.runtime, device))
    flops_per_bucket = [measure_flops(_flops_probe(cfg, b)) for b in dataset.buckets]  # per rank micro-step
    if info.is_main:
        log.info("VAE: %.2fM params, %d ranks (%s), device %s, %s, buckets %s, %d items",
                 n_params / 1e6, info.world_size, info.mode, device, amp or "fp32", [str(b) for b in dataset.buckets], len(dataset))
    stream = batch_stream(dataset, sampler, start=position, num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda")
    losses: list[float] = []
    t_start, samples_seen = time.perf_counter(), 0
    model.train()
    while step < end:
        # ---- one optimizer step = grad_accum micro-batches (gradient sync only on the last one)
        terms: dict[str, float] = {}
        step_samples, step_flops = 0, 0.0
        for micro in range(cfg.optim.grad_accum):
            position, batch = next(stream)
            skipped.update(batch["skipped"])
            video = batch["video"].to(device, non_blocking=True)  # (b, 3, f, h, w)
            with gradient_sync(wrapped, micro == cfg.optim.grad_accum - 1):
                with autocast(device, amp):
                    output = wrapped(video, sample_posterior=True, generator=generator)
                    loss = vae_loss(video, output, **vars(cfg.loss))  # VAELossConfig's fields are vae_loss's weights
                (loss.total / cfg.optim.grad_accum).backward()
            step_flops += flops_per_bucket[int(batch["bucket"][0])]
            for k, v in loss.as_dict().items():
                terms[k] = terms.get(k, 0.0) + v / cfg.optim.grad_accum
            step_samples += video.shape[0]
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(model, step)
        step += 1
        position += 1  # the next micro-batch to read
        samples_seen += step_samples
        meter.add(step_samples * info.world_size, step_flops * info.world_size)

        loss_value = all_reduce_mean(terms["total"], info)
        losses.append(loss_value)
        row = {"step": step, "loss": loss_value, "lr": scheduler.get_last_lr()[0]}
        runlog.step(row)
        if step % cfg.runtime.log_every == 0 or step == end:
            gn = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
            runlog.write({**row, **{k: v for k, v in terms.items() if k != "total"}, "grad_norm": float(gn),
                          "skipped_files": len(skipped), **meter.report()})
        if step % cfg.checkpoint.every == 0 or step == end:
            save_checkpoint(
                run_dir, step, model=wrapped, optimizer=optimizer, ema=ema, info=info, keep_last=cfg.checkpoint.keep_last,
                trainer_state={"step": step, "position": position, "scheduler": scheduler.state_dict(), "kind": "vae"},
                rank_state={"rng": rng_state(generator), "skipped": sorted(skipped)},
            )
    elapsed = time.perf_counter() - t_start
    runlog.close()

    all_skipped = sorted(set().union(*all_gather_objects(sorted(skipped), info)) | set(dataset.report.missing)
                         | set(dataset.report.unreadable))
    final_dir = None
    if step >= total:
        final_dir = _export(cfg, model, ema, dataset, sampler, run_dir, info)
    if info.is_main and all_skipped:
        log.warning("data: %d bad or missing files skipped in this run: %s", len(all_skipped), all_skipped[:10])
    n_steps = len(losses)
    return TrainResult(run_dir=run_dir, rank=info.rank, step=step, final_dir=final_dir, last_loss=losses[-1] if losses else float("nan"),
                       losses=losses, skipped_files=all_skipped,
                       steps_per_second=n_steps / elapsed if elapsed > 0 else 0.0,
                       samples_per_second=samples_seen * info.world_size / elapsed if elapsed > 0 else 0.0)


def vae_shard_units(model: CausalVAE) -> list[torch.nn.Module]:
    """FSDP units of the VAE: each entry of the encoder's/decoder's ``nn.ModuleList`` s (their levels)."""
    units: list[torch.nn.Module] = []
    for part in (model.encoder, model.decoder):
        for child in part.children():
            if isinstance(child, torch.nn.ModuleList):
                units += [m for m in child if any(True for _ in m.parameters())]
    return units


def _flops_probe(cfg: VAETrainConfig, bucket: Bucket) -> Callable[[], torch.Tensor]:
    """Loss of one micro-batch of ``bucket`` (built on whatever device is current) for FLOP counting."""

    def run() -> torch.Tensor:
        model = CausalVAE(cfg.model)
        video = torch.zeros(bucket.batch_size, 3, bucket.frames, bucket.height, bucket.width)
        out = model(video, sample_posterior=False)
        return vae_loss(video, out, **vars(cfg.loss)).total

    return run


def _load_init(cfg: VAETrainConfig) -> CausalVAE | None:
    """The VAE ``cfg.init`` names (fp32), or None; decoder-only training needs one."""
    if cfg.init is None:
        if not cfg.train_encoder:
            raise InvalidInputError("train_encoder: false fine-tunes a trained VAE's decoder; set init to its component folder (e.g. runs/vae/final/vae)")
        return None
    if not (Path(cfg.init) / "config.json").is_file():
        raise InvalidInputError(f"init '{cfg.init}' is not a VAE component folder (no config.json); give e.g. runs/vae/final/vae")
    return load_component(CausalVAE, VAEConfig, cfg.init).float()


@torch.no_grad()
def _export(cfg: VAETrainConfig, model: CausalVAE, ema: EMA | None, dataset, sampler, run_dir: Path, info: DistInfo) -> Path:
    """Rank 0 writes ``RUN/final/vae``: EMA weights + latent scaling measured on training clips."""
    weights = export_state(model, ema)
    folder = run_dir / "final" / "vae"
    if info.is_main:
        export = CausalVAE(cfg.model)
        export.load_state_dict(weights)
        export.eval()
        if not cfg.train_encoder:  # same encoder, same latents: keep the scaling every DiT on it was trained with
            save_component(export, folder)
            log.info("exported %s (decoder fine-tuned; latent scaling %.4f, shift %.4f kept)", folder,
                     export.config.scaling_factor, export.config.shift_factor)
            return folder
        latents = []
        for position, batch in batch_stream(dataset, sampler, start=0):
            latents.append(export.encode(batch["video"]).mode())  # (b, c, f', h', w')
            if position + 1 >= cfg.scaling_batches:
                break
        scale, shift = estimate_latent_scaling(torch.cat([z.flatten() for z in latents]))
        export.config = replace(export.config, scaling_factor=scale, shift_factor=shift)
        save_component(export, folder)
        log.info("exported %s (latent scaling %.4f, shift %.4f)", folder, scale, shift)
    return folder
