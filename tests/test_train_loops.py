"""End-to-end training on tiny synthetic data: loss goes down, exact resume, export, CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from kinema.checkpoint import load_component
from kinema.data import Bucket, write_synthetic_dataset
from kinema.dit import DiT, DiTConfig
from kinema.errors import InvalidInputError
from kinema.text.encoder import TextEncoder
from kinema.train.checkpointing import list_checkpoints
from kinema.train.statefiles import load_json_state, load_state
from kinema.train.cli import main
from kinema.train.config import DIT_TRAIN_PRESETS, VAE_TRAIN_PRESETS, CheckpointConfig, DataConfig, MaskConfig, OptimConfig, ScheduleConfig
from kinema.train.dit_trainer import Conditioning, LatentSource, TextSource, flow_matching_loss, train_dit
from kinema.train.vae_trainer import train_vae
from kinema.vae import CausalVAE, VAEConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("train_media"), videos=4, images=2, frames=10, height=16, width=16)


def _same_files(a: Path, b: Path, name: str) -> bool:
    x, y = load_file(str(a / name)), load_file(str(b / name))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_vae_training_reduces_loss_and_exports(tmp_path: Path, manifest: Path) -> None:
    cfg = replace(VAE_TRAIN_PRESETS["tiny"], schedule=ScheduleConfig(total_steps=20, warmup_steps=2))
    result = train_vae(cfg, str(manifest), tmp_path / "run")
    assert result.step == 20 and len(result.losses) == 20
    assert sum(result.losses[-5:]) / 5 < 0.6 * sum(result.losses[:3]) / 3
    vae = load_component(CausalVAE, VAEConfig, tmp_path / "run" / "final" / "vae")
    assert vae.config.scaling_factor != 1.0  # measured at export
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10, 15, 20] and "steps_per_s" in rows[0] and "tflops" in rows[0]
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["schedule"]["total_steps"] == 20



def test_vae_decoder_finetune_keeps_encoder_and_scaling(tmp_path: Path, manifest: Path) -> None:
    """``train_encoder: false`` from ``init``: only the decoder moves, the latent scaling is the init's."""
    base_cfg = replace(VAE_TRAIN_PRESETS["tiny"], schedule=ScheduleConfig(total_steps=10, warmup_steps=2))
    train_vae(base_cfg, str(manifest), tmp_path / "base")
    init = tmp_path / "base" / "final" / "vae"
    cfg = replace(base_cfg, init=str(init), train_encoder=False, model=replace(base_cfg.model, base_channels=4))
    train_vae(cfg, str(manifest), tmp_path / "dec")
    before = load_component(CausalVAE, VAEConfig, init)
    after = load_component(CausalVAE, VAEConfig, tmp_path / "dec" / "final" / "vae")
    assert after.config == before.config  # the init's architecture and scaling, not cfg.model's
    a, b = before.state_dict(), after.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("encoder."))
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("decoder."))
    with pytest.raises(InvalidInputError, match="init"):
        train_vae(replace(base_cfg, train_encoder=False), str(manifest), tmp_path / "bad")
    with pytest.raises(InvalidInputError, match="not a VAE component folder"):
        train_vae(replace(base_cfg, init=str(tmp_path)), str(manifest), tmp_path / "bad2")

