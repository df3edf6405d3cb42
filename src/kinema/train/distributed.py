"""Data parallelism in one small helper: process group from torchrun's env, DDP or FSDP2 wrapping.

``torchrun --nproc_per_node N -m kinema train ... --parallel ddp|fsdp`` sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address; this module reads them, picks NCCL on
GPUs and gloo on CPU, wraps the model, and offers rank-0 helpers. Without torchrun it is a
single-process no-op (``world_size == 1``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method
from torch.nn.parallel import DistributedDataParallel

from kinema.errors import InvalidInputError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    mode: str  # "none" | "ddp" | "fsdp"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return dist.is_available() and dist.is_initialized()


def init_distributed(mode: str, device: str = "auto", backend: str = "auto") -> DistInfo:
    """Join the torchrun process group (if launched by torchrun) and pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if mode != "none" and world_size == 1 and "RANK" not in os.environ:
        mode = "none"  # one process: nothing to parallelise (a plain `kinema train --parallel ddp` still runs)
    if world_size > 1 and mode == "none":
        raise InvalidInputError(f"launched with WORLD_SIZE={world_size} but parallel.mode='none'; use --parallel.mode=ddp or fsdp")
    if mode != "none" and not dist.is_initialized():
        chosen = ("nccl" if use_cuda else "gloo") if backend == "auto" else backend
        dist.init_process_group(backend=chosen, device_id=dev if use_cuda else None)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, mode=mode)


def wrap_model(model: nn.Module, info: DistInfo, shard_units: list[nn.Module] | None = None) -> nn.Module:
    """DDP-wrap, or FSDP2-shard ``shard_units`` (e.g. transformer blocks) and then the root.

    FSDP2 shards in place, so ``model`` itself (not a wrapper) is returned; DDP returns a wrapper
    whose ``.module`` is ``model``. Parameter names are unchanged under FSDP2.
    """
    if info.mode == "none":
        return model
    if info.mode == "ddp":
        ids = [info.device.index] if info.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    if info.mode == "fsdp":
        for unit in shard_units or []:
            fully_shard(unit)
        fully_shard(model)
        return model
    raise InvalidInputError(f"parallel mode {info.mode!r} unknown; allowed: none, ddp, fsdp")


def register_forward_method(module: nn.Module, name: str) -> None:
    """Let ``module.name(...)`` (called outside ``forward``) unshard FSDP2 parameters like forward."""
    if isinstance(module, FSDPModule):
        register_fsdp_forward_method(module, name)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


@contextlib.contextmanager
def gradient_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on non-final accumulation micro-batches (DDP ``no_sync`` / FSDP2)."""
    if enabled:
        yield
    elif isinstance(model, DistributedDataParallel):
        with model.no_sync():
            yield
    elif isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """Mean of a Python float over ranks (the value itself without a process group)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def cleanup(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
        dist.destroy_process_group()
