"""Component checkpoints: a folder per component with ``config.json`` + ``model.safetensors``.

No pickles. ``config.json`` holds the component's dataclass config plus a ``_kinema`` header
(component class name, format version, stored dtype). Loading builds the module on the meta device,
then loads the weights and reports missing and unexpected keys by name (an error unless
``strict=False``, when they are logged).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from kinema.config import config_to_dict, from_dict
from kinema.errors import InvalidInputError, ModelLoadError

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
M = TypeVar("M", bound=nn.Module)
C = TypeVar("C")

_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def save_component(model: nn.Module, folder: str | Path, *, dtype: str = "float32", extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (which must have a dataclass ``.config``) to ``folder`` atomically.

    ``dtype`` is the storage dtype of floating-point weights ("float32", "float16", "bfloat16").
    """
    if dtype not in _DTYPES:
        raise InvalidInputError(f"checkpoint dtype '{dtype}' not supported; use one of {sorted(_DTYPES)}")
    config = getattr(model, "config", None)
    if config is None:
        raise InvalidInputError(f"{type(model).__name__} has no .config dataclass; cannot save it as a component")
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        state[k] = (v.to(_DTYPES[dtype]) if v.is_floating_point() else v).contiguous()
    header = {"class": type(model).__name__, "format": FORMAT_VERSION, "dtype": dtype, **(extra or {})}
    payload = {"_kinema": header, **config_to_dict(config)}
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        (tmp / CONFIG_NAME).write_text(json.dumps(payload, indent=2) + "\n")
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "kinema_class": header["class"]})
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def read_json_config(cls: type[C], path: str | Path) -> C:
    """Read a JSON file into dataclass ``cls``; ``ModelLoadError`` names the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"missing '{path}'")
    try:
        return from_dict(cls, json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, InvalidInputError) as e:
        raise ModelLoadError(f"cannot read '{path}': {e}") from e


def read_component_config(config_cls: type, folder: str | Path, expected_class: str | None = None) -> tuple[Any, dict[str, Any]]:
    """Read ``folder/config.json`` into ``config_cls``; returns (config, header).

    ``expected_class`` (a model class name) is checked against the header before the config is parsed.
    """
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise ModelLoadError(f"'{folder}' is not a Kinema component folder: missing {CONFIG_NAME}")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"cannot read '{path}': {e}") from e
    header = data.pop("_kinema", {})
    stored = header.get("class")
    if expected_class and stored and stored != expected_class:
        raise ModelLoadError(f"'{folder}' holds a {stored}, not a {expected_class}")
    try:
        config = from_dict(config_cls, data)
    except InvalidInputError as e:
        raise ModelLoadError(f"'{path}' does not hold a valid {config_cls.__name__}: {e}") from e
    return config, header


META_INIT_BYTES = 256 * 2**20  # components with larger weight files are built on the meta device


def load_component(model_cls: type[M], config_cls: type, folder: str | Path, *, strict: bool = True, device: str | torch.device = "cpu") -> M:
    """Build ``model_cls(config)`` from ``folder`` and load its weights in float32.

    Missing or unexpected keys raise ``ModelLoadError`` naming them (``strict=False`` logs them).
    """
    folder = Path(folder)
    config, _ = read_component_config(config_cls, folder, expected_class=model_cls.__name__)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelLoadError(f"'{folder}' has no {WEIGHTS_NAME}")
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ModelLoadError(f"cannot read weights '{weights}': {e}") from e
    if weights.stat().st_size > META_INIT_BYTES:
        with torch.device("meta"):  # skip initialising weights that are overwritten next
            model = model_cls(config)
    else:
        # Small models initialise in milliseconds; the meta-device context would instead import
        # torch._dynamo (about 1 s on a 2-core CPU), which dominated `kinema generate`'s load time.
        model = model_cls(config)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        msg = f"'{weights}' does not match {model_cls.__name__}: missing keys {missing[:10]}{'...' if len(missing) > 10 else ''}, unexpected keys {unexpected[:10]}{'...' if len(unexpected) > 10 else ''}"
        if strict:
            raise ModelLoadError(msg)
        log.warning(msg)
    bad_shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if bad_shapes:
        raise ModelLoadError(f"'{weights}' has wrong shapes for {bad_shapes[:10]} (config and weights disagree)")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    model.load_state_dict(state, strict=False, assign=True)
    # Buffers that are not persisted (e.g. RoPE caches) stay on meta; rebuild them on the target device.
    model = _materialize_non_persistent(model, model_cls, config, device)
    model.eval()
    return model


def _materialize_non_persistent(model: M, model_cls: type[M], config: Any, device: str | torch.device) -> M:
    leftovers = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if not leftovers:
        return model
    fresh = model_cls(config).to(device)
    fresh.load_state_dict({k: v for k, v in model.state_dict().items() if not v.is_meta}, strict=False)
    return fresh
