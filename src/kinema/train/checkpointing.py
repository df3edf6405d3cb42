"""Training checkpoints: atomic, keep-last-N, and an exact resume.

Layout of ``RUN/checkpoints/step_00000600/``::

    model.safetensors      full (unsharded) float32 weights, names without DDP's "module."
    ema.safetensors        full EMA weights (absent when EMA is off)
    optimizer.pt           full optimizer state keyed by parameter name (torch.save, weights only)
    trainer.pt             step, data position, scheduler state, anything the trainer adds
    rng_rank{r}.pt         per-rank RNG states: python, numpy, torch CPU/CUDA, the trainer's generator
    trainer.json           human-readable summary

Writing is atomic: every rank writes into ``.tmp-step_...``, then rank 0 renames it to its final
name (``os.replace``) and deletes the oldest checkpoints beyond ``keep_last``; a crash mid-write
leaves only a temp folder, which the next save removes. Gathering full state dicts is a collective
under FSDP, so :func:`save_checkpoint` and :func:`load_checkpoint` must be called on every rank.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from kinema.errors import InvalidInputError, ModelLoadError
from kinema.train.distributed import DistInfo, barrier
from kinema.train.optim import EMA

CHECKPOINT_DIR = "checkpoints"
_STEP_RE = re.compile(r"^step_(\d{8})$")
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def rng_state(generator: torch.Generator | None) -> dict[str, Any]:
    """Every RNG a training step may touch, as tensors/lists (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state(legacy=False)
    version, internal, gauss = random.getstate()
    return {
        "python": [version, list(internal), gauss],
        "numpy": {"key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)), "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": generator.get_state() if generator is not None else None,
    }


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and state["generator"] is not None:
        generator.set_state(state["generator"])


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and _STEP_RE.match(p.name)), key=lambda p: p.name)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: EMA | None,
    trainer_state: dict[str, Any],
    rank_state: dict[str, Any],
    info: DistInfo,
    keep_last: int,
) -> Path:
    """Write checkpoint ``step`` atomically (collective: call on every rank); returns its folder.

    ``trainer_state`` (rank 0's) goes to ``trainer.pt``; ``rank_state`` (RNG states, per-rank
    counters) to ``rng_rank{r}.pt``.
    """
    if keep_last < 1:
        raise InvalidInputError(f"checkpoint.keep_last={keep_last} invalid; allowed: >= 1")
    root = Path(run_dir) / CHECKPOINT_DIR
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp-step_{step:08d}"
    model_state = get_model_state_dict(model, options=_FULL)  # collective under FSDP
    optim_state = get_optimizer_state_dict(model, optimizer, options=_FULL)
    ema_state = ema.full_state() if ema is not None else None
    if info.is_main:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-step_*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
    barrier(info)
    torch.save(rank_state, tmp / f"rng_rank{info.rank}.pt")
    if info.is_main:
        save_file({k: v.contiguous() for k, v in model_state.items()}, str(tmp / "model.safetensors"))
        if ema_state is not None:
            save_file({k: v.contiguous() for k, v in ema_state.items()}, str(tmp / "ema.safetensors"))
        torch.save(optim_state, tmp / "optimizer.pt")
        torch.save(trainer_state, tmp / "trainer.pt")
        summary = {k: v for k, v in trainer_state.items() if isinstance(v, (int, float, str, bool))}
        (tmp / "trainer.json").write_text(json.dumps({**summary, "world_size": info.world_size}, indent=2) + "\n")
    barrier(info)
    if info.is_main:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    barrier(info)
    return final


def load_checkpoint(
    folder: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: EMA | None,
    info: DistInfo,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore model, optimizer and EMA in place; returns ``(trainer_state, rank_state)``.

    Every rank reads the folder (it must be on storage all nodes see). The world size must match
    the run that wrote it, since per-rank RNG streams and data shards depend on it.
    """
    folder = Path(folder)
    if not (folder / "model.safetensors").is_file():
        raise ModelLoadError(f"'{folder}' is not a training checkpoint (no model.safetensors)")
    rng_file = folder / f"rng_rank{info.rank}.pt"
    if not rng_file.is_file():
        raise ModelLoadError(f"checkpoint '{folder}' has no {rng_file.name}: it was written by a run with fewer ranks than {info.world_size}")
    if (folder / f"rng_rank{info.world_size}.pt").is_file():
        raise ModelLoadError(f"checkpoint '{folder}' was written by a run with more ranks than {info.world_size}")
    opts = StateDictOptions(full_state_dict=True, strict=True)
    set_model_state_dict(model, load_file(str(folder / "model.safetensors")), options=opts)
    set_optimizer_state_dict(model, optimizer, torch.load(folder / "optimizer.pt", weights_only=True), options=opts)
    if ema is not None:
        ema_file = folder / "ema.safetensors"
        if not ema_file.is_file():
            raise ModelLoadError(f"checkpoint '{folder}' has no ema.safetensors but the config enables EMA")
        ema.load_full_state(load_file(str(ema_file)))
    trainer_state = torch.load(folder / "trainer.pt", weights_only=True)
    rank_state = torch.load(rng_file, weights_only=True)
    barrier(info)
    return trainer_state, rank_state


def export_state(model: nn.Module, ema: EMA | None) -> dict[str, torch.Tensor]:
    """Full CPU state dict for export: the EMA parameters (when on) plus the model's buffers.

    A collective under FSDP (call on every rank); with a process group only rank 0 gets the state
    (other ranks get an empty dict).
    """
    state = get_model_state_dict(model, options=_FULL)
    if ema is not None:
        averaged = ema.full_state()
        if not state:
            return {}
        unknown = sorted(set(averaged) - set(state))
        if unknown:
            raise ModelLoadError(f"EMA holds parameters the model lacks: {unknown[:5]}")
        state.update(averaged)
    return state
