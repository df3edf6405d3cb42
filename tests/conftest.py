"""Shared fixtures: a tiny random-weight pipeline saved to disk (real VAE, DiT and bundled MiniLM)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest
import torch

from kinema.dit import DIT_PRESETS, DiT
from kinema.pipeline import KinemaPipeline, PipelineConfig
from kinema.text import TextEncoder, TextEncoderConfig
from kinema.vae import VAE_PRESETS, CausalVAE


def load_benchmark(path: Path, name: str) -> ModuleType:
    """Import a script under ``benchmarks/`` by path (``benchmarks`` is not an installed package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def perturb_(module: torch.nn.Module, seed: int = 0, scale: float = 0.02) -> None:
    """Give zero-initialised layers (adaLN, output heads) small random weights so outputs are non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


@pytest.fixture(scope="session")
def text_encoder() -> TextEncoder:
    return TextEncoder(TextEncoderConfig())


def build_tiny_pipeline(text_encoder: TextEncoder, seed: int = 0) -> KinemaPipeline:
    torch.manual_seed(seed)
    vae = CausalVAE(VAE_PRESETS["tiny"])
    dit = DiT(replace(DIT_PRESETS["tiny"], in_channels=vae.config.latent_channels))
    perturb_(dit, seed)
    config = PipelineConfig(
        name="kinema-tiny-test",
        description="random weights, for tests only",
        sizes=[(32, 32), (48, 32), (32, 48)],
        default_size=(32, 32),
        max_frames=17,
        default_seconds=0.5,
        steps=4,
        guidance=3.0,
    )
    return KinemaPipeline(config, vae, dit, text_encoder)


@pytest.fixture(scope="session")
def tiny_pipeline(text_encoder: TextEncoder) -> KinemaPipeline:
    return build_tiny_pipeline(text_encoder)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_pipeline: KinemaPipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_pipeline.save_pretrained(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_refined_model_dir(text_encoder: TextEncoder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model folder with a tiny random 2x refiner in ``refiner/`` (as `kinema export` ships one)."""
    from kinema.refine import Refiner, RefinerConfig

    pipe = build_tiny_pipeline(text_encoder)
    torch.manual_seed(1)
    dit = DiT(replace(DIT_PRESETS["tiny"], in_channels=pipe.vae.config.latent_channels))
    perturb_(dit, 1)
    pipe.refiner = Refiner(dit, pipe.vae, RefinerConfig(scale_factor=2))
    return pipe.save_pretrained(tmp_path_factory.mktemp("models") / "tiny-refined")
