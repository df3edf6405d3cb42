"""Nested training state <-> one JSON file + one safetensors file (no pickles).

Optimizer, RNG and trainer states are trees of dicts (string keys), lists, tuples, numbers,
strings, ``None`` and tensors. :func:`split_tensors` replaces every tensor by ``{"__tensor__": KEY}``
(``KEY`` = the dotted path, e.g. ``state.blocks.0.attn.qkv.weight.exp_avg`` for an AdamW moment)
and every tuple by ``{"__tuple__": [...]}``, so the tree is plain JSON and the tensors go to
safetensors; :func:`join_tensors` inverts it exactly (dtypes, shapes and Python types included,
floats round-trip bit for bit through ``json``).

Files of a state called ``STEM``: ``STEM.json`` (always) and ``STEM.safetensors`` (also when it
holds no tensor, so a checkpoint has a fixed set of files).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from kinema.errors import InvalidInputError, ModelLoadError

TENSOR_TAG = "__tensor__"
TUPLE_TAG = "__tuple__"
_SCALARS = (bool, int, float, str, type(None))


def split_tensors(tree: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """``(json_tree, tensors)``: ``tree`` with tensors replaced by references into ``tensors`` (CPU, contiguous)."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            if path in tensors:
                raise InvalidInputError(f"state key {path!r} occurs twice (dotted names collide); rename one of them")
            tensors[path] = node.detach().cpu().contiguous()
            return {TENSOR_TAG: path}
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if not isinstance(key, str) or key in (TENSOR_TAG, TUPLE_TAG):
                    raise InvalidInputError(f"state key {key!r} at {path or '<root>'!r} invalid; allowed: strings other than "
                                            f"{TENSOR_TAG!r} and {TUPLE_TAG!r}")
                out[key] = walk(value, f"{path}.{key}" if path else key)
            return out
        if isinstance(node, (list, tuple)):
            items = [walk(v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(node)]
            return {TUPLE_TAG: items} if isinstance(node, tuple) else items
        if isinstance(node, _SCALARS):
            return node
        raise InvalidInputError(f"state value at {path or '<root>'!r} has type {type(node).__name__}; allowed: dict, list, "
                                "tuple, bool, int, float, str, None, torch.Tensor")

    return walk(tree, prefix), tensors


def join_tensors(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split_tensors`."""
    if isinstance(tree, dict):
        if set(tree) == {TENSOR_TAG}:
            key = tree[TENSOR_TAG]
            if key not in tensors:
                raise ModelLoadError(f"state refers to tensor {key!r}, which its safetensors file lacks")
            return tensors[key]
        if set(tree) == {TUPLE_TAG}:
            return tuple(join_tensors(v, tensors) for v in tree[TUPLE_TAG])
        return {k: join_tensors(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [join_tensors(v, tensors) for v in tree]
    return tree


def save_state(tree: Any, folder: str | Path, stem: str) -> list[Path]:
    """Write ``folder/stem.json`` and ``folder/stem.safetensors``; returns both paths."""
    folder = Path(folder)
    plain, tensors = split_tensors(tree)
    json_path, tensor_path = folder / f"{stem}.json", folder / f"{stem}.safetensors"
    json_path.write_text(json.dumps(plain, indent=1) + "\n")
    save_file(tensors, str(tensor_path))
    return [json_path, tensor_path]


def save_json_state(tree: Any, path: str | Path) -> Path:
    """Write a tensor-free state as JSON (tuples tagged like :func:`split_tensors`)."""
    plain, tensors = split_tensors(tree)
    if tensors:
        raise InvalidInputError(f"{Path(path).name}: JSON-only state holds tensors {sorted(tensors)[:5]}; use save_state")
    Path(path).write_text(json.dumps(plain, indent=2) + "\n")
    return Path(path)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise ModelLoadError(f"checkpoint file '{path}' is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"checkpoint file '{path}' is not valid JSON: {e}") from e


def load_json_state(path: str | Path) -> Any:
    """Read what :func:`save_json_state` wrote."""
    return join_tensors(_read_json(Path(path)), {})


def load_state(folder: str | Path, stem: str) -> Any:
    """Read what :func:`save_state` wrote."""
    folder = Path(folder)
    tensor_path = folder / f"{stem}.safetensors"
    if not tensor_path.is_file():
        raise ModelLoadError(f"checkpoint file '{tensor_path}' is missing")
    return join_tensors(_read_json(folder / f"{stem}.json"), load_file(str(tensor_path)))
