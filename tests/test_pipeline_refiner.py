"""A pipeline with a refiner: 2x output, save/load round trip, CLI --refine, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from kinema.dit import DIT_PRESETS, DiT
from kinema.errors import InvalidInputError
from kinema.pipeline import KinemaPipeline
from kinema.refine import Refiner, RefinerConfig
from kinema.video import read_video

from conftest import build_tiny_pipeline, perturb_


@pytest.fixture(scope="module")
def refined_pipeline(text_encoder) -> KinemaPipeline:
    pipe = build_tiny_pipeline(text_encoder, seed=1)
    torch.manual_seed(2)
    dit = DiT(replace(DIT_PRESETS["tiny"], in_channels=pipe.vae.config.latent_channels))
    perturb_(dit, seed=2)
    pipe.refiner = Refiner(dit, pipe.vae, RefinerConfig(scale_factor=2))
    return pipe


def test_refine_doubles_the_size_and_is_deterministic(refined_pipeline):
    base = refined_pipeline.generate("a red ball", frames=5, steps=2)
    a = refined_pipeline.generate("a red ball", frames=5, steps=2, refine=True, refine_steps=2)
    b = refined_pipeline.generate("a red ball", frames=5, steps=2, refine=True, refine_steps=2)
    assert base.frames.shape == (5, 32, 32, 3) and a.frames.shape == (5, 64, 64, 3)
    assert np.array_equal(a.frames, b.frames)
    assert '"output_size": "64x64"' in a.metadata["kinema:params"]


def test_refiner_round_trip_and_cli(refined_pipeline, tmp_path):
    folder = refined_pipeline.save_pretrained(tmp_path / "model")
    assert (folder / "refiner" / "refiner.json").is_file() and (folder / "refiner" / "refiner" / "model.safetensors").is_file()
    loaded = KinemaPipeline.from_pretrained(folder)
    a = refined_pipeline.generate("a ball", frames=5, steps=2, refine=True, refine_steps=2, seed=4)
    b = loaded.generate("a ball", frames=5, steps=2, refine=True, refine_steps=2, seed=4)
    assert np.array_equal(a.frames, b.frames)
    out = tmp_path / "r.mp4"
    r = subprocess.run([sys.executable, "-m", "kinema", "generate", "a ball", "-o", str(out), "--model", str(folder), "--frames", "5",
                        "--steps", "2", "--refine", "--refine-steps", "2", "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert read_video(out).frames.shape == (5, 64, 64, 3)
    info = subprocess.run([sys.executable, "-m", "kinema", "info", "--model", str(folder)], capture_output=True, text=True, timeout=120)
    assert "refiner: 2x" in info.stdout


def test_refine_without_a_refiner_is_refused(tiny_pipeline, refined_pipeline):
    with pytest.raises(InvalidInputError, match="has no refiner"):
        tiny_pipeline.generate("a ball", refine=True)
    with pytest.raises(InvalidInputError, match="refine_strength=0.0 not supported"):
        refined_pipeline.generate("a ball", refine=True, refine_strength=0.0)
    with pytest.raises(InvalidInputError, match="refine_steps=0 not supported"):
        refined_pipeline.generate("a ball", refine=True, refine_steps=0)
    with pytest.raises(InvalidInputError, match="refine_guidance=0.5 not supported"):
        refined_pipeline.generate("a ball", refine=True, refine_guidance=0.5)


def test_refiner_defaults_come_from_its_config(refined_pipeline):
    cfg = refined_pipeline.refiner.config
    default = refined_pipeline.generate("a ball", frames=5, steps=2, refine=True, seed=1)
    assert json.loads(default.metadata["kinema:params"])["refine"] == {"steps": cfg.steps, "strength": 1.0, "guidance": cfg.guidance}
    guided = refined_pipeline.generate("a ball", frames=5, steps=2, refine=True, refine_steps=2, refine_guidance=3.0, seed=1)
    assert json.loads(guided.metadata["kinema:params"])["refine"] == {"steps": 2, "strength": 1.0, "guidance": 3.0}
    plain = refined_pipeline.generate("a ball", frames=5, steps=2, refine=True, refine_steps=2, seed=1)
    assert not np.array_equal(plain.frames, guided.frames)  # the guidance pass changes the refined clip
