"""Every YAML in configs/ loads into its typed config (a renamed or misspelt key fails here, not mid-run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kinema.config import load_config
from kinema.train.config import DIT_TRAIN_PRESETS, REFINER_TRAIN_PRESETS, VAE_TRAIN_PRESETS
from kinema.train.reflow import REFLOW_PRESETS

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
KINDS = {"vae": VAE_TRAIN_PRESETS, "dit": DIT_TRAIN_PRESETS, "refiner": REFINER_TRAIN_PRESETS, "reflow": REFLOW_PRESETS}


def test_there_are_configs_of_every_kind() -> None:
    assert {p.name.split("_")[0] for p in CONFIGS} == set(KINDS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads(path: Path) -> None:
    presets = KINDS[path.name.split("_")[0]]
    base = presets["world"] if "world" in presets else next(iter(presets.values()))
    cfg = load_config(type(base), path, base=base)
    assert type(cfg) is type(base)
    if path.name == "dit_default_foreground.yaml":
        assert (cfg.foreground_weight, cfg.foreground_threshold) == (4.0, 0.8)


def test_a_misspelt_key_fails(tmp_path: Path) -> None:
    bad = tmp_path / "dit_bad.yaml"
    bad.write_text("foreground_wieght: 4.0\n")
    with pytest.raises(Exception, match="foreground_wieght"):
        load_config(type(DIT_TRAIN_PRESETS["world"]), bad, base=DIT_TRAIN_PRESETS["world"])
