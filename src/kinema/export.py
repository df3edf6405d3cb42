"""Assemble a pipeline folder from a finished DiT training run (``RUN/final``).

``kinema export runs/dit-demo/final --out src/kinema/weights/default --sizes 64x64 --max-frames 65``
loads ``final/vae``, ``final/dit`` and ``final/text/config.json``, writes ``pipeline.json`` with what
the model supports, and stores the weights in ``--dtype`` (float16 keeps the repository small).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from kinema.checkpoint import load_component, read_json_config
from kinema.dit import DiT, DiTConfig
from kinema.errors import InvalidInputError, ModelLoadError
from kinema.pipeline import KinemaPipeline, PipelineConfig
from kinema.refine import Refiner
from kinema.text import TextEncoder, TextEncoderConfig
from kinema.vae import CausalVAE, VAEConfig


def export_pipeline(
    final_dir: str | Path,
    out: str | Path,
    *,
    name: str,
    description: str = "",
    sizes: list[tuple[int, int]] | None = None,
    max_frames: int = 65,
    default_seconds: float = 2.0,
    fps: float = 16.0,
    steps: int = 20,
    guidance: float = 4.0,
    sampler: str = "euler",
    dtype: str = "float16",
    refiner: str | Path | None = None,
    world_prompts: bool = False,
    fast_dit: str | Path | None = None,
    fast_steps: int = 8,
    vae: str | Path | None = None,
) -> Path:
    """Build and save a ``KinemaPipeline`` folder from a training run's ``final`` folder.

    ``fast_dit``: a few-step student (``RUN/final/dit`` of ``kinema train reflow``) shipped as
    ``dit_fast/`` and sampled with ``fast_steps`` steps by ``generate(fast=True)``.
    ``vae``: a VAE folder to ship instead of ``final/vae``, e.g. a decoder fine-tuned with
    ``train_encoder: false``; its encoder and latent scaling must be the run's (see :func:`check_same_latents`).
    """
    final_dir = Path(final_dir)
    if not final_dir.is_dir():
        raise ModelLoadError(f"run output not found: '{final_dir}' (expected RUN/final from `kinema train dit`)")
    text_path = final_dir / "text" / "config.json"
    if not text_path.is_file():
        raise ModelLoadError(f"'{final_dir}' has no text/config.json; is it the final folder of a DiT run?")
    text_config = read_json_config(TextEncoderConfig, text_path)
    vae_model = load_component(CausalVAE, VAEConfig, final_dir / "vae")
    if vae is not None:
        replacement = load_component(CausalVAE, VAEConfig, vae)
        check_same_latents(vae_model, replacement, str(vae))
        vae_model = replacement
    dit = load_component(DiT, DiTConfig, final_dir / "dit")
    sizes = sizes or [(64, 64)]
    config = PipelineConfig(
        name=name,
        description=description,
        sizes=sizes,
        default_size=sizes[0],
        max_frames=max_frames,
        default_seconds=default_seconds,
        default_fps=fps,
        steps=steps,
        guidance=guidance,
        sampler=sampler,
        text_encoder=text_config,
        normalize_prompts=world_prompts,
        fast_steps=fast_steps,
    )
    student = load_component(DiT, DiTConfig, fast_dit) if fast_dit is not None else None
    pipe = KinemaPipeline(config, vae_model, dit, TextEncoder(text_config), Refiner.load(refiner) if refiner is not None else None, student)
    return pipe.save_pretrained(out, dtype=dtype)


def check_same_latents(trained: CausalVAE, replacement: CausalVAE, name: str) -> None:
    """Raise unless ``replacement`` makes the latents ``trained`` made (same config, encoder weights and scaling),
    the only condition under which a DiT trained on ``trained``'s latents can be decoded by it."""
    if replacement.config != trained.config:
        raise InvalidInputError(f"VAE '{name}' has another config than the run's VAE ({replacement.config} vs {trained.config}); "
                                "only a decoder fine-tuned from the run's VAE (train_encoder: false) can replace it")
    mine, theirs = trained.state_dict(), replacement.state_dict()
    changed = [k for k in mine if k.startswith("encoder.") and not torch.allclose(mine[k].float(), theirs[k].float(), rtol=1e-3, atol=1e-4)]
    if changed:
        raise InvalidInputError(f"VAE '{name}' has another encoder than the run's VAE ({len(changed)} tensors differ, e.g. {changed[0]}); "
                                "the DiT's latents would not match. Fine-tune the decoder only (train_encoder: false)")


def _sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise argparse.ArgumentTypeError(f"invalid size '{item}': use WxH[,WxH...], e.g. 64x64,96x64")
        out.append((int(parts[0]), int(parts[1])))
    return out


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("export", help="assemble a pipeline folder from a DiT training run", description=__doc__)
    p.add_argument("final", type=Path, help="the run's final folder (RUN/final)")
    p.add_argument("--out", type=Path, required=True, help="pipeline folder to write")
    p.add_argument("--name", required=True, help="model name shown by `kinema info`")
    p.add_argument("--description", default="", help="one line shown by `kinema info`")
    p.add_argument("--sizes", type=_sizes, default=[(64, 64)], help="trained sizes WxH[,WxH...]; the first is the default")
    p.add_argument("--max-frames", type=int, default=65, help="longest clip in frames the model supports")
    p.add_argument("--seconds", type=float, default=2.0, help="default duration")
    p.add_argument("--fps", type=float, default=16.0, help="default frame rate")
    p.add_argument("--steps", type=int, default=20, help="default sampling steps")
    p.add_argument("--guidance", type=float, default=4.0, help="default guidance scale")
    p.add_argument("--refiner", type=Path, default=None, help="a refiner run's final folder (RUN/final of `kinema train refiner`) to ship beside the model")
    p.add_argument("--fast-dit", type=Path, default=None, help="a few-step student (RUN/final/dit of `kinema train reflow`) to ship as dit_fast/ for --fast")
    p.add_argument("--fast-steps", type=int, default=8, help="sampling steps of the few-step student")
    p.add_argument("--world-prompts", action="store_true", help="rewrite prompts into the Kinema World vocabulary before conditioning (models trained on Kinema World)")
    p.add_argument("--vae", type=Path, default=None, help="a VAE folder to ship instead of final/vae: a decoder fine-tuned from it (train_encoder: false); the encoder must be the same")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float16", help="weight storage dtype")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.max_frames < 1:
        raise InvalidInputError(f"--max-frames={args.max_frames} invalid: must be >= 1")
    out = export_pipeline(
        args.final, args.out, name=args.name, description=args.description, sizes=args.sizes, max_frames=args.max_frames,
        default_seconds=args.seconds, fps=args.fps, steps=args.steps, guidance=args.guidance, dtype=args.dtype, refiner=args.refiner,
        world_prompts=args.world_prompts, fast_dit=args.fast_dit, fast_steps=args.fast_steps, vae=args.vae,
    )
    print(f"wrote pipeline folder {out}")
    return 0
