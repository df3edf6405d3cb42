"""DiT training: flow matching on VAE latents with random conditioning masks and caption dropout.

One optimizer step (``grad_accum`` micro-batches of one bucket each)::

    x0   = normalize(VAE posterior sample)        (b, c, f', h', w')   from the latent cache or a frozen VAE
    text = encoder states of the captions          (b, l, d)            from the text cache or a frozen encoder;
                                                                        "" with prob. caption_dropout (for CFG)
    m    = random conditioning mask                (b, f')              1 = latent frame given clean
    t    = shift(sigmoid(N(mean, std)))            (b,)                 flow time, 1 = noise
    x_t  = (1 - t) x0 + t eps,  target v = eps - x0
    loss = mean over not-given frames of |DiT(x_t, t, text, cond=x0, m) - v|^2

The refiner (:mod:`kinema.train.refiner_trainer`) is the same loop with another :class:`DiTTask`:
its :data:`ConditioningFn` returns the guide latents of the 2x area-downsampled clip as
``cond_latents`` with every frame given, and a loss weight over all frames.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from kinema.checkpoint import load_component, read_component_config, save_component
from kinema.config import from_dict, save_config
from kinema.data.buckets import Bucket
from kinema.data.cache import LatentDataset, TextEmbeddingCache
from kinema.data.datasets import Sample, batch_stream
from kinema.dit import DiT, DiTConfig
from kinema.errors import InvalidInputError
from kinema.flow import RectifiedFlowPath, sample_logit_normal, sample_uniform, shift_time
from kinema.text.encoder import TextEmbedding, TextEncoder
from kinema.train.checkpointing import export_state, latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from kinema.train.common import (
    RunLog,
    Throughput,
    TrainResult,
    autocast,
    autocast_dtype,
    make_data,
    measure_flops,
    peak_flops,
    prepare_run_dir,
    seed_everything,
)
from kinema.train.config import DiTTrainConfig, RefinerTrainConfig
from kinema.train.distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_mean,
    cleanup,
    gradient_sync,
    init_distributed,
    register_forward_method,
    wrap_model,
)
from kinema.train.latent_weights import position_weights
from kinema.train.masks import sample_cond_masks
from kinema.train.optim import EMA, build_optimizer, build_scheduler
from kinema.vae import CausalVAE, VAEConfig

log = logging.getLogger("kinema.train")

DiTLikeConfig = DiTTrainConfig | RefinerTrainConfig  # the sections the shared loop reads are common to both


@dataclass
class Conditioning:
    """What the DiT sees besides ``x_t``, and where the loss counts."""

    cond_latents: torch.Tensor | None  # (b, c, f, h, w)
    cond_mask: torch.Tensor | None  # (b, f), 1 = given
    loss_weight: torch.Tensor  # (b, f), 1 = frame counts in the loss


ConditioningFn = Callable[[torch.Tensor, Sample, torch.Generator, torch.Generator], Conditioning]
"""``(x0 (b, c, f, h, w), batch, generator (x0's device), cpu_generator) -> Conditioning``."""


def random_mask_conditioning(cfg: DiTTrainConfig) -> ConditioningFn:
    """Given frames = clean ``x0`` under a random mask (:mod:`kinema.train.masks`); loss on the rest."""

    def condition(x0: torch.Tensor, batch: Sample, generator: torch.Generator, cpu_gen: torch.Generator) -> Conditioning:
        mask, _ = sample_cond_masks(x0.shape[0], x0.shape[2], cfg.masks, cpu_gen)
        mask = mask.to(x0.device)  # (b, f)
        return Conditioning(cond_latents=x0, cond_mask=mask, loss_weight=1.0 - mask)

    return condition


def sample_time(cfg: DiTLikeConfig, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Flow times ``(n,)`` per ``cfg.flow``."""
    if cfg.flow.sampling == "uniform":
        t = sample_uniform(n, generator=generator, device=device)
    else:
        t = sample_logit_normal(n, cfg.flow.mean, cfg.flow.std, generator=generator, device=device)
    return shift_time(t, cfg.flow.shift) if cfg.flow.shift != 1.0 else t  # type: ignore[return-value]


def flow_matching_loss(
    model: torch.nn.Module,
    x0: torch.Tensor,
    text: TextEmbedding,
    cond: Conditioning,
    t: torch.Tensor,
    noise: torch.Tensor,
    foreground_weight: float = 0.0,
    foreground_threshold: float = 0.5,
) -> torch.Tensor:
    """Mean squared velocity error over the frames ``cond.loss_weight`` selects. ``x0``: ``(b, c, f, h, w)``.

    ``foreground_weight`` > 0: within each frame, positions of objects weigh ``1 + foreground_weight``
    times the background's (:mod:`kinema.train.latent_weights`); each frame's error stays a weighted mean.
    """
    sample = RectifiedFlowPath().sample(x0, noise, t)
    v = model(sample.x_t, t, text.states, text.mask, cond.cond_latents, cond.cond_mask)  # (b, c, f, h, w)
    err = (v.float() - sample.velocity.float()).pow(2).mean(dim=1)  # (b, f, h, w)
    if foreground_weight > 0:
        w = position_weights(x0.float(), foreground_weight, foreground_threshold)  # (b, f, h, w)
        per_frame = (err * w).sum(dim=(2, 3)) / w.sum(dim=(2, 3))  # (b, f)
    else:
        per_frame = err.mean(dim=(2, 3))
    return (per_frame * cond.loss_weight).sum() / cond.loss_weight.sum().clamp_min(1.0)


class TextSource:
    """Captions -> padded ``TextEmbedding`` on ``device``, from a text cache or a frozen encoder (memoised)."""

    def __init__(self, cfg: DiTLikeConfig, device: torch.device, cache_dir: str | None) -> None:
        self.device = device
        self.cache = TextEmbeddingCache(cache_dir) if cache_dir else None
        self.encoder = None if self.cache is not None else TextEncoder(cfg.text)
        self.memo: dict[str, torch.Tensor] = {}
        self.memo_limit = 100_000  # captions kept; rendered worlds make a new one almost every item
        dim = self.cache.dim if self.cache is not None else self.encoder.dim  # type: ignore[union-attr]
        if dim != cfg.model.text_dim:
            raise InvalidInputError(f"text states have dim {dim} but model.text_dim={cfg.model.text_dim}; make them equal")

    def __call__(self, captions: list[str]) -> TextEmbedding:
        if self.cache is not None:
            states = self.cache.lookup(captions)
        else:
            if len(self.memo) + len(captions) > self.memo_limit:
                self.memo.clear()  # before choosing what to encode, so every caption of this batch is encoded
            todo = sorted({c for c in captions if c not in self.memo})
            if todo:
                self.memo.update(zip(todo, self.encoder.encode_unpadded(todo)))  # type: ignore[union-attr]
            states = [self.memo[c] for c in captions]
        return TextEmbedding.from_unpadded(states).to(self.device)


class LatentSource:
    """Batch -> normalised latents ``(b, c, f', h', w')``: posterior sample from a cache or a frozen VAE."""

    def __init__(self, cfg: DiTLikeConfig, device: torch.device, cached: LatentDataset | None, amp: torch.dtype | None) -> None:
        self.device, self.amp, self.sample = device, amp, cfg.sample_posterior
        if cached is not None:
            self.vae_config = from_dict(VAEConfig, cached.vae_config)
            self.vae_path: str | None = cached.vae_path
            self.vae: CausalVAE | None = None
        elif cfg.vae.path is not None:
            self.vae_path = cfg.vae.path
            self.vae = load_component(CausalVAE, VAEConfig, cfg.vae.path, device=device)
            self.vae_config = self.vae.config
        else:
            log.warning("vae.path is not set: using a randomly initialised %r VAE (smoke tests only)", cfg.vae.preset)
            from kinema.vae import VAE_PRESETS

            if cfg.vae.preset not in VAE_PRESETS:
                raise InvalidInputError(f"vae.preset={cfg.vae.preset!r} unknown; allowed: {sorted(VAE_PRESETS)}")
            with torch.random.fork_rng():
                torch.manual_seed(cfg.runtime.seed + 1)
                self.vae = CausalVAE(VAE_PRESETS[cfg.vae.preset]).to(device)
            self.vae_path = None
            self.vae_config = self.vae.config
        if self.vae is not None:
            self.vae.eval().requires_grad_(False)
        if self.vae_config.latent_channels != cfg.model.in_channels:
            raise InvalidInputError(
                f"VAE latent_channels={self.vae_config.latent_channels} but model.in_channels={cfg.model.in_channels}; make them equal"
            )

    def latent_shape(self, bucket: Bucket) -> tuple[int, int, int, int]:
        t, s = self.vae_config.temporal_factor, self.vae_config.spatial_factor
        return (self.vae_config.latent_channels, 1 + (bucket.frames - 1) // t, bucket.height // s, bucket.width // s)

    @torch.no_grad()
    def __call__(self, batch: Sample, generator: torch.Generator) -> torch.Tensor:
        if "mean" in batch:
            z = batch["mean"].to(self.device)
            if self.sample:
                std = torch.exp(0.5 * batch["logvar"].to(self.device))
                z = z + std * torch.randn(z.shape, generator=generator, device=self.device, dtype=z.dtype)
        else:
            with autocast(self.device, self.amp):
                posterior = self.vae.encode(batch["video"].to(self.device, non_blocking=True))  # type: ignore[union-attr]
                z = posterior.sample(generator) if self.sample else posterior.mode()
        cfg = self.vae_config
        return ((z.float() - cfg.shift_factor) * cfg.scaling_factor).contiguous()  # (b, c, f', h', w')


@dataclass(frozen=True)
class DiTTask:
    """What differs between the DiT trainers (base model, refiner); the loop is shared.

    ``conditioning(cfg, latents, buckets)`` checks the buckets and returns the :data:`ConditioningFn`;
    ``export(cfg, weights, latents, final_dir)`` writes ``RUN/final`` on rank 0.
    """

    kind: str  # recorded in every checkpoint; a resume must match it
    conditioning: Callable[[Any, LatentSource, list[Bucket]], ConditioningFn]  # (cfg: DiTLikeConfig, ...)
    export: Callable[[Any, dict[str, torch.Tensor], LatentSource, Path], None]


def train_dit(
    cfg: DiTTrainConfig,
    data: str,
    out: str | Path,
    *,
    resume: str | Path | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train a :class:`DiT` on ``data`` (manifest, latent cache folder or ``world:SPLIT``) into ``out``.

    ``resume`` and ``stop_after`` as in :func:`kinema.train.vae_trainer.train_vae`.
    """
    return run_dit_task(DIT_TASK, cfg, data, out, resume=resume, stop_after=stop_after)


def run_dit_task(
    task: DiTTask, cfg: DiTLikeConfig, data: str, out: str | Path, *, resume: str | Path | None = None, stop_after: int | None = None
) -> TrainResult:
    """The shared loop for ``task`` (a :class:`DiTTrainConfig` or a :class:`RefinerTrainConfig`)."""
    info = init_distributed(cfg.parallel.mode, cfg.runtime.device, cfg.parallel.backend)
    try:
        return _train(task, cfg, data, Path(out), info, resume, stop_after)
    finally:
        cleanup(info)


def with_init_model(cfg: DiTLikeConfig) -> DiTLikeConfig:
    """``cfg`` with ``model`` set to the DiT config of ``cfg.init`` (keeping ``gradient_checkpointing``) when
    it continues a trained DiT: a continuation trains, and caches latents for, the init's shape."""
    if cfg.init is None:
        return cfg
    if not (Path(cfg.init) / "config.json").is_file():
        raise InvalidInputError(f"init '{cfg.init}' is not a DiT component folder (no config.json); give e.g. runs/dit/final/dit")
    model = read_component_config(DiTConfig, cfg.init, expected_class="DiT")[0]
    return replace(cfg, model=replace(model, gradient_checkpointing=cfg.model.gradient_checkpointing))


def _load_init(cfg: DiTLikeConfig) -> DiT | None:
    """The trained DiT of ``cfg.init`` (float32), or None: training continues from its weights with a fresh
    optimizer and schedule (``--resume`` instead continues a run with its own optimizer state)."""
    return None if cfg.init is None else load_component(DiT, DiTConfig, cfg.init).float()


def _train(task: DiTTask, cfg: DiTLikeConfig, data: str, out: Path, info: DistInfo, resume: str | Path | None, stop_after: int | None) -> TrainResult:
    device = info.device
    torch.use_deterministic_algorithms(cfg.runtime.deterministic)
    if not 0.0 <= cfg.caption_dropout <= 1.0:
        raise InvalidInputError(f"caption_dropout={cfg.caption_dropout} invalid; allowed: 0..1")
    cfg = with_init_model(cfg)
    init = _load_init(cfg)
    run_dir = prepare_run_dir(out, cfg, info, data)
    source = cfg.data.latent_cache or data
    dataset, sampler = make_data(source, cfg.data, info)
    amp = autocast_dtype(cfg.runtime, device)
    latents = LatentSource(cfg, device, dataset if isinstance(dataset, LatentDataset) else None, amp)
    texts = TextSource(cfg, device, cfg.data.text_cache)

    seed_everything(cfg.runtime.seed)  # identical initial weights on every rank
    model = DiT(cfg.model).to(device)
    if init is not None:
        model.load_state_dict(init.state_dict())
        log.info("starting from %s", cfg.init)
    latent_shapes = [latents.latent_shape(b) for b in dataset.buckets]
    for b, shape in zip(dataset.buckets, latent_shapes):
        try:
            model.num_tokens(*shape[1:])
        except InvalidInputError as e:
            raise InvalidInputError(f"bucket {b} -> latents {shape} cannot be patchified by {cfg.model.patch_size}: {e}") from e
    n_params = model.param_count()
    units: list[torch.nn.Module] = []
    if info.mode == "fsdp":
        for block in model.blocks:  # cross-attention K/V are projected outside the block's forward
            units += [block.cross_attn, block]
    wrapped = wrap_model(model, info, shard_units=units)
    if info.mode == "fsdp":
        # project_kv returns views (chunks of one matmul); FSDP2 warns in case they are modified in
        # place, which the DiT never does (DDP and FSDP runs give bit-identical weights, tested).
        warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(FSDPCrossAttention\) returned a view tensor")
        for block in model.blocks:
            register_forward_method(block.cross_attn, "project_kv")
    if cfg.runtime.compile:  # the module keeps its type and parameter names (checkpoints unchanged)
        model.forward = torch.compile(model.forward, dynamic=False)  # type: ignore[method-assign]
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule)
    ema = EMA(model, cfg.ema) if cfg.ema.enabled else None
    generator = torch.Generator(device).manual_seed(cfg.runtime.seed * 1_000_003 + info.rank)  # noise, t, posterior
    cpu_gen = torch.Generator().manual_seed(cfg.runtime.seed * 1_000_033 + info.rank)  # masks, caption dropout
    condition = task.conditioning(cfg, latents, dataset.buckets)

    step, position, skipped = 0, 0, set()
    checkpoint = latest_checkpoint(run_dir) if resume == "latest" else (Path(resume) if resume else None)
    if resume == "latest" and checkpoint is None:
        log.warning("--resume: no checkpoint in %s yet; starting from scratch", run_dir)
    if checkpoint is not None:
        state, rank_state = load_checkpoint(checkpoint, model=wrapped, optimizer=optimizer, ema=ema, info=info)
        if state["kind"] != task.kind:
            raise InvalidInputError(f"checkpoint '{checkpoint}' is a {state['kind']!r} run; this is a {task.kind!r} run")
        scheduler.load_state_dict(state["scheduler"])
        step, position = int(state["step"]), int(state["position"])
        skipped = set(rank_state["skipped"])
        set_rng_state(rank_state["rng"], generator)
        cpu_gen.set_state(rank_state["cpu_generator"])
        log.info("resumed from %s at step %d (data position %d)", checkpoint, step, position)

    total = cfg.schedule.total_steps
    end = total if stop_after is None else min(total, step + stop_after)
    runlog = RunLog(run_dir, info, total, step, cfg.runtime.progress)
    meter = Throughput(peak_flops(cfg.runtime, device))
    text_len = 16
    flops_per_bucket = [measure_flops(_flops_probe(cfg, b.batch_size, s, text_len)) for b, s in zip(dataset.buckets, latent_shapes)]
    if info.is_main:
        tokens = [model.num_tokens(*s[1:]) for s in latent_shapes]
        log.info("%s: %.2fM params, %d ranks (%s), device %s, %s, buckets %s -> latents %s (%s tokens), %d items",
                 task.kind, n_params / 1e6, info.world_size, info.mode, device, amp or "fp32", [str(b) for b in dataset.buckets],
                 latent_shapes, tokens, len(dataset))
    stream = batch_stream(dataset, sampler, start=position, num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda")
    losses: list[float] = []
    t_start, samples_seen = time.perf_counter(), 0
    model.train()
    while step < end:
        step_loss, step_samples, step_flops = 0.0, 0, 0.0
        for micro in range(cfg.optim.grad_accum):
            position, batch = next(stream)
            skipped.update(batch["skipped"])
            x0 = latents(batch, generator)  # (b, c, f', h', w')
            b = x0.shape[0]
            drop = torch.rand(b, generator=cpu_gen) < cfg.caption_dropout  # classifier-free guidance
            captions = ["" if d else c for c, d in zip(batch["caption"], drop.tolist())]
            text = texts(captions)
            cond = condition(x0, batch, generator, cpu_gen)
            t = sample_time(cfg, b, generator, device)
            noise = torch.randn(x0.shape, generator=generator, device=device)
            with gradient_sync(wrapped, micro == cfg.optim.grad_accum - 1):
                with autocast(device, amp):
                    loss = flow_matching_loss(wrapped, x0, text, cond, t, noise, cfg.foreground_weight, cfg.foreground_threshold)
                (loss / cfg.optim.grad_accum).backward()
            step_loss += float(loss.detach()) / cfg.optim.grad_accum
            step_samples += b
            step_flops += flops_per_bucket[int(batch["bucket"][0])]
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(model, step)
        step += 1
        position += 1
        samples_seen += step_samples
        meter.add(step_samples * info.world_size, step_flops * info.world_size)

        loss_value = all_reduce_mean(step_loss, info)
        losses.append(loss_value)
        row = {"step": step, "loss": loss_value, "lr": scheduler.get_last_lr()[0]}
        runlog.step(row)
        if step % cfg.runtime.log_every == 0 or step == end:
            gn = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
            runlog.write({**row, "grad_norm": float(gn), "skipped_files": len(skipped), **meter.report()})
        if step % cfg.checkpoint.every == 0 or step == end:
            save_checkpoint(
                run_dir, step, model=wrapped, optimizer=optimizer, ema=ema, info=info, keep_last=cfg.checkpoint.keep_last,
                trainer_state={"step": step, "position": position, "scheduler": scheduler.state_dict(), "kind": task.kind},
                rank_state={"rng": rng_state(generator), "cpu_generator": cpu_gen.get_state(), "skipped": sorted(skipped)},
            )
    elapsed = time.perf_counter() - t_start
    runlog.close()

    report = dataset.report
    all_skipped = sorted(set().union(*all_gather_objects(sorted(skipped), info)) | set(report.missing) | set(report.unreadable))
    final_dir = None
    if step >= total:
        weights = export_state(wrapped, ema)  # collective under FSDP
        final_dir = run_dir / "final"
        if info.is_main:
            task.export(cfg, weights, latents, final_dir)
    if info.is_main and all_skipped:
        log.warning("data: %d bad or missing files skipped in this run: %s", len(all_skipped), all_skipped[:10])
    return TrainResult(run_dir=run_dir, rank=info.rank, step=step, final_dir=final_dir, last_loss=losses[-1] if losses else float("nan"),
                       losses=losses, skipped_files=all_skipped,
                       steps_per_second=len(losses) / elapsed if elapsed > 0 else 0.0,
                       samples_per_second=samples_seen * info.world_size / elapsed if elapsed > 0 else 0.0)


def export_dit(cfg: DiTLikeConfig, weights: dict[str, torch.Tensor], latents: LatentSource, final_dir: Path, name: str = "dit") -> None:
    """``final/{name}`` (EMA weights), ``final/text/config.json`` and ``final/vae`` (the VAE trained against)."""
    export = DiT(cfg.model)
    export.load_state_dict(weights)
    save_component(export.eval(), final_dir / name)
    save_config(cfg.text, final_dir / "text" / "config.json")
    vae_folder = cfg.vae.path or latents.vae_path
    if latents.vae is not None and cfg.vae.path is None:
        save_component(latents.vae, final_dir / "vae")  # the seeded smoke-test VAE
    elif vae_folder is not None and (Path(vae_folder) / "config.json").is_file():
        if (final_dir / "vae").exists():
            shutil.rmtree(final_dir / "vae")
        shutil.copytree(vae_folder, final_dir / "vae")
    else:
        log.warning("the VAE behind the latent cache is not at %r: final/ holds only its config", vae_folder)
        save_config(latents.vae_config, final_dir / "vae_config.json")
    log.info("exported %s", final_dir)


DIT_TASK = DiTTask(kind="dit", conditioning=lambda cfg, latents, buckets: random_mask_conditioning(cfg), export=export_dit)


def _flops_probe(cfg: DiTLikeConfig, batch: int, latent: tuple[int, int, int, int], text_len: int) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        model = DiT(cfg.model)
        x = torch.zeros(batch, *latent)
        text = torch.zeros(batch, text_len, cfg.model.text_dim)
        mask = torch.ones(batch, text_len, dtype=torch.bool)
        v = model(x, torch.zeros(batch), text, mask, x, torch.zeros(batch, latent[1]))
        return v.pow(2).mean()

    return run
