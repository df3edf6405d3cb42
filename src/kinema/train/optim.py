"""Optimiser, learning-rate schedule and EMA.

- AdamW with weight decay on matrices/kernels only (``p.ndim >= 2``); biases, norms and embeddings
  of one dimension are not decayed.
- Warmup + cosine: ``lr(s) = lr * s / warmup`` for ``s < warmup``, then
  ``lr * (m + (1 - m) * (1 + cos(pi * p)) / 2)`` with ``p = (s - warmup) / (total - warmup)``
  clamped to 1 and ``m = min_lr_ratio``. A picklable object, so the scheduler's state round-trips.
- EMA of the parameters in float32, decay warmed up as ``min(decay, (1 + s) / (10 + s))``; works on
  plain tensors and on FSDP2 ``DTensor`` shards alike (each rank keeps the EMA of its shard).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

from kinema.errors import InvalidInputError
from kinema.train.config import EMAConfig, OptimConfig, ScheduleConfig


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over ``model``'s trainable parameters, two groups (decay / no decay)."""
    if cfg.lr <= 0 or cfg.grad_accum < 1:
        raise InvalidInputError(f"optim.lr={cfg.lr} and optim.grad_accum={cfg.grad_accum} invalid; allowed: lr > 0, grad_accum >= 1")
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, foreach=True)


class WarmupCosine:
    """LR multiplier of step ``s`` (see the module doc); use with ``LambdaLR``."""

    def __init__(self, cfg: ScheduleConfig) -> None:
        if cfg.total_steps < 1 or not 0 <= cfg.warmup_steps <= cfg.total_steps or not 0 <= cfg.min_lr_ratio <= 1:
            raise InvalidInputError(
                f"schedule total_steps={cfg.total_steps}, warmup_steps={cfg.warmup_steps}, min_lr_ratio={cfg.min_lr_ratio} "
                "invalid; allowed: total_steps >= 1, 0 <= warmup_steps <= total_steps, 0 <= min_lr_ratio <= 1"
            )
        self.total, self.warmup, self.min_ratio = cfg.total_steps, cfg.warmup_steps, cfg.min_lr_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(cfg))


class EMA:
    """Float32 shadow copy of ``model``'s parameters, keyed by parameter name."""

    def __init__(self, model: nn.Module, cfg: EMAConfig) -> None:
        self.cfg = cfg
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().float().clone() for name, p in model.named_parameters() if p.requires_grad
        }

    def decay_at(self, step: int) -> float:
        if step < self.cfg.start_step:
            return 0.0
        return min(self.cfg.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """``shadow = d * shadow + (1 - d) * param`` for the ``step`` just taken."""
        d = self.decay_at(step)
        for name, p in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(p.detach().float(), 1.0 - d)

    def named_full(self) -> Iterator[tuple[str, torch.Tensor]]:
        """``(name, full tensor on CPU)``; a collective under FSDP (call on every rank)."""
        for name, t in self.shadow.items():
            yield name, (t.full_tensor() if isinstance(t, DTensor) else t).detach().cpu()

    def full_state(self) -> dict[str, torch.Tensor]:
        return dict(self.named_full())

    @torch.no_grad()
    def load_full_state(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`full_state`; each rank keeps its own shard under FSDP."""
        missing = sorted(set(self.shadow) - set(state))
        unexpected = sorted(set(state) - set(self.shadow))
        if missing or unexpected:
            raise InvalidInputError(f"EMA state does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
        for name, t in self.shadow.items():
            full = state[name].float()
            if isinstance(t, DTensor):
                local = distribute_tensor(full.to(t.device), t.device_mesh, t.placements, src_data_rank=None)
                t.copy_(local)
            else:
                t.copy_(full)
