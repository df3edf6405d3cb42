"""The diffusers Wan peer for issue 10's benchmarks: matched to Kinema's default model, and it generates."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytest.importorskip("diffusers")

from kinema.pipeline import KinemaPipeline  # noqa: E402
from kinema.text import TextEncoder, TextEncoderConfig  # noqa: E402
from kinema.weights import bundled_model_path  # noqa: E402

from conftest import load_benchmark  # noqa: E402

PEER_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "peers" / "diffusers_wan.py"
TOLERANCE = 0.15  # issue 10: peer parameter counts within ~15% of Kinema's, per component


def load_peer() -> ModuleType:
    """Import ``benchmarks/peers/diffusers_wan.py``."""
    return load_benchmark(PEER_FILE, "kinema_bench_diffusers_wan")


@pytest.mark.slow
def test_matched_wan_peer(tmp_path: Path) -> None:
    peer = load_peer()
    folder = tmp_path / "wan"
    counts = peer.save_matched_wan(folder, seed=0)

    kinema = KinemaPipeline.from_pretrained(bundled_model_path())
    text = TextEncoder(TextEncoderConfig())
    reference = {
        "transformer": sum(p.numel() for p in kinema.dit.parameters()),
        "vae": sum(p.numel() for p in kinema.vae.parameters()),
        "text_encoder": sum(p.numel() for p in text.model.parameters()),
    }
    for name, n_kinema in reference.items():
        ratio = counts[name] / n_kinema
        assert abs(ratio - 1.0) <= TOLERANCE, f"{name}: peer {counts[name]} vs Kinema {n_kinema} (ratio {ratio:.3f})"

    pipe = peer.load_wan(folder)
    assert sum(p.numel() for p in pipe.transformer.parameters()) == counts["transformer"]  # round trip
    _, f, h, w = kinema.vae.latent_shape(33, 64, 64)
    assert peer.wan_token_count(pipe, width=64, height=64, frames=33) == 144 == kinema.dit.num_tokens(f, h, w)

    video = peer.wan_generate(pipe, "a red ball bounces", width=64, height=64, frames=17, steps=2)
    assert video.shape == (17, 64, 64, 3)
    assert video.dtype == np.uint8
    assert video.std() > 0  # random weights still give a non-constant clip
