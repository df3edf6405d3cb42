"""A DiT training run's final folder becomes a pipeline folder that `kinema generate` uses."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from kinema.data import Bucket
from kinema.checkpoint import load_component, save_component
from kinema.errors import InvalidInputError, ModelLoadError
from kinema.export import export_pipeline
from kinema.pipeline import KinemaPipeline
from kinema.train.config import DIT_TRAIN_PRESETS, CheckpointConfig, DataConfig, ScheduleConfig
from kinema.train.dit_trainer import train_dit
from kinema.vae import CausalVAE, VAEConfig
from kinema.video import read_video


def _tiny_run(tmp_path: Path, steps: int) -> Path:
    """``RUN/final`` of a tiny DiT trained ``steps`` steps on world clips."""
    cfg = replace(
        DIT_TRAIN_PRESETS["tiny"],
        schedule=ScheduleConfig(total_steps=steps, warmup_steps=min(1, steps - 1)),
        data=DataConfig(buckets=[Bucket(5, 16, 16, 2)], world_clips=8),
        checkpoint=CheckpointConfig(every=100, keep_last=1),
    )
    final = train_dit(cfg, "world:train", tmp_path / "run").final_dir
    assert final is not None
    return final


def test_export_from_training_run_then_generate(tmp_path: Path):
    final = _tiny_run(tmp_path, 3)
    out = tmp_path / "model"
    r = subprocess.run(
        [sys.executable, "-m", "kinema", "export", str(final), "--out", str(out), "--name", "exported-tiny",
         "--sizes", "16x16,32x16", "--max-frames", "9", "--seconds", "0.25", "--steps", "2"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    pipe = KinemaPipeline.from_pretrained(out)
    assert pipe.config.name == "exported-tiny" and pipe.config.sizes == [(16, 16), (32, 16)]
    assert all(p.dtype.is_floating_point for p in pipe.dit.parameters())
    video = pipe.generate("a red ball moves left", width=32, height=16)
    assert video.frames.shape == (5, 16, 32, 3)
    r = subprocess.run([sys.executable, "-m", "kinema", "generate", "a ball", "-o", str(tmp_path / "a.mp4"), "--model", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert read_video(tmp_path / "a.mp4").frames.shape == (5, 16, 16, 3)


def test_export_rejects_a_folder_that_is_not_a_run(tmp_path: Path):
    with pytest.raises(ModelLoadError, match="run output not found"):
        export_pipeline(tmp_path / "missing", tmp_path / "out", name="x")
    (tmp_path / "final").mkdir()
    with pytest.raises(ModelLoadError, match="no text/config.json"):
        export_pipeline(tmp_path / "final", tmp_path / "out", name="x")


def test_export_ships_a_finetuned_decoder_but_not_another_encoder(tmp_path: Path):
    """``--vae``: a VAE whose encoder (and so latents) is the run's replaces final/vae; any other is refused."""
    final = _tiny_run(tmp_path, 1)
    vae = load_component(CausalVAE, VAEConfig, final / "vae")
    with torch.no_grad():
        vae.decoder.conv_out.conv.weight.mul_(0.5)
    save_component(vae, tmp_path / "decoder")
    pipe = KinemaPipeline.from_pretrained(export_pipeline(final, tmp_path / "model", name="x", vae=tmp_path / "decoder", dtype="float32"))
    assert torch.equal(pipe.vae.decoder.conv_out.conv.weight, vae.decoder.conv_out.conv.weight)
    with torch.no_grad():
        vae.encoder.conv_in.conv.weight.add_(0.1)
    save_component(vae, tmp_path / "encoder")
    with pytest.raises(InvalidInputError, match="another encoder"):
        export_pipeline(final, tmp_path / "model2", name="x", vae=tmp_path / "encoder")
