"""Training checkpoints: atomic, keep-last-N, and an exact resume.

Layout of ``RUN/checkpoints/step_00000600/``::

    model.safetensors      full (unsharded) float32 weights, names without DDP's "module."
    ema.safetensors        full EMA weights (absent when EMA is off)
    optimizer.safetensors  full optimizer state tensors keyed ``state.{parameter name}.{exp_avg|exp_avg_sq|step}``
    optimizer.json         param_groups (hyper-parameters, parameter names) and the non-tensor state
    trainer.json           step, data position, scheduler state, anything the trainer adds, world_size
    rng_rank{r}.safetensors  per-rank torch CPU/CUDA and generator states (uint8 tensors)
    rng_rank{r}.json       per-rank python and numpy RNG states, per-rank counters

No pickles: every file is JSON or safetensors (:mod:`kinema.train.statefiles` splits nested state
into the two and joins it back exactly).

Writing is atomic: every rank writes into ``.tmp-step_...``, then rank 0 renames it to its final
name (``os.replace``) and deletes the oldest checkpoints beyond ``keep_last``; a crash mid-write
leaves only a temp folder, which the next save removes. Gathering full state dicts is a collective
under FSDP, so :func:`save_checkpoint` and :func:`load_checkpoint` must be called on every rank.
"""

from __future__ import annotations

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
from kinema.train.statefiles import load_json_state, load_state, save_json_state, save_state

CHECKPOINT_DIR = "checkpoints"
_STEP_RE = re.compile(r"^step_(\d{8})$")
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def rng_state(generator: torch.Generator | None) -> dict[str, Any]:
    """Every RNG a training step may touch: python and numpy as lists/numbers (JSON), torch as uint8 tensors."""
    np_state = np.random.get_state(legacy=False)
    version, internal, gauss = random.getstate()
    return {
        "python": [version, list(internal), gauss],
        "numpy": {"key": [int(k) for k in np_state["state"]["key"]], "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": generator.get_state() if generator is not None else None,
    }


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": np.asarray(n["key"], dtype=np.uint32), "pos": n["pos"]},
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

    ``trainer_state`` (rank 0's; JSON-able values only) goes to ``trainer.json``; ``rank_state``
    (RNG states, per-rank counters) to ``rng_rank{r}.json`` + ``rng_rank{r}.safetensors``.
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
    save_state(rank_state, tmp, f"rng_rank{info.rank}")
    if info.is_main:
        save_file({k: v.contiguous() for k, v in model_state.items()}, str(tmp / "model.safetensors"))
        if ema_state is not None:
            save_file({k: v.contiguous() for k, v in ema_state.items()}, str(tmp / "ema.safetensors"))
        save_state(optim_state, tmp, "optimizer")
        save_json_state({**trainer_state, "world_size": info.world_size}, tmp / "trainer.json")
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
    rng_file = folder / f"rng_rank{info.rank}.json"
    if not rng_file.is_file():
        raise ModelLoadError(f"checkpoint '{folder}' has no {rng_file.name}: it was written by a run with fewer ranks than {info.world_size}")
    if (folder / f"rng_rank{info.world_size}.json").is_file():
        raise ModelLoadError(f"checkpoint '{folder}' was written by a run with more ranks than {info.world_size}")
    opts = StateDictOptions(full_state_dict=True, strict=True)
    set_model_state_dict(model, load_file(str(folder / "model.safetensors")), options=opts)
    optim_state = load_state(folder, "optimizer")
    set_optimizer_state_dict(model, optimizer, optim_state, options=opts)
    for group, saved in zip(optimizer.param_groups, optim_state["param_groups"]):  # torch's loader turns tuples
        group.update({k: v for k, v in saved.items() if isinstance(v, tuple)})  # (betas) into lists; keep the type
    if ema is not None:
        ema_file = folder / "ema.safetensors"
        if not ema_file.is_file():
            raise ModelLoadError(f"checkpoint '{folder}' has no ema.safetensors but the config enables EMA")
        ema.load_full_state(load_file(str(ema_file)))
    trainer_state = load_json_state(folder / "trainer.json")
    if trainer_state["world_size"] != info.world_size:
        raise ModelLoadError(f"checkpoint '{folder}' was written by {trainer_state['world_size']} ranks; this run has {info.world_size}")
    rank_state = load_state(folder, f"rng_rank{info.rank}")
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
