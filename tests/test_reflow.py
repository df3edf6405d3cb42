"""Few-step student: reflow pairs and training (resumable), export, ``generate(fast=True)`` and ``--fast``."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from kinema.checkpoint import load_component
from kinema.dit import DiT, DiTConfig
from kinema.errors import InvalidInputError
from kinema.flow import euler, get_schedule, guided_velocity_fn
from kinema.pipeline import KinemaPipeline
from kinema.text import TextEmbedding
from kinema.train.reflow import REFLOW_PRESETS, load_pairs, make_pairs, reflow_loss, student_times, train_student
from kinema.video import read_video

from conftest import build_tiny_pipeline, perturb_

PROMPTS = ["a red ball falls", "two blue squares slide to the right", "a green triangle stays still"]


def _kinema(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kinema", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def fast_pipeline(text_encoder) -> KinemaPipeline:
    pipe = build_tiny_pipeline(text_encoder, seed=3)
    student = DiT(pipe.dit.config)
    student.load_state_dict(pipe.dit.state_dict())
    perturb_(student, seed=4)
    pipe.fast_dit = student.eval()
    pipe.config = replace(pipe.config, fast_steps=3)
    return pipe


def test_pairs_are_the_teachers_guided_samples(tiny_pipeline, tmp_path):
    cfg = replace(REFLOW_PRESETS["tiny"])
    shards = make_pairs(tiny_pipeline, cfg, PROMPTS, tmp_path / "pairs")
    assert len(shards) == 2 and all(p.is_file() for p in shards)  # 8 pairs in shards of 4
    with safe_open(str(shards[0]), framework="pt") as f:
        noise, latents = f.get_tensor("noise"), f.get_tensor("latents")
        meta = f.metadata()
    prompts = json.loads(meta["prompts"])
    assert noise.shape == latents.shape == (4, *tiny_pipeline.vae.latent_shape(9, 32, 32))
    # the stored latents are exactly the teacher's guided Euler run from the stored noise
    text = tiny_pipeline.text_encoder.encode(prompts)
    negative = tiny_pipeline.text_encoder.encode([""])
    fn = guided_velocity_fn(tiny_pipeline.dit, text, negative, tiny_pipeline.config.guidance)
    with torch.no_grad():
        expected = euler(fn, noise, get_schedule(cfg.teacher_steps, shift=float(meta["shift"])))
    torch.testing.assert_close(latents, expected, atol=1e-5, rtol=1e-5)
    # a second run keeps the shards (resumable) and makes the same ones
    before = [p.stat().st_mtime_ns for p in shards]
    assert make_pairs(tiny_pipeline, cfg, PROMPTS, tmp_path / "pairs") == shards
    assert [p.stat().st_mtime_ns for p in shards] == before
    with pytest.raises(InvalidInputError, match="no captions"):
        make_pairs(tiny_pipeline, cfg, [], tmp_path / "empty")


def test_reflow_loss_is_zero_for_the_straight_velocity() -> None:
    """A model predicting exactly ``z - x0`` on the straight path has zero reflow loss."""
    g = torch.Generator().manual_seed(0)
    noise, latents = torch.randn(3, 2, 2, 4, 4, generator=g), torch.randn(3, 2, 2, 4, 4, generator=g)
    t = student_times(3, torch.tensor(2.5), g)
    assert bool(((t > 0) & (t < 1)).all())

    class Straight(torch.nn.Module):  # x_t = (1 - t) x0 + t z  =>  z - x0 = (x_t - x0) / t
        def forward(self, x, tt, *_):  # type: ignore[no-untyped-def]
            return (x - latents) / tt[:, None, None, None, None]

    text = TextEmbedding.from_unpadded([torch.zeros(1, 4)] * 3)
    assert float(reflow_loss(Straight(), noise, latents, t, text)) < 1e-10  # type: ignore[arg-type]
    assert float(reflow_loss(Straight(), noise, latents + 0.1, t, text)) > 1e-3  # type: ignore[arg-type]


def test_train_reflow_cli_resumes_and_exports(tiny_model_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    run = tmp_path / "run"
    first = _kinema("train", "reflow", "--model", str(tiny_model_dir), "--data", str(prompts), "--out", str(run),
                    "--preset", "tiny", "--stop-after", "3")
    assert first.returncode == 0, first.stderr
    assert "resume with the same command" in first.stdout and not (run / "final" / "dit").exists()
    assert (run / "checkpoints" / "step_00000003" / "model.safetensors").is_file()
    second = _kinema("train", "reflow", "--model", str(tiny_model_dir), "--data", str(prompts), "--out", str(run), "--preset", "tiny")
    assert second.returncode == 0, second.stderr
    assert "resumed reflow training" in second.stderr and (run / "final" / "dit" / "model.safetensors").is_file()
    # ship it beside a pipeline and sample with --fast
    pipe = KinemaPipeline.from_pretrained(tiny_model_dir)
    pipe.fast_dit = load_component(DiT, DiTConfig, run / "final" / "dit")
    folder = pipe.save_pretrained(tmp_path / "with-student")
    out = tmp_path / "fast.mp4"
    r = _kinema("generate", "a red ball falls", "-o", str(out), "--model", str(folder), "--fast", "--frames", "9", "--quiet")
    assert r.returncode == 0, r.stderr
    assert read_video(out).frames.shape == (9, 32, 32, 3)
    bad = _kinema("train", "reflow", "--model", str(tiny_model_dir), "--data", str(tmp_path / "nope.txt"), "--out", str(run))
    assert bad.returncode != 0 and "prompt file not found" in bad.stderr


def test_student_training_lowers_the_reflow_loss(tiny_pipeline, tmp_path):
    cfg = replace(REFLOW_PRESETS["tiny"], schedule=replace(REFLOW_PRESETS["tiny"].schedule, total_steps=40, warmup_steps=2),
                  checkpoint_every=1000, optim=replace(REFLOW_PRESETS["tiny"].optim, lr=3e-3))
    pairs = load_pairs(make_pairs(tiny_pipeline, cfg, PROMPTS, tmp_path / "pairs"))
    (group,) = pairs.values()
    texts = TextEmbedding.cat([tiny_pipeline.text_encoder.encode([p]) for p in group.prompts])
    t = torch.full((len(group.prompts),), 0.5)

    def loss_of(model: DiT) -> float:
        with torch.no_grad():
            return float(reflow_loss(model.eval(), group.noise, group.latents, t, texts))

    final = train_student(tiny_pipeline, cfg, pairs, tmp_path / "run")
    student = load_component(DiT, DiTConfig, final / "dit")
    assert loss_of(student) < 0.8 * loss_of(tiny_pipeline.dit)


def test_fast_generation_uses_the_student(fast_pipeline, tmp_path):
    steps: list[int] = []
    fast = fast_pipeline.generate("a red ball", frames=5, fast=True, callback=lambda info: steps.append(info.step))
    params = json.loads(fast.metadata["kinema:params"])
    assert steps == [0, 1, 2] and params["fast"] is True and params["guidance"] == 1.0 and params["steps"] == 3
    slow = fast_pipeline.generate("a red ball", frames=5, steps=3, guidance=1.0)
    assert "fast" not in json.loads(slow.metadata["kinema:params"])
    assert not np.array_equal(fast.frames, slow.frames)  # same settings, another model sampled
    folder = fast_pipeline.save_pretrained(tmp_path / "m")
    assert (folder / "dit_fast" / "model.safetensors").is_file()
    loaded = KinemaPipeline.from_pretrained(folder)
    assert np.array_equal(loaded.generate("a red ball", frames=5, fast=True).frames, fast.frames)


def test_fast_refuses_what_the_student_cannot_do(fast_pipeline, tiny_pipeline):
    with pytest.raises(InvalidInputError, match="no few-step student"):
        tiny_pipeline.generate("a ball", fast=True)
    with pytest.raises(InvalidInputError, match="text-to-video only"):
        fast_pipeline.generate("a ball", fast=True, image=np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(InvalidInputError, match="guidance built in"):
        fast_pipeline.generate("a ball", fast=True, guidance=3.0)
    with pytest.raises(InvalidInputError, match="negative prompt"):
        fast_pipeline.generate("a ball", fast=True, negative_prompt="blue")


@pytest.mark.slow
def test_compiled_pipeline_matches_eager(text_encoder):
    """``pipe.compile()`` (torch.compile of the DiT forward) gives the same video within float tolerance."""
    pipe = build_tiny_pipeline(text_encoder, seed=5)
    eager = pipe.generate("a red ball", frames=5, steps=2)
    pipe.compile()
    compiled = pipe.generate("a red ball", frames=5, steps=2)
    assert np.abs(eager.frames.astype(int) - compiled.frames.astype(int)).max() <= 2


def test_schedule_times_are_the_students_euler_times() -> None:
    g = torch.Generator().manual_seed(1)
    t = student_times(200, torch.tensor(2.5), g, steps=4)
    grid = get_schedule(4, shift=2.5)[:-1]
    assert set(t.tolist()) == set(grid.tolist())  # every one of the 4 visited times, nothing else
    with pytest.raises(InvalidInputError, match="times='sometimes'"):
        replace(REFLOW_PRESETS["tiny"], times="sometimes").validate()  # type: ignore[arg-type]
