"""Real multi-process training: ``torchrun --nproc_per_node 2`` with gloo on CPU, DDP and FSDP2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kinema.data import write_synthetic_dataset

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("dist_media"), videos=4, images=2, frames=10, height=16, width=16)


def torchrun(manifest: Path, out: Path, parallel: str, *extra: str, model: str = "dit") -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "kinema.train.cli", "train", model, "--config", str(CONFIGS / f"{model}_tiny.yaml"),
        "--data", str(manifest), "--out", str(out), "--parallel", parallel, "--schedule.total_steps=4",
        "--checkpoint.every=2", "--runtime.log_every=2", *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_torchrun_fsdp_two_processes(tmp_path: Path, manifest: Path) -> None:
    proc = torchrun(manifest, tmp_path / "fsdp", "fsdp")
    assert proc.stdout.count("step 4: loss") == 1  # rank 0 reports, rank 1 stays quiet
    run = tmp_path / "fsdp"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    ckpt = run / "checkpoints" / "step_00000004"
    assert sorted(p.name for p in ckpt.glob("rng_rank*")) == ["rng_rank0.json", "rng_rank0.safetensors", "rng_rank1.json", "rng_rank1.safetensors"]
    assert not list(ckpt.glob("*.pt"))
    weights = load_file(str(run / "final" / "dit" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert json.loads((ckpt / "trainer.json").read_text())["world_size"] == 2


@pytest.mark.slow
def test_torchrun_ddp_equals_fsdp_and_fsdp_resume_is_exact(tmp_path: Path, manifest: Path) -> None:
    torchrun(manifest, tmp_path / "fsdp", "fsdp")
    torchrun(manifest, tmp_path / "ddp", "ddp")
    a, b = (load_file(str(tmp_path / k / "checkpoints" / "step_00000004" / "model.safetensors")) for k in ("fsdp", "ddp"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    torchrun(manifest, tmp_path / "resumed", "fsdp", "--stop-after", "2")
    torchrun(manifest, tmp_path / "resumed", "fsdp", "--resume")
    c = load_file(str(tmp_path / "resumed" / "checkpoints" / "step_00000004" / "model.safetensors"))
    assert all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_torchrun_vae(tmp_path: Path, manifest: Path, parallel: str) -> None:
    torchrun(manifest, tmp_path / "vae", parallel, model="vae")
    assert (tmp_path / "vae" / "final" / "vae" / "model.safetensors").is_file()
    if parallel == "fsdp":  # gradient checkpointing inside the FSDP units (levels) trains the same weights
        torchrun(manifest, tmp_path / "ckpt", parallel, "--model.gradient_checkpointing=true", model="vae")
        a, b = (load_file(str(tmp_path / k / "checkpoints" / "step_00000004" / "model.safetensors")) for k in ("vae", "ckpt"))
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
