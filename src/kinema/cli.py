"""The ``kinema`` command: generate, info, and the sub-commands of the world, eval and train packages.

Errors a user can fix (bad size, unknown option, unreadable model) print one line naming the
problem and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import NoReturn

from kinema import __version__
from kinema.errors import InvalidInputError, KinemaError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def default_model_path() -> Path:
    """The model used when ``--model`` is not given: $KINEMA_MODEL, else the bundled default model."""
    env = os.environ.get("KINEMA_MODEL")
    if env:
        return Path(env)
    from kinema.weights import bundled_model_path

    return bundled_model_path()


def _parse_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"invalid size '{text}': use WIDTHxHEIGHT, e.g. 64x64")
    return int(parts[0]), int(parts[1])


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate a video (or an image) from a text prompt", description="Generate a video (or image) from a prompt, optionally starting from an image or videos (see --mode). The output type follows the suffix of -o: .mp4 (H.264), .webm (VP9), .gif, .png. Prompts are moderated; outputs carry an invisible watermark, C2PA content credentials (MP4/PNG/GIF) and a sidecar OUT.json record.")
    p.add_argument("prompt", help="what the video should show")
    p.add_argument("-o", "--output", required=True, help="output file: .mp4, .webm, .gif or .png")
    p.add_argument("--seconds", type=float, default=None, help="duration in seconds (default: the model's; 0 = a single image)")
    p.add_argument("--frames", type=int, default=None, help="exact frame count instead of --seconds (1 + k * temporal factor)")
    p.add_argument("--size", type=_parse_size, default=None, help="WIDTHxHEIGHT, one of the model's sizes (see 'kinema info')")
    p.add_argument("--fps", type=float, default=None, help="frames per second (default: the model's)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (1 = off)")
    p.add_argument("--sampler", choices=["euler", "heun"], default=None, help="flow sampler (default: the model's)")
    p.add_argument("--negative", default=None, help="negative prompt: what to steer away from")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed and settings give the same video")
    p.add_argument("--model", type=Path, default=None, help="model folder (default: $KINEMA_MODEL or the bundled model)")
    p.add_argument("--image", type=Path, default=None, help="image to start from (image-to-video, or the start of a --mode loop)")
    p.add_argument("--video", type=Path, default=None, help="input video: extended (default), edited, or connected to --end-video")
    p.add_argument("--end-video", type=Path, default=None, help="second video for --mode connect")
    p.add_argument("--mode", choices=["t2v", "i2v", "extend", "extend_backward", "loop", "connect", "edit"], default=None,
                   help="generation mode (default: from the inputs); with --video, --seconds is the length of the new part")
    p.add_argument("--strength", type=float, default=0.6, help="edit strength in (0, 1]: how far the input is re-imagined")
    p.add_argument("--context", type=int, default=None, help="latent frames of overlap for extend/loop/connect (default 2)")
    p.add_argument("--no-blend", dest="blend_seams", action="store_false",
                   help="extend/loop/connect: keep the given frames exactly (by default the frames next to a join are cross-faded into the model's decoding of them)")
    p.add_argument("--refine", action="store_true", help="run the model's refiner: a second diffusion pass at 2x resolution")
    p.add_argument("--refine-steps", type=int, default=None, help="refiner sampling steps (default: the refiner's own, refiner.json)")
    p.add_argument("--refine-guidance", type=float, default=None, help="refiner text guidance (default: the refiner's own, refiner.json)")
    p.add_argument("--refine-strength", type=float, default=1.0, help="refiner start time in (0, 1]; lower keeps more of the base clip")
    p.add_argument("--fast", action="store_true", help="text-to-video with the model's few-step student: 8 one-pass steps instead of 20 guided ones (0.16 s instead of 0.44 s for the default clip; no --guidance/--negative)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from kinema.pipeline import KinemaPipeline
    from kinema.safety import finalize_output, new_generation_id
    from kinema.safety.provenance import WATERMARKED_KEY
    from kinema.video import WRITE_SUFFIXES

    out = Path(args.output)
    if out.suffix.lower() not in WRITE_SUFFIXES:
        raise InvalidInputError(f"unknown output type '{out.suffix}' for '{out}': use one of {', '.join(WRITE_SUFFIXES)}")
    t0 = time.perf_counter()
    pipe = KinemaPipeline.from_pretrained(args.model or default_model_path())
    width, height = args.size if args.size else (None, None)
    seconds = args.seconds
    if out.suffix.lower() == ".png" and seconds is None and args.frames is None:
        seconds = 0.0
    bar = tqdm(desc="sampling", unit="step", disable=args.quiet, leave=False)
    video = pipe.generate(
        args.prompt, negative_prompt=args.negative, seconds=seconds, frames=args.frames, fps=args.fps,
        width=width, height=height, steps=args.steps, guidance=args.guidance, sampler=args.sampler, seed=args.seed,
        callback=lambda info: _advance(bar, info), image=args.image, video=args.video, end_video=args.end_video,
        mode=args.mode, strength=args.strength, context=args.context,
        refine=args.refine, refine_steps=args.refine_steps, refine_strength=args.refine_strength, refine_guidance=args.refine_guidance, blend_seams=args.blend_seams, fast=args.fast,
    )
    bar.close()
    params = json.loads(video.metadata["kinema:params"])
    if "user_prompt" in params and not args.quiet:  # normalized to the world vocabulary; generate() logged unknown words
        print(f"prompt read as: {params['prompt']!r}", file=sys.stderr)
    generation_id = video.metadata.get(WATERMARKED_KEY) or new_generation_id()
    path = finalize_output(video, out, params, model_id=pipe.name, generation_id=generation_id)
    if not args.quiet:
        print(f"wrote {path} ({video.num_frames} frames, {video.width}x{video.height}, {video.fps:g} fps) in {time.perf_counter() - t0:.1f}s")
    return 0


def _advance(bar, info) -> None:  # type: ignore[no-untyped-def]
    """One sampler step on the progress bar; each sampling pass (extend windows, loops) restarts it."""
    if info.step == 0:
        bar.reset(total=info.total)
    bar.update(1)


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show the model, what it supports, and versions")
    p.add_argument("--model", type=Path, default=None, help="model folder (default: $KINEMA_MODEL or the bundled model)")
    p.set_defaults(func=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    import av
    import torch

    from kinema.pipeline import KinemaPipeline

    path = args.model or default_model_path()
    pipe = KinemaPipeline.from_pretrained(path)
    cfg = pipe.config
    frames = pipe.allowed_frames()
    n_vae = sum(p.numel() for p in pipe.vae.parameters())
    n_dit = sum(p.numel() for p in pipe.dit.parameters())
    lines = [
        f"kinema {__version__} (torch {torch.__version__}, PyAV {av.__version__}, {torch.get_num_threads()} threads)",
        f"model: {cfg.name} at {path}",
        f"  {cfg.description}" if cfg.description else None,
        f"  VAE: {n_vae / 1e6:.2f}M params, spatial x{pipe.vae.config.spatial_factor}, temporal x{pipe.vae.config.temporal_factor}, {pipe.vae.config.latent_channels} latent channels",
        f"  DiT: {n_dit / 1e6:.2f}M params, patch {tuple(pipe.dit.config.patch_size)}, hidden {pipe.dit.config.hidden_size}, depth {pipe.dit.config.depth}",
        f"  text encoder: {cfg.text_encoder.path or 'bundled all-MiniLM-L6-v2'}",
        f"  refiner: {pipe.refiner.config.scale_factor}x ({pipe.refiner.config.guide} guide, {sum(p.numel() for p in pipe.refiner.dit.parameters()) / 1e6:.2f}M params, {pipe.refiner.config.steps} steps, guidance {pipe.refiner.config.guidance:g})" if pipe.refiner else "  refiner: none",
        f"sizes (WxH): {', '.join(f'{w}x{h}' for w, h in cfg.sizes)} (default {cfg.default_size[0]}x{cfg.default_size[1]})",
        f"frames: 1 + k*{pipe.temporal_factor} up to {cfg.max_frames} ({frames[0]}..{frames[-1]}); fps {cfg.fps_range[0]:g}-{cfg.fps_range[1]:g} (default {cfg.default_fps:g}); default {cfg.default_seconds:g} s",
        f"sampling: {cfg.sampler}, {cfg.steps} steps, guidance {cfg.guidance:g}",
        f"fast (--fast): few-step student, {cfg.fast_steps} steps, guidance built in" if pipe.fast_dit_folder or pipe.fast_dit else "fast (--fast): no student",
    ]
    print("\n".join(line for line in lines if line is not None))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kinema", description="Kinema: open Sora-style video generation (causal 3D VAE + spacetime-patch DiT + flow matching).")
    parser.add_argument("--version", action="version", version=f"kinema {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what is happening")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_generate(sub)
    _add_info(sub)
    for module in _optional_command_modules():
        before = set(sub.choices)
        module.add_parser(sub)
        for name in set(sub.choices) - before:
            if sub.choices[name].get_default("func") is None:
                sub.choices[name].set_defaults(func=module.run)
    return parser


def _optional_command_modules() -> list:
    """Sub-command modules of other packages (world, eval, train): each has add_parser() and run()."""
    import importlib

    modules = []
    for name in ("kinema.world.cli", "kinema.eval.cli", "kinema.eval.modes_cli", "kinema.train.cli", "kinema.export", "kinema.safety.cli", "kinema.serve.cli", "kinema.ui.cli"):
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as e:
            if e.name is None or not name.startswith(e.name):
                raise
    return modules


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KinemaError as e:
        print(f"kinema {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
