"""Typed configs: YAML + dotted overrides with type checking and clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from kinema.config import apply_overrides, config_to_dict, from_dict, load_config, save_config
from kinema.errors import InvalidInputError


@dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)


@dataclass
class Run:
    name: str = "run"
    steps: int = 10
    sizes: list[tuple[int, int]] = field(default_factory=lambda: [(64, 64)])
    optim: Optim = field(default_factory=Optim)
    resume: str | None = None


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 20\noptim:\n  lr: 0.01\n")
    cfg = load_config(Run, path, ["--optim.lr=3e-4", "name=abc", "sizes=[[96, 64], [64, 96]]"])
    assert cfg == Run(name="abc", steps=20, sizes=[(96, 64), (64, 96)], optim=Optim(lr=3e-4))
    assert isinstance(cfg.optim.betas, tuple)


def test_round_trip_through_yaml(tmp_path):
    cfg = Run(name="x", optim=Optim(lr=0.5), resume="runs/a")
    path = save_config(cfg, tmp_path / "r.yaml")
    assert load_config(Run, path) == cfg
    assert from_dict(Run, config_to_dict(cfg)) == cfg


def test_errors_name_the_key_and_allowed_values(tmp_path):
    with pytest.raises(InvalidInputError, match=r"unknown key 'optim.lrr'.*\['betas', 'lr'\]"):
        load_config(Run, None, ["--optim.lrr=1"])
    with pytest.raises(InvalidInputError, match="steps: expected an integer, got 'many'"):
        load_config(Run, None, ["steps=many"])
    with pytest.raises(InvalidInputError, match="must look like"):
        apply_overrides({"a": 1}, ["--a"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("stepz: 3\n")
    with pytest.raises(InvalidInputError, match="unknown config key 'stepz'"):
        load_config(Run, bad)
    with pytest.raises(InvalidInputError, match="not found"):
        load_config(Run, tmp_path / "nope.yaml")
