"""Refiner training: conditioning, CLI run + export, exact resume, pickle-free checkpoints, errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from kinema.checkpoint import load_component
from kinema.config import load_config
from kinema.data import Bucket, write_synthetic_dataset
from kinema.dit import DiT, DiTConfig
from kinema.errors import InvalidInputError
from kinema.refine import RefinerConfig, area_downsample, guide_latents, load_refiner
from kinema.train.cli import main
from kinema.train.config import REFINER_TRAIN_PRESETS, CheckpointConfig, DataConfig, RefinerTrainConfig, ScheduleConfig
from kinema.train.dit_trainer import LatentSource, train_dit
from kinema.train.refiner_trainer import refiner_conditioning, train_refiner
from kinema.vae import VAE_PRESETS, CausalVAE, VAEConfig

from test_train_loops import assert_no_pickles

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("refiner_media"), videos=3, images=2, frames=10, height=32, width=32)


@pytest.mark.parametrize("guide", ["pixel", "latent"])
def test_conditioning_gives_every_frame_a_guide(guide: str) -> None:
    cfg = replace(REFINER_TRAIN_PRESETS["tiny"], refiner=RefinerConfig(guide=guide, noise_augmentation=0.0))
    latents = LatentSource(cfg, torch.device("cpu"), None, None)
    condition = refiner_conditioning(cfg, latents, cfg.data.buckets)
    video = torch.rand(2, 3, 5, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x0 = latents({"video": video}, torch.Generator().manual_seed(1))  # (2, 4, 3, 8, 8)
    cond = condition(x0, {"video": video}, torch.Generator().manual_seed(2), torch.Generator())
    assert cond.cond_latents is not None and cond.cond_latents.shape == x0.shape
    assert torch.equal(cond.cond_mask, torch.ones(2, 3)) and torch.equal(cond.loss_weight, torch.ones(2, 3))
    assert torch.equal(cond.cond_latents, guide_latents(latents.vae, area_downsample(video, 2), cfg.refiner))
    augmented = refiner_conditioning(replace(cfg, refiner=RefinerConfig(guide=guide, noise_augmentation=0.2)), latents, cfg.data.buckets)
    noisy = augmented(x0, {"video": video}, torch.Generator().manual_seed(2), torch.Generator()).cond_latents
    eps = (noisy - 0.8 * cond.cond_latents) / 0.2  # the augmentation noise, recovered
    assert 0.9 < float(eps.std()) < 1.1 and abs(float(eps.mean())) < 0.1


def test_buckets_must_fit_the_guide() -> None:
    cfg = replace(REFINER_TRAIN_PRESETS["tiny"], refiner=RefinerConfig(guide="latent"))
    latents = LatentSource(cfg, torch.device("cpu"), None, None)
    with pytest.raises(InvalidInputError, match="multiple of 4"):  # 36 / 2 = 18: fine for pixels (36 % 4 == 0), not for latents (18 % 4)
        refiner_conditioning(cfg, latents, [Bucket(5, 36, 36, 1)])
    with pytest.raises(InvalidInputError, match="scale_factor"):
        refiner_conditioning(cfg, latents, [Bucket(5, 20, 21, 1)])
    refiner_conditioning(replace(cfg, refiner=RefinerConfig(guide="pixel")), latents, [Bucket(5, 36, 36, 1)])
    with pytest.raises(InvalidInputError, match="noise_augmentation"):
        RefinerConfig(noise_augmentation=1.0)
    with pytest.raises(InvalidInputError, match="guide"):
        load_config(RefinerTrainConfig, CONFIGS / "refiner_tiny.yaml", ["--refiner.guide=nearest"])


def test_cli_trains_exports_and_resumes_exactly(tmp_path: Path, manifest: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--config", str(CONFIGS / "refiner_tiny.yaml"), "--data", str(manifest), "--schedule.total_steps=6",
              "--checkpoint.every=3", "--checkpoint.keep_last=3", "--optim.grad_accum=2"]
    assert main(["train", "refiner", *common, "--out", str(tmp_path / "a")]) == 0
    assert "step 6: loss" in capsys.readouterr().out
    assert main(["train", "refiner", *common, "--out", str(tmp_path / "b"), "--stop-after", "3"]) == 0
    assert main(["train", "refiner", *common, "--out", str(tmp_path / "b"), "--resume"]) == 0
    a, b = (tmp_path / k / "checkpoints" / "step_00000006" for k in ("a", "b"))
    for name in ("model.safetensors", "ema.safetensors", "optimizer.safetensors", "rng_rank0.safetensors"):
        x, y = load_file(str(a / name)), load_file(str(b / name))
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), name
    trainer = json.loads((a / "trainer.json").read_text())
    assert trainer["kind"] == "refiner" and trainer["position"] == 12 and trainer["world_size"] == 1
    assert_no_pickles(a)

    final = tmp_path / "a" / "final"
    assert sorted(p.name for p in final.iterdir()) == ["refiner", "refiner.json", "text", "vae"]
    refiner, rc = load_refiner(final)
    assert rc == RefinerConfig(scale_factor=2, guide="pixel", noise_augmentation=0.1)
    assert refiner.config == load_component(DiT, DiTConfig, final / "refiner").config
    load_component(CausalVAE, VAEConfig, final / "vae")
    saved = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert saved["refiner"]["guide"] == "pixel" and saved["data"]["buckets"][0]["height"] == 32


def test_refiner_loss_decreases_and_kinds_do_not_mix(tmp_path: Path, manifest: Path) -> None:
    cfg = replace(REFINER_TRAIN_PRESETS["tiny"], schedule=ScheduleConfig(total_steps=60, warmup_steps=5), caption_dropout=0.0,
                  sample_posterior=False, refiner=RefinerConfig(noise_augmentation=0.0),
                  data=DataConfig(buckets=[Bucket(5, 32, 32, 2)]), checkpoint=CheckpointConfig(every=30, keep_last=1))
    result = train_refiner(cfg, str(manifest), tmp_path / "run")
    assert sum(result.losses[-10:]) / 10 < 0.7 * sum(result.losses[:5]) / 5, result.losses
    from kinema.train.config import DIT_TRAIN_PRESETS

    dit_cfg = replace(DIT_TRAIN_PRESETS["tiny"], data=DataConfig(buckets=[Bucket(5, 32, 32, 2)]), schedule=ScheduleConfig(total_steps=90, warmup_steps=2))
    with pytest.raises(InvalidInputError, match="'refiner' run"):
        train_dit(dit_cfg, str(manifest), tmp_path / "run", resume="latest")


def test_latent_cache_is_refused(tmp_path: Path) -> None:
    cfg = replace(REFINER_TRAIN_PRESETS["tiny"], data=replace(REFINER_TRAIN_PRESETS["tiny"].data, latent_cache=str(tmp_path)))
    with pytest.raises(InvalidInputError, match="needs pixels"):
        train_refiner(cfg, "world:train", tmp_path / "run")


def test_world_refiner_config_loads() -> None:
    cfg = load_config(RefinerTrainConfig, CONFIGS / "refiner_world.yaml", base=REFINER_TRAIN_PRESETS["world"])
    assert cfg.data.buckets[0].height == 128 and cfg.refiner.scale_factor == 2 and cfg.model.in_channels == VAE_PRESETS["small"].latent_channels
    assert cfg == REFINER_TRAIN_PRESETS["world"]
    assert load_config(RefinerTrainConfig, CONFIGS / "refiner_tiny.yaml", base=REFINER_TRAIN_PRESETS["tiny"]) == REFINER_TRAIN_PRESETS["tiny"]