def test_cli_sets_top_level_keys(tmp_path: Path, manifest: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--init=DIR --train_encoder=false`` reach the config like dotted overrides; an unknown key is named."""
    assert main(["train", "vae", "--data", str(manifest), "--out", str(tmp_path / "base"), "--schedule.total_steps=4"]) == 0
    init = tmp_path / "base" / "final" / "vae"
    args = ["train", "vae", "--data", str(manifest), "--out", str(tmp_path / "dec"), "--schedule.total_steps=4",
            f"--init={init}", "--train_encoder=false", "--loss.temporal_weight=2.0"]
    assert main(args) == 0
    saved = yaml.safe_load((tmp_path / "dec" / "config.yaml").read_text())
    assert (saved["init"], saved["train_encoder"], saved["loss"]["temporal_weight"]) == (str(init), False, 2.0)
    capsys.readouterr()
    assert main(["train", "vae", "--data", str(manifest), "--out", str(tmp_path / "x"), "--initt=foo"]) == 2
    assert "unknown key 'initt'" in capsys.readouterr().err


def _eval_loss(dit: DiT, cfg, manifest: Path) -> float:
    """Velocity error on fixed latents, noise and times, all frames generated (text-to-video)."""
    from kinema.data import VideoDataset

    dataset = VideoDataset(manifest, cfg.data.buckets, seed=0)
    latents = LatentSource(cfg, torch.device("cpu"), None, None)
    encoder = TextEncoder(cfg.text)
    g = torch.Generator().manual_seed(123)
    total = 0.0
    with torch.no_grad():
        for index in range(len(dataset)):
            item = dataset[(index, 0)]
            x0 = latents({"video": item["video"][None]}, g)
            text = encoder.encode([item["caption"]])
            f = x0.shape[2]
            cond = Conditioning(None, None, torch.ones(1, f))
            total += float(flow_matching_loss(dit, x0, text, cond, torch.rand(1, generator=g), torch.randn(x0.shape, generator=g)))
    return total / len(dataset)


def test_dit_training_reduces_loss_and_exports(tmp_path: Path, manifest: Path) -> None:
    cfg = replace(
        DIT_TRAIN_PRESETS["tiny"],
        schedule=ScheduleConfig(total_steps=40, warmup_steps=2),
        optim=OptimConfig(lr=3e-3),
        sample_posterior=False,  # a random-init VAE's posterior is mostly noise; its mean is learnable
        caption_dropout=0.0,
        masks=MaskConfig(none=1, first_frame=0, first_k=0, last_k=0, first_last=0),
        checkpoint=CheckpointConfig(every=100, keep_last=1),
    )
    result = train_dit(cfg, str(manifest), tmp_path / "run")
    final = tmp_path / "run" / "final"
    trained = load_component(DiT, DiTConfig, final / "dit")
    assert sorted(p.name for p in final.iterdir()) == ["dit", "text", "vae"]
    torch.manual_seed(cfg.runtime.seed)
    untrained = DiT(cfg.model).eval()
    before, after = _eval_loss(untrained, cfg, manifest), _eval_loss(trained, cfg, manifest)
    assert after < 0.6 * before, (before, after)
    assert result.step == 40 and [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_00000040"]


def test_dit_init_continues_from_trained_weights(tmp_path: Path, manifest: Path) -> None:
    """``init``: a second run starts from a trained DiT (its config, not ``cfg.model``), with a fresh schedule."""
    cfg = replace(DIT_TRAIN_PRESETS["tiny"], schedule=ScheduleConfig(total_steps=4, warmup_steps=1),
                  checkpoint=CheckpointConfig(every=100, keep_last=1))
    train_dit(cfg, str(manifest), tmp_path / "base")
    init = tmp_path / "base" / "final" / "dit"
    frozen = replace(cfg, init=str(init), optim=replace(cfg.optim, lr=1e-12), model=replace(cfg.model, hidden_size=2 * cfg.model.hidden_size))
    train_dit(frozen, str(manifest), tmp_path / "again")
    before = load_component(DiT, DiTConfig, init)
    after = load_component(DiT, DiTConfig, tmp_path / "again" / "final" / "dit")
    assert after.config == before.config  # the init's architecture
    a, b = before.state_dict(), after.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)  # lr ~0: the exported EMA is the init itself
    moved = train_dit(replace(cfg, init=str(init)), str(manifest), tmp_path / "moved")
    c = load_component(DiT, DiTConfig, tmp_path / "moved" / "final" / "dit").state_dict()
    assert moved.step == 4 and any(not torch.equal(a[k], c[k]) for k in a)
    with pytest.raises(InvalidInputError, match="not a DiT component folder"):
        train_dit(replace(cfg, init=str(tmp_path)), str(manifest), tmp_path / "bad")


@pytest.mark.parametrize("kind", ["dit", "vae"])
def test_resume_is_bit_identical(tmp_path: Path, manifest: Path, kind: str) -> None:
    base = DIT_TRAIN_PRESETS["tiny"] if kind == "dit" else VAE_TRAIN_PRESETS["tiny"]
    cfg = replace(base, schedule=ScheduleConfig(total_steps=6, warmup_steps=2), checkpoint=CheckpointConfig(every=3, keep_last=3),
                  optim=replace(base.optim, grad_accum=2))
    train = train_dit if kind == "dit" else train_vae
    straight = train(cfg, str(manifest), tmp_path / "a")
    first = train(cfg, str(manifest), tmp_path / "b", stop_after=3)
    assert first.step == 3 and first.final_dir is None
    second = train(cfg, str(manifest), tmp_path / "b", resume="latest")
    assert second.step == 6 and straight.losses == first.losses + second.losses
    a, b = tmp_path / "a" / "checkpoints" / "step_00000006", tmp_path / "b" / "checkpoints" / "step_00000006"
    for name in ("model.safetensors", "ema.safetensors", "optimizer.safetensors", "rng_rank0.safetensors"):
        assert _same_files(a, b, name), name
    assert (a / "rng_rank0.json").read_text() == (b / "rng_rank0.json").read_text()
    oa, ob = load_state(a, "optimizer"), load_state(b, "optimizer")
    assert oa["param_groups"] == ob["param_groups"] and oa["state"].keys() == ob["state"].keys()
    assert all(torch.equal(oa["state"][k][m], ob["state"][k][m]) for k in oa["state"] for m in ("exp_avg", "exp_avg_sq", "step"))
    assert load_json_state(a / "trainer.json")["position"] == load_json_state(b / "trainer.json")["position"] == 12  # 6 steps x 2 micro-batches
    assert_no_pickles(a)
    assert_no_pickles(b)


def assert_no_pickles(checkpoint: Path) -> None:
    """Every file of a checkpoint is JSON or safetensors (no pickle anywhere)."""
    files = sorted(p for p in checkpoint.iterdir())
    assert files and all(p.is_file() for p in files)
    for path in files:
        head = path.read_bytes()[:2]
        assert not head.startswith(b"\x80") and not head.startswith(b"PK"), f"{path.name} looks like a pickle / torch.save zip"
        if path.suffix == ".json":
            json.loads(path.read_text())
        else:
            assert path.suffix == ".safetensors", path.name
            load_file(str(path))


def test_cli_cache_then_train_from_caches(tmp_path: Path, manifest: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--config", str(CONFIGS / "dit_tiny.yaml"), "--data", str(manifest)]
    assert main(["cache", "text", *common, "--out", str(tmp_path / "cache")]) == 0
    assert main(["cache", "latents", *common, "--out", str(tmp_path / "cache")]) == 0
    out = tmp_path / "run"
    argv = ["train", "dit", *common, "--cache", str(tmp_path / "cache"), "--out", str(out), "--schedule.total_steps=4", "--runtime.log_every=2"]
    assert main(argv) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["latent_cache"].endswith("latents") and saved["data"]["text_cache"].endswith("text")
    assert saved["schedule"]["total_steps"] == 4
    assert (out / "final" / "dit" / "model.safetensors").is_file()
    assert "step 4: loss" in capsys.readouterr().out
    assert main(["train", "dit", *common, "--out", str(out), "--optim.lrr=1"]) == 2
    assert "optim.lrr" in capsys.readouterr().err
    # a continuation config (`init`) caches with the init's model shape, whatever its own `model` says
    again = ["cache", "latents", *common, f"--init={out / 'final' / 'dit'}", "--model.in_channels=99"]
    assert main([*again, "--out", str(tmp_path / "cache2")]) == 0
    assert (tmp_path / "cache2" / "latents" / "index.json").is_file()
    assert main(["cache", "latents", *common, "--model.in_channels=99", "--out", str(tmp_path / "cache3")]) == 2
    assert "model.in_channels=99" in capsys.readouterr().err


def test_world_source_trains(tmp_path: Path) -> None:
    cfg = replace(DIT_TRAIN_PRESETS["tiny"], schedule=ScheduleConfig(total_steps=3, warmup_steps=1),
                  data=DataConfig(buckets=[Bucket(5, 16, 16, 2)], world_clips=8))
    result = train_dit(cfg, "world:train", tmp_path / "run")
    assert result.step == 3 and all(torch.isfinite(torch.tensor(result.losses)))


def test_text_source_memo_refills_when_full() -> None:
    """A full caption memo is emptied before a batch, and every caption of the batch (the empty
    caption of caption dropout too) is encoded again: a run on rendered worlds, which sees a new
    caption almost every item, once died here with KeyError ''."""
    cfg = replace(DIT_TRAIN_PRESETS["tiny"])
    texts = TextSource(cfg, torch.device("cpu"), None)
    texts.memo_limit = 4
    first = texts(["", "a red ball"]).states
    texts(["a blue square", "a green ball"])  # fills the memo to its limit
    again = texts(["", "a red ball", "a cyan triangle"])  # "" was memoised, then dropped
    assert len(texts.memo) == 3
    assert torch.equal(again.states[:2, : first.shape[1]], first)
