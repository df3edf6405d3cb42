"""Few-step student by reflow distillation (Liu et al. 2023, "Flow straight and fast"; InstaFlow).

The teacher (a trained pipeline's DiT, sampled with its full step count and classifier-free
guidance) maps noise ``z`` to latents ``x0 = teacher(z, prompt)``. Those couplings are deterministic,
so the straight path between them, ``x_t = (1 - t) x0 + t z``, has one velocity ``z - x0`` at every
``t``. A student initialised from the teacher and trained on that target (no prompt dropout, no
guidance) learns a nearly straight flow: a few Euler steps reach what took the teacher 20 guided
steps (40 DiT evaluations), and the guidance is baked in, so each step is ONE batch-1 evaluation.

Two phases, both resumable, driven by ``kinema train reflow``:

1. ``RUN/pairs/{bucket}_{k:05d}.safetensors``: ``noise`` and ``latents`` ``(n, c, f, h, w)``
   (normalised latents) with the prompts in the metadata. A shard that exists is kept.
2. training with the usual checkpoints (``RUN/checkpoints/step_*``), exported to ``RUN/final/dit``
   (``config.json`` + ``model.safetensors``, the EMA weights); ``kinema export --fast-dit`` ships it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from kinema.checkpoint import load_component, save_component
from kinema.config import load_config, save_config
from kinema.data.manifest import read_manifest
from kinema.dit import DiT, DiTConfig
from kinema.errors import InvalidInputError
from kinema.flow import euler, get_schedule, guided_velocity_fn
from kinema.text import TextEmbedding
from kinema.train.checkpointing import export_state, latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from kinema.train.common import RunLog
from kinema.train.config import EMAConfig, OptimConfig, ScheduleConfig
from kinema.train.distributed import DistInfo
from kinema.train.optim import EMA, build_optimizer, build_scheduler

log = logging.getLogger(__name__)


@dataclass
class ReflowBucket:
    """One clip shape the student learns, with its share of the teacher pairs."""

    width: int = 64
    height: int = 64
    frames: int = 33
    pairs: int = 256


@dataclass
class ReflowConfig:
    """Teacher pairs, then student training (see the module docstring)."""

    buckets: list[ReflowBucket] = field(default_factory=lambda: [ReflowBucket()])
    pair_batch: int = 16  # teacher samples per batched sampling run
    teacher_steps: int | None = None  # None = the pipeline's default steps
    teacher_guidance: float | None = None  # None = the pipeline's default guidance
    batch_size: int = 16
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4, weight_decay=0.0))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(total_steps=1500, warmup_steps=50, min_lr_ratio=0.2))
    ema: EMAConfig = field(default_factory=lambda: EMAConfig(decay=0.995))
    student_steps: int = 8  # the Euler steps the student is shipped with
    times: Literal["uniform", "schedule"] = "uniform"  # training times: shifted uniform, or only the student's schedule times
    init_student: str | None = None  # a DiT folder to start from (continue a student) instead of the teacher's weights
    checkpoint_every: int = 250
    keep_last: int = 2
    log_every: int = 50
    seed: int = 0

    def validate(self) -> None:
        if not self.buckets:
            raise InvalidInputError("reflow needs at least one bucket (buckets: [{width, height, frames, pairs}])")
        for b in self.buckets:
            if b.pairs < 1 or b.width < 1 or b.height < 1 or b.frames < 1:
                raise InvalidInputError(f"reflow bucket {b} invalid: width, height, frames and pairs must be >= 1")
        if not 1 <= self.student_steps <= 64:
            raise InvalidInputError(f"student_steps={self.student_steps} invalid; allowed 1..64")
        if self.times not in ("uniform", "schedule"):
            raise InvalidInputError(f"times={self.times!r} invalid; allowed: uniform, schedule")
        if self.batch_size < 1 or self.pair_batch < 1:
            raise InvalidInputError(f"batch_size={self.batch_size} and pair_batch={self.pair_batch} must be >= 1")


REFLOW_PRESETS: dict[str, ReflowConfig] = {
    "tiny": ReflowConfig(
        buckets=[ReflowBucket(32, 32, 9, 8)], pair_batch=4, teacher_steps=4, batch_size=4,
        schedule=ScheduleConfig(total_steps=6, warmup_steps=1), student_steps=2, checkpoint_every=3, log_every=2,
    ),
    # The shipped kinema-world student: the default 2 s 64x64 clip dominates, every other size and
    # duration the base model serves is present so the student serves them too.
    "default": ReflowConfig(
        buckets=[
            ReflowBucket(64, 64, 33, 1536), ReflowBucket(64, 64, 17, 384), ReflowBucket(64, 64, 65, 256),
            ReflowBucket(96, 64, 33, 384), ReflowBucket(64, 96, 33, 384),
        ],
    ),
}


def bucket_name(b: ReflowBucket) -> str:
    return f"{b.width}x{b.height}x{b.frames}"


# ---------------------------------------------------------------------------------------- pairs
def make_pairs(pipe: Any, cfg: ReflowConfig, prompts: list[str], out: Path) -> list[Path]:
    """Sample the teacher on ``prompts`` (cycled) for every bucket; returns the shard paths.

    Prompts are shuffled with ``cfg.seed``; shard ``k`` of a bucket uses its own noise seed, so a
    re-run makes the same shards and skips those already written.
    """
    if not prompts:
        raise InvalidInputError("reflow needs prompts: the manifest has no captions")
    out.mkdir(parents=True, exist_ok=True)
    order = list(prompts)
    random.Random(cfg.seed).shuffle(order)
    steps = cfg.teacher_steps or pipe.config.steps
    guidance = pipe.config.guidance if cfg.teacher_guidance is None else cfg.teacher_guidance
    negative = pipe.text_encoder.encode([pipe.config.negative_prompt])
    shards: list[Path] = []
    cursor = 0
    for bi, bucket in enumerate(cfg.buckets):
        pipe.validate("x", bucket.width, bucket.height, bucket.frames, pipe.config.default_fps, steps, guidance, "euler")
        shape = pipe.vae.latent_shape(bucket.frames, bucket.height, bucket.width)  # (c, f, h, w)
        shift = pipe.sampling_shift(pipe.dit.num_tokens(*shape[1:]))
        n_shards = math.ceil(bucket.pairs / cfg.pair_batch)
        bar = tqdm(range(n_shards), desc=f"teacher pairs {bucket_name(bucket)}", unit="shard")
        for k in bar:
            n = min(cfg.pair_batch, bucket.pairs - k * cfg.pair_batch)
            batch_prompts = [order[(cursor + j) % len(order)] for j in range(n)]
            cursor += n
            path = out / f"{bucket_name(bucket)}_{k:05d}.safetensors"
            shards.append(path)
            if path.is_file():
                continue
            generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + bi * 10_007 + k)
            noise = torch.randn((n, *shape), generator=generator)  # (n, c, f, h, w)
            text = pipe.text_encoder.encode(batch_prompts)
            with torch.no_grad():
                velocity = guided_velocity_fn(pipe.dit, text, negative, guidance)
                latents = euler(velocity, noise, get_schedule(steps, shift=shift))  # (n, c, f, h, w)
            tmp = path.with_suffix(".tmp")
            save_file({"noise": noise.contiguous(), "latents": latents.contiguous()}, str(tmp),
                      metadata={"prompts": json.dumps(batch_prompts), "shift": f"{shift}", "steps": f"{steps}", "guidance": f"{guidance}"})
            tmp.replace(path)
    return shards


@dataclass
class PairSet:
    """All teacher pairs of one bucket: ``noise``/``latents`` ``(n, c, f, h, w)`` and ``prompts``."""

    noise: torch.Tensor
    latents: torch.Tensor
    prompts: list[str]


def load_pairs(shards: list[Path]) -> dict[tuple[int, ...], PairSet]:
    """Shards grouped by latent shape ``(c, f, h, w)``."""
    groups: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor, list[str]]]] = {}
    for path in shards:
        with safe_open(str(path), framework="pt") as f:
            noise, latents = f.get_tensor("noise"), f.get_tensor("latents")
            prompts = json.loads((f.metadata() or {})["prompts"])
        groups.setdefault(tuple(noise.shape[1:]), []).append((noise, latents, prompts))
    return {
        shape: PairSet(torch.cat([g[0] for g in items]), torch.cat([g[1] for g in items]), [p for g in items for p in g[2]])
        for shape, items in groups.items()
    }


# ---------------------------------------------------------------------------------------- training
def reflow_loss(student: DiT, noise: torch.Tensor, latents: torch.Tensor, t: torch.Tensor, text: TextEmbedding) -> torch.Tensor:
    """MSE between the student's velocity at ``x_t = (1 - t) x0 + t z`` and the straight ``z - x0``.

    ``noise``/``latents`` ``(b, c, f, h, w)``, ``t`` ``(b,)`` in (0, 1).
    """
    tb = t[:, None, None, None, None]
    x_t = (1.0 - tb) * latents + tb * noise
    v = student(x_t, t, text.states, text.mask)
    return torch.mean((v - (noise - latents)) ** 2)


def student_times(n: int, shift: torch.Tensor, generator: torch.Generator, steps: int | None = None) -> torch.Tensor:
    """``(n,)`` training times: uniform, warped by the sampling ``shift`` like the schedule; with
    ``steps``, only the times an Euler run of that many steps visits (``get_schedule(steps, shift)[:-1]``)."""
    if steps is not None:
        grid = get_schedule(steps, shift=float(shift))[:-1]  # (steps,)
        return grid[torch.randint(0, steps, (n,), generator=generator)].float()
    u = torch.rand(n, generator=generator).clamp(1e-3, 1 - 1e-3)
    return shift * u / (1.0 + (shift - 1.0) * u)


def train_student(pipe: Any, cfg: ReflowConfig, pairs: dict[tuple[int, ...], PairSet], out: Path, *,
                  resume: bool = True, stop_after: int | None = None) -> Path:
    """Train the student from the teacher's weights; returns ``out/final`` once ``total_steps`` are done."""
    torch.manual_seed(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.init_student is not None:
        student = load_component(DiT, DiTConfig, cfg.init_student)
        if student.config != pipe.dit.config:
            raise InvalidInputError(f"init_student '{cfg.init_student}' is not shaped like the teacher's DiT")
    else:
        student = DiT(pipe.dit.config)
        student.load_state_dict(pipe.dit.state_dict())
    student.train()
    optimizer = build_optimizer(student, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule)
    ema = EMA(student, cfg.ema) if cfg.ema.enabled else None
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), mode="none")
    generator = torch.Generator().manual_seed(cfg.seed)
    step = 0
    ckpt = latest_checkpoint(out) if resume else None
    if ckpt is not None:
        trainer_state, rank_state = load_checkpoint(ckpt, model=student, optimizer=optimizer, ema=ema, info=info)
        step = int(trainer_state["step"])
        scheduler.load_state_dict(trainer_state["scheduler"])
        set_rng_state(rank_state["rng"], generator)
    total = cfg.schedule.total_steps
    end = total if stop_after is None else min(total, step + stop_after)
    run_log = RunLog(out, info, total, step, progress=True)
    if ckpt is not None:
        log.info("resumed reflow training from %s (step %d)", ckpt, step)

    shapes = sorted(pairs)
    weights = np.array([len(pairs[s].prompts) for s in shapes], dtype=np.float64)
    shifts = {s: pipe.sampling_shift(pipe.dit.num_tokens(*s[1:])) for s in shapes}
    prompts = sorted({p for s in shapes for p in pairs[s].prompts})
    log.info("encoding %d distinct prompts", len(prompts))
    states = {p: e for p, e in zip(prompts, _encode_each(pipe, prompts))}

    t0, running = time.perf_counter(), 0.0
    while step < end:
        pick = torch.multinomial(torch.from_numpy(weights), 1, generator=generator).item()
        group = pairs[shapes[int(pick)]]
        idx = torch.randint(0, len(group.prompts), (cfg.batch_size,), generator=generator)
        text = TextEmbedding.cat([states[group.prompts[int(i)]] for i in idx])
        t = student_times(cfg.batch_size, torch.tensor(shifts[shapes[int(pick)]]), generator,
                          cfg.student_steps if cfg.times == "schedule" else None)
        loss = reflow_loss(student, group.noise[idx], group.latents[idx], t, text)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        scheduler.step()
        step += 1
        if ema is not None:
            ema.update(student, step)
        running += loss.item()
        run_log.step({"loss": loss.item(), "lr": scheduler.get_last_lr()[0]})
        if step % cfg.log_every == 0:
            run_log.write({"step": step, "loss": running / cfg.log_every, "lr": scheduler.get_last_lr()[0],
                           "steps_per_s": cfg.log_every / (time.perf_counter() - t0)})
            t0, running = time.perf_counter(), 0.0
        if step % cfg.checkpoint_every == 0 or step == end:
            save_checkpoint(out, step, model=student, optimizer=optimizer, ema=ema,
                            trainer_state={"step": step, "scheduler": scheduler.state_dict()},
                            rank_state={"rng": rng_state(generator)}, info=info, keep_last=cfg.keep_last)
    run_log.close()
    final = out / "final"
    if step >= total:
        student.load_state_dict(export_state(student, ema))
        save_component(student.eval(), final / "dit", dtype="float32")
        (final / "reflow.json").write_text(json.dumps({"student_steps": cfg.student_steps, "teacher": pipe.name}, indent=2) + "\n")
        log.info("student written to %s (use: kinema export --fast-dit %s)", final / "dit", final / "dit")
    return final


