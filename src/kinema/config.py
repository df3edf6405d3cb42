"""Typed configuration: dataclasses, YAML files and dotted command-line overrides.

Every component owns its config dataclass beside its code (``kinema.vae.config.VAEConfig``,
``kinema.dit.config.DiTConfig``, ...) with named presets as data. This module turns them into and out
of plain dicts / YAML and applies overrides such as ``--optim.lr=3e-4`` with type checking, so a
typo or a wrong type fails with a message naming the key and the allowed keys.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from kinema.errors import InvalidInputError

T = TypeVar("T")


def config_to_dict(obj: Any) -> Any:
    """Recursively convert a dataclass (or containers of them) to JSON-able Python values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: config_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [config_to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): config_to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` (from YAML/JSON/CLI) to the annotated type ``tp``; raise naming ``where``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except InvalidInputError as e:
                errors.append(str(e))
        raise InvalidInputError(f"{where}: value {value!r} matches none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise InvalidInputError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise InvalidInputError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (tuple,):
        if not isinstance(value, (list, tuple)):
            raise InvalidInputError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise InvalidInputError(f"{where}: expected {len(args)} values, got {len(value)}: {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args or [Any] * len(value))))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise InvalidInputError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0] if args else Any, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise InvalidInputError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(k, kt, where): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise InvalidInputError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise InvalidInputError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise InvalidInputError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise InvalidInputError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise InvalidInputError(f"{where}: expected a string, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a dict, checking every key and type. Unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise InvalidInputError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)} for {cls.__name__}; "
            f"allowed: {', '.join(sorted(names))}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise InvalidInputError(f"{cls.__name__}: {e}") from e


def _parse_override_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` (a leading ``--`` is allowed) to a nested dict; values parse as YAML."""
    out = json.loads(json.dumps(data))
    for item in overrides:
        text = item[2:] if item.startswith("--") else item
        if "=" not in text:
            raise InvalidInputError(f"override '{item}' must look like --key.sub=value")
        key, raw = text.split("=", 1)
        parts = key.split(".")
        node = out
        for p in parts[:-1]:
            if p not in node or not isinstance(node[p], dict):
                if p in node and node[p] is None:
                    node[p] = {}
                else:
                    raise InvalidInputError(f"override '{item}': '{p}' is not a config section; sections: {sorted(k for k, v in node.items() if isinstance(v, dict))}")
            node = node[p]
        if parts[-1] not in node:
            raise InvalidInputError(f"override '{item}': unknown key '{key}'; allowed here: {sorted(node)}")
        node[parts[-1]] = _parse_override_value(raw)
    return out


def load_config(cls: type[T], yaml_path: str | Path | None = None, overrides: list[str] | None = None, base: T | None = None) -> T:
    """Load ``cls`` from defaults (or ``base``), then a YAML file, then dotted overrides."""
    data = config_to_dict(base if base is not None else cls())
    if yaml_path is not None:
        path = Path(yaml_path)
        if not path.is_file():
            raise InvalidInputError(f"config file not found: '{path}'")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise InvalidInputError(f"config file '{path}' must contain a mapping at the top level")
        data = _merge(data, loaded, str(path))
    data = apply_overrides(data, overrides or [])
    return from_dict(cls, data)


def _merge(base: dict[str, Any], new: dict[str, Any], where: str) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        if k not in out:
            raise InvalidInputError(f"{where}: unknown config key '{k}'; allowed: {sorted(out)}")
        out[k] = _merge(out[k], v, f"{where}:{k}") if isinstance(v, dict) and isinstance(out[k], dict) else v
    return out


def save_config(obj: Any, path: str | Path) -> Path:
    """Write a dataclass config as YAML (``.yaml``/``.yml``) or JSON (anything else)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = config_to_dict(obj)
    text = yaml.safe_dump(data, sort_keys=False) if path.suffix in (".yaml", ".yml") else json.dumps(data, indent=2) + "\n"
    path.write_text(text)
    return path
