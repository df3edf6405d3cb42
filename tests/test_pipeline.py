"""The pipeline end to end on tiny random-weight components: shapes, determinism, round trips, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kinema.checkpoint import load_component, save_component
from kinema.errors import InvalidInputError, ModelLoadError
from kinema.pipeline import KinemaPipeline
from kinema.vae import CausalVAE, VAEConfig


def test_generate_shapes_for_each_size_and_duration(tiny_pipeline):
    for (w, h) in tiny_pipeline.config.sizes:
        video = tiny_pipeline.generate("a red ball", width=w, height=h, seconds=0.5, fps=16, steps=2)
        assert video.frames.shape == (9, h, w, 3) and video.fps == 16
    assert tiny_pipeline.generate("a red ball", frames=1, steps=2).frames.shape == (1, 32, 32, 3)
    assert tiny_pipeline.generate("a red ball", seconds=0, steps=2).num_frames == 1
    assert tiny_pipeline.frames_for(2.0, 16) == 33


def test_same_seed_same_frames_bit_for_bit(tiny_pipeline):
    a = tiny_pipeline.generate("two blue squares fall", seed=7, negative_prompt="red")
    b = tiny_pipeline.generate("two blue squares fall", seed=7, negative_prompt="red")
    c = tiny_pipeline.generate("two blue squares fall", seed=8, negative_prompt="red")
    assert np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)
    params = json.loads(a.metadata["kinema:params"])
    assert params["seed"] == 7 and params["negative_prompt"] == "red" and params["frames"] == a.num_frames


def test_prompt_and_guidance_change_the_output(tiny_pipeline):
    base = tiny_pipeline.generate("a red ball", seed=1).frames.astype(int)
    other = tiny_pipeline.generate("a green triangle moves left", seed=1).frames.astype(int)
    no_cfg = tiny_pipeline.generate("a red ball", seed=1, guidance=1.0).frames.astype(int)
    assert np.abs(base - other).sum() > 0
    assert np.abs(base - no_cfg).sum() > 0


def test_callback_sees_every_step(tiny_pipeline):
    seen = []
    tiny_pipeline.generate("a ball", steps=5, callback=lambda info: seen.append(info.step))
    assert seen == [0, 1, 2, 3, 4]
    seen.clear()
    tiny_pipeline.generate("a ball", steps=3, sampler="heun", callback=lambda info: seen.append(info.step))
    assert seen == [0, 1, 2]


def test_save_load_round_trip_reproduces_outputs(tiny_pipeline, tiny_model_dir):
    loaded = KinemaPipeline.from_pretrained(tiny_model_dir)
    a = tiny_pipeline.generate("a yellow ball bounces", seed=3)
    b = loaded.generate("a yellow ball bounces", seed=3)
    assert np.array_equal(a.frames, b.frames)
    assert loaded.config == tiny_pipeline.config
    for name in ("vae", "dit"):
        assert (tiny_model_dir / name / "config.json").is_file()
        assert (tiny_model_dir / name / "model.safetensors").is_file()


def test_fp16_storage_round_trip(tmp_path):
    vae = CausalVAE(VAEConfig(latent_channels=4, base_channels=4, channel_mults=(1, 1, 2), spatial_factor=4, temporal_factor=2))
    save_component(vae, tmp_path / "vae", dtype="float16")
    back = load_component(CausalVAE, VAEConfig, tmp_path / "vae")
    for (k, v), (k2, v2) in zip(vae.state_dict().items(), back.state_dict().items()):
        assert k == k2 and v2.dtype == v.dtype
        assert torch.allclose(v, v2, atol=2e-3, rtol=1e-3)


def test_checkpoint_reports_missing_and_unexpected_keys(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir / "vae", broken)
    state = load_file(str(broken / "model.safetensors"))
    first = sorted(state)[0]
    state["extra.weight"] = state.pop(first)
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(ModelLoadError, match=rf"missing keys \['{first}'\].*unexpected keys \['extra.weight'\]"):
        load_component(CausalVAE, VAEConfig, broken)
    from kinema.dit import DiT, DiTConfig

    with pytest.raises(ModelLoadError, match="holds a CausalVAE, not a DiT"):
        load_component(DiT, DiTConfig, tiny_model_dir / "vae")


def test_invalid_arguments_name_value_and_allowed_range(tiny_pipeline):
    cases = [
        (dict(width=50, height=32), r"size 50x32 is not supported.*32x32, 48x32, 32x48"),
        (dict(seconds=-1), r"seconds=-1.0 not supported: must be >= 0"),
        (dict(seconds=30), r"too long: at most 1 s"),
        (dict(frames=10), r"frames=10 not supported: must be 1 \+ k\*2"),
        (dict(fps=0.5), r"fps=0.5 not supported"),
        (dict(steps=0), r"steps=0 not supported"),
        (dict(sampler="ddim"), r"unknown sampler 'ddim'"),
        (dict(frames=5, seconds=1), r"either frames or seconds"),
    ]
    for kwargs, pattern in cases:
        with pytest.raises(InvalidInputError, match=pattern):
            tiny_pipeline.generate("a ball", **kwargs)


def test_unreadable_model_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="model folder not found"):
        KinemaPipeline.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="missing pipeline.json"):
        KinemaPipeline.from_pretrained(tmp_path / "empty")


def test_outputs_carry_the_watermark_and_refusals_never_generate(tiny_pipeline):
    import dataclasses

    from kinema.errors import RefusedPromptError
    from kinema.safety import Payload, embed_watermark

    video = tiny_pipeline.generate("a red ball moves left", frames=17, seed=2)
    gid = video.metadata["kinema:watermarked"]
    plain = KinemaPipeline(dataclasses.replace(tiny_pipeline.config, watermark=False), tiny_pipeline.vae, tiny_pipeline.dit, tiny_pipeline.text_encoder)
    unmarked = plain.generate("a red ball moves left", frames=17, seed=2)
    assert "kinema:watermarked" not in unmarked.metadata
    assert not np.array_equal(video.frames, unmarked.frames)
    assert np.array_equal(video.frames, embed_watermark(unmarked.frames, Payload.from_ids(tiny_pipeline.name, gid)))
    calls = []
    with pytest.raises(RefusedPromptError) as info:
        tiny_pipeline.generate("a graphic video of a person being stabbed to death, blood everywhere", callback=calls.append)
    assert info.value.category and calls == []


def test_world_prompts_are_normalised_before_conditioning(tiny_pipeline, caplog):
    """With normalize_prompts the model is conditioned on the world caption; the user's words are recorded."""
    import dataclasses
    import logging

    pipe = KinemaPipeline(dataclasses.replace(tiny_pipeline.config, normalize_prompts=True), tiny_pipeline.vae, tiny_pipeline.dit, tiny_pipeline.text_encoder)
    kw = dict(frames=5, seed=3, steps=2)
    with caplog.at_level(logging.WARNING, logger="kinema.pipeline"):
        messy = pipe.generate("A video of 2 crimson spheres plummeting joyfully", **kw)
    assert "joyfully" in caplog.text
    params = json.loads(messy.metadata["kinema:params"])
    assert params["prompt"] == "two red balls fall" and params["user_prompt"].startswith("A video of 2 crimson")
    raw = tiny_pipeline.generate("A video of 2 crimson spheres plummeting joyfully", **kw)  # normalisation off
    assert "user_prompt" not in json.loads(raw.metadata["kinema:params"])
    unmarked = dataclasses.replace(pipe.config, watermark=False)
    a = KinemaPipeline(unmarked, pipe.vae, pipe.dit, pipe.text_encoder).generate("2 crimson spheres plummeting", **kw)
    b = KinemaPipeline(unmarked, pipe.vae, pipe.dit, pipe.text_encoder).generate("two red balls fall", **kw)
    assert np.array_equal(a.frames, b.frames)