def _encode_each(pipe: Any, prompts: list[str]) -> list[TextEmbedding]:
    """One unpadded ``TextEmbedding`` per prompt (batched through the encoder 64 at a time)."""
    out: list[TextEmbedding] = []
    for i in range(0, len(prompts), 64):
        emb = pipe.text_encoder.encode(prompts[i : i + 64])
        for j in range(emb.batch_size):
            n = int(emb.mask[j].sum())
            out.append(TextEmbedding.from_unpadded([emb.states[j, :n]]))
    return out


# ---------------------------------------------------------------------------------------- command
def read_prompts(path: Path) -> list[str]:
    """Prompts from a ``.txt`` file (one per line) or the captions of a CSV/JSONL manifest."""
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise InvalidInputError(f"prompt file not found: '{path}'")
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [e.caption for e in read_manifest(path).entries if e.caption]


def run(args: argparse.Namespace) -> int:
    """Entry point of ``kinema train reflow`` (parser in :mod:`kinema.train.cli`)."""
    from kinema.pipeline import KinemaPipeline

    if args.preset not in REFLOW_PRESETS:
        raise InvalidInputError(f"--preset {args.preset!r} unknown; allowed: {sorted(REFLOW_PRESETS)}")
    cfg = load_config(ReflowConfig, args.config, list(getattr(args, "overrides", [])), base=replace(REFLOW_PRESETS[args.preset]))
    cfg.validate()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    pipe = KinemaPipeline.from_pretrained(args.model)
    prompts = read_prompts(Path(args.data))
    shards = make_pairs(pipe, cfg, prompts, out / "pairs")
    if args.pairs_only:
        print(f"{len(shards)} teacher pair shards in {out / 'pairs'}")
        return 0
    final = train_student(pipe, cfg, load_pairs(shards), out, stop_after=args.stop_after)
    print(f"student: {final / 'dit'}" if (final / "dit").is_dir() else f"stopped; resume with the same command ({out})")
    return 0
