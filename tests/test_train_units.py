"""Conditioning masks, warmup-cosine schedule, EMA, config loading and atomic keep-last-N checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kinema.config import load_config
from kinema.errors import InvalidInputError
from kinema.train.checkpointing import latest_checkpoint, list_checkpoints, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from kinema.train.config import DIT_TRAIN_PRESETS, MASK_KINDS, DiTTrainConfig, EMAConfig, MaskConfig, OptimConfig, ScheduleConfig
from kinema.train.distributed import init_distributed
from kinema.train.masks import cond_mask, sample_cond_masks
from kinema.train.optim import EMA, WarmupCosine, build_optimizer, build_scheduler

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_each_mask_kind() -> None:
    f = 6
    assert cond_mask("none", f).tolist() == [0, 0, 0, 0, 0, 0]
    assert cond_mask("first_frame", f).tolist() == [1, 0, 0, 0, 0, 0]
    assert cond_mask("first_k", f, 3).tolist() == [1, 1, 1, 0, 0, 0]
    assert cond_mask("last_k", f, 2).tolist() == [0, 0, 0, 0, 1, 1]
    assert cond_mask("first_last", f, 2).tolist() == [1, 1, 0, 0, 1, 1]
    assert cond_mask("first_k", 3, 5).tolist() == [1, 1, 0]  # never every frame
    assert cond_mask("first_last", 2).tolist() == [1, 0]
    for kind in MASK_KINDS:
        assert cond_mask(kind, 1).tolist() == [0]  # an image is generated, never given
    with pytest.raises(ValueError, match="allowed"):
        cond_mask("middle", 4)


def test_random_masks_follow_the_weights() -> None:
    g = torch.Generator().manual_seed(0)
    masks, kinds = sample_cond_masks(2000, 5, MaskConfig(none=0.5, first_frame=0.5, first_k=0, last_k=0, first_last=0), g)
    assert set(kinds) == {"none", "first_frame"} and masks.shape == (2000, 5)
    assert abs(kinds.count("none") / 2000 - 0.5) < 0.05
    assert torch.equal(masks[:, 1:], torch.zeros(2000, 4))
    _, kinds = sample_cond_masks(200, 5, MaskConfig(), torch.Generator().manual_seed(1))
    assert set(kinds) == set(MASK_KINDS)
    with pytest.raises(InvalidInputError):
        sample_cond_masks(2, 5, MaskConfig(none=0, first_frame=0, first_k=0, last_k=0, first_last=0), g)


def test_warmup_cosine() -> None:
    f = WarmupCosine(ScheduleConfig(total_steps=110, warmup_steps=10, min_lr_ratio=0.1))
    assert f(0) == pytest.approx(1 / 11) and f(9) == pytest.approx(10 / 11)
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1)
    assert f(500) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 120))
    with pytest.raises(InvalidInputError, match="warmup_steps"):
        WarmupCosine(ScheduleConfig(total_steps=5, warmup_steps=10))


def test_ema_tracks_parameters() -> None:
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, EMAConfig(decay=0.5))
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model, step=100)  # decay min(0.5, 101/110) = 0.5
    assert torch.allclose(ema.shadow["weight"], start + 0.5)
    assert ema.decay_at(0) == pytest.approx(0.1) and EMA(model, EMAConfig(start_step=5)).decay_at(3) == 0.0


def test_optimizer_groups_decay_only_matrices() -> None:
    opt = build_optimizer(torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3)), OptimConfig(weight_decay=0.1))
    assert [len(g["params"]) for g in opt.param_groups] == [1, 3]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]


def test_yaml_configs_load_with_overrides() -> None:
    cfg = load_config(DiTTrainConfig, CONFIGS / "dit_tiny.yaml", ["--optim.lr=0.01", "--data.buckets=[{frames: 1, height: 8, width: 8, batch_size: 3}]"], base=DIT_TRAIN_PRESETS["tiny"])
    assert cfg.optim.lr == 0.01 and cfg.data.buckets[0].batch_size == 3 and cfg.model.in_channels == 4
    with pytest.raises(InvalidInputError, match="lrr"):
        load_config(DiTTrainConfig, CONFIGS / "dit_tiny.yaml", ["--optim.lrr=1"])
    for name in ("vae_world.yaml", "dit_world.yaml", "vae_tiny.yaml"):
        assert (CONFIGS / name).is_file()


def test_checkpoints_are_atomic_keep_last_n_and_restore_exactly(tmp_path: Path) -> None:
    info = init_distributed("none", "cpu")
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = build_optimizer(model, OptimConfig())
    sched = build_scheduler(opt, ScheduleConfig(total_steps=10, warmup_steps=2))
    ema = EMA(model, EMAConfig(decay=0.9))
    gen = torch.Generator().manual_seed(5)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".tmp-step_00000009").mkdir()  # a crash while writing: never "latest"
    for step in range(1, 5):
        model(torch.randn(2, 4)).sum().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        ema.update(model, step)
        save_checkpoint(tmp_path, step, model=model, optimizer=opt, ema=ema, info=info, keep_last=2,
                        trainer_state={"step": step, "position": step, "scheduler": sched.state_dict()},
                        rank_state={"rng": rng_state(gen)})
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000003", "step_00000004"]
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    latest = latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == "step_00000004"
    expected_noise = torch.randn(3, generator=gen)

    model2 = torch.nn.Linear(4, 3)
    opt2 = build_optimizer(model2, OptimConfig())
    build_scheduler(opt2, ScheduleConfig(total_steps=10, warmup_steps=2))
    ema2 = EMA(model2, EMAConfig(decay=0.9))
    gen2 = torch.Generator().manual_seed(99)
    state, rank_state = load_checkpoint(latest, model=model2, optimizer=opt2, ema=ema2, info=info)
    set_rng_state(rank_state["rng"], gen2)
    assert state["step"] == 4
    assert torch.equal(model2.weight, model.weight) and torch.equal(ema2.shadow["weight"], ema.shadow["weight"])
    assert torch.equal(opt2.state[model2.weight]["exp_avg"], opt.state[model.weight]["exp_avg"])
    assert torch.equal(torch.randn(3, generator=gen2), expected_noise)
    assert set(load_file(str(latest / "model.safetensors"))) == {"weight", "bias"}


def test_state_files_round_trip_without_pickles(tmp_path: Path) -> None:
    from kinema.train.statefiles import load_state, save_state, split_tensors

    tree = {"state": {"blocks.0.w": {"step": torch.tensor(3.0), "exp_avg": torch.randn(2, 3)}},
            "param_groups": [{"betas": (0.9, 0.99), "lr": 1e-3 / 3, "fused": None, "params": ["blocks.0.w"]}],
            "rng": [torch.get_rng_state(), [1, 2, 3]], "flag": True, "n": 7}
    save_state(tree, tmp_path, "opt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["opt.json", "opt.safetensors"]
    back = load_state(tmp_path, "opt")
    assert set(load_file(str(tmp_path / "opt.safetensors"))) == {"state.blocks.0.w.step", "state.blocks.0.w.exp_avg", "rng.0"}
    assert back["param_groups"] == tree["param_groups"] and isinstance(back["param_groups"][0]["betas"], tuple)
    assert torch.equal(back["rng"][0], tree["rng"][0]) and back["rng"][0].dtype == torch.uint8
    assert torch.equal(back["state"]["blocks.0.w"]["exp_avg"], tree["state"]["blocks.0.w"]["exp_avg"])
    assert back["flag"] is True and back["n"] == 7 and back["rng"][1] == [1, 2, 3]
    with pytest.raises(InvalidInputError, match="occurs twice"):
        split_tensors({"a.b": torch.zeros(1), "a": {"b": torch.zeros(1)}})
    with pytest.raises(InvalidInputError, match="set"):
        split_tensors({"x": {1, 2}})
