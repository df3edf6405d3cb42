"""``kinema train vae|dit|refiner|reflow`` and ``kinema cache text|latents``.

    kinema train vae --config configs/vae_tiny.yaml --data data/manifest.csv --out runs/vae-tiny
    kinema train dit --config configs/dit_tiny.yaml --data world:train --out runs/dit --optim.lr=1e-4
    kinema train refiner --config configs/refiner_world.yaml --data world:train --out runs/refiner-world
    kinema train reflow --model src/kinema/weights/default --data data/wd/manifest.jsonl --out runs/reflow
    torchrun --nproc_per_node 2 -m kinema train dit ... --parallel fsdp
    kinema cache text --config configs/dit_tiny.yaml --data data/manifest.csv --out caches/tiny
    kinema cache latents --config configs/dit_tiny.yaml --data data/manifest.csv --out caches/tiny
    kinema cache text --for refiner --dtype float16 --preset world --config configs/refiner_default.yaml \
        --data world:train --out caches/refiner

Config resolution: preset (``--preset``, default ``tiny``) -> YAML (``--config``) -> dotted overrides
(``--optim.lr=1e-4``, or ``--init=DIR`` for a top-level key; any number, anywhere after the sub-command). The resolved config is saved as
``RUN/config.yaml``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import types
from pathlib import Path
from typing import Any

from kinema.config import load_config
from kinema.errors import InvalidInputError, KinemaError

log = logging.getLogger("kinema.train")


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate dotted ``--a.b=value`` overrides from the other arguments."""
    rest, overrides = [], []
    for arg in argv:
        head = arg.split("=", 1)[0]
        if arg.startswith("--") and "." in head and "=" in arg:
            overrides.append(arg)
        else:
            rest.append(arg)
    return rest, overrides


def _accept_overrides(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` collect ``--a.b=value`` arguments into ``args.overrides`` (works as a sub-parser)."""
    original = parser.parse_known_args

    def parse_known_args(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        rest, overrides = split_overrides(argv)
        ns, extra = original(rest, namespace)
        # `--key=value` that is no option of the command sets a top-level config key (`--init=DIR`);
        # load_config names the allowed keys when it is none
        top = [a for a in extra if a.startswith("--") and "=" in a]
        ns.overrides = [*getattr(ns, "overrides", []), *overrides, *top]
        return ns, [a for a in extra if a not in top]

    parser.parse_known_args = types.MethodType(parse_known_args, parser)  # type: ignore[method-assign]
    parser.set_defaults(overrides=[])


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="YAML config (see configs/)")
    p.add_argument("--preset", default="tiny", help="base preset the YAML and overrides apply to (default: tiny)")
    p.add_argument("--data", required=True, help="CSV/JSONL manifest, latent-cache folder, or world:SPLIT")
    p.add_argument("--out", type=Path, required=True, help="run / cache folder")


def add_parser(subparsers: Any) -> None:
    """Register ``train`` and ``cache`` on the ``kinema`` command's sub-parsers."""
    train = subparsers.add_parser("train", help="train the VAE, the DiT or the refiner")
    train_sub = train.add_subparsers(dest="model", required=True)
    helps = {"vae": "train the VAE", "dit": "train the DiT", "refiner": "train the 2x refiner DiT (buckets = high-res sizes)"}
    for name, text in helps.items():
        p = train_sub.add_parser(name, help=f"{text}  [--key.sub=value | --key=value ...]")
        _common(p)
        p.add_argument("--resume", nargs="?", const="latest", default=None,
                       help="continue from the newest checkpoint in --out (or from the given checkpoint folder)")
        p.add_argument("--stop-after", type=int, default=None, help="stop after N steps of this invocation (resumable)")
        p.add_argument("--parallel", choices=["none", "ddp", "fsdp"], default=None, help="shortcut for --parallel.mode")
        if name == "dit":
            p.add_argument("--cache", type=Path, default=None, help="folder with text/ and/or latents/ caches")
        if name == "refiner":
            p.add_argument("--cache", type=Path, default=None, help="folder with a text/ cache (the refiner needs pixels, not latents)")
        p.set_defaults(func=run, command="train")
        _accept_overrides(p)
    _add_reflow_parser(train_sub)
    cache = subparsers.add_parser("cache", help="precompute text embeddings or VAE latents for DiT training")
    cache_sub = cache.add_subparsers(dest="kind", required=True)
    for name in ("text", "latents"):
        p = cache_sub.add_parser(name, help=f"build the {name} cache  [--key.sub=value | --key=value ...]")
        _common(p)
        p.add_argument("--batch-size", type=int, default=8, help="clips per VAE encode (latents)")
        p.add_argument("--for", dest="model", choices=("dit", "refiner"), default="dit",
                       help="whose --config (and buckets) the cache is for: a DiT or a refiner run (text caches only)")
        if name == "text":
            p.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                           help="storage of the token states (float16 halves the cache; read back as float32)")
        p.set_defaults(func=run, command="cache")
        _accept_overrides(p)


def _add_reflow_parser(train_sub: Any) -> None:
    """``kinema train reflow``: teacher pairs from a trained pipeline, then a few-step student."""
    p = train_sub.add_parser("reflow", help="distill a few-step student from a trained pipeline  [--key.sub=value | --key=value ...]")
    p.add_argument("--model", type=Path, required=True, help="teacher pipeline folder (e.g. src/kinema/weights/default)")
    p.add_argument("--data", type=Path, required=True, help="prompts: a .txt file (one per line) or a manifest (its captions)")
    p.add_argument("--out", type=Path, required=True, help="run folder (pairs/, checkpoints/, final/)")
    p.add_argument("--config", type=Path, default=None, help="YAML config (see configs/reflow_default.yaml)")
    p.add_argument("--preset", default="default", help="base preset: tiny or default (default: default)")
    p.add_argument("--stop-after", type=int, default=None, help="stop after N training steps of this invocation (resumable)")
    p.add_argument("--pairs-only", action="store_true", help="only make the teacher pairs")
    p.set_defaults(func=_run_reflow, command="train")
    _accept_overrides(p)


def _run_reflow(args: argparse.Namespace) -> int:
    from kinema.train.reflow import run as run_reflow

    return run_reflow(args)


def _load(cls: type, presets: dict[str, Any], args: argparse.Namespace) -> Any:
    if args.preset not in presets:
        raise InvalidInputError(f"--preset {args.preset!r} unknown; allowed: {sorted(presets)}")
    overrides = list(args.overrides)
    if getattr(args, "parallel", None):
        overrides.append(f"--parallel.mode={args.parallel}")
    if getattr(args, "cache", None):
        cache = Path(args.cache)
        if (cache / "text" / "index.json").is_file():
            overrides.append(f"--data.text_cache={cache / 'text'}")
        if (cache / "latents" / "index.json").is_file() and getattr(args, "model", None) != "refiner":
            overrides.append(f"--data.latent_cache={cache / 'latents'}")
        if not any(o.startswith("--data.") and "_cache=" in o for o in overrides):
            raise InvalidInputError(f"--cache {cache}: holds neither text/index.json nor latents/index.json")
    return load_config(cls, args.config, overrides, base=presets[args.preset])


def run(args: argparse.Namespace) -> int:
    """Entry point of ``kinema train ...`` and ``kinema cache ...``; returns the exit status."""
    from kinema.train.config import (
        DIT_TRAIN_PRESETS,
        REFINER_TRAIN_PRESETS,
        VAE_TRAIN_PRESETS,
        DiTTrainConfig,
        RefinerTrainConfig,
        VAETrainConfig,
    )

    if args.command == "train" and args.model == "vae":
        from kinema.train.vae_trainer import train_vae

        result = train_vae(_load(VAETrainConfig, VAE_TRAIN_PRESETS, args), args.data, args.out, resume=args.resume, stop_after=args.stop_after)
    elif args.command == "train" and args.model == "refiner":
        from kinema.train.refiner_trainer import train_refiner

        result = train_refiner(_load(RefinerTrainConfig, REFINER_TRAIN_PRESETS, args), args.data, args.out,
                               resume=args.resume, stop_after=args.stop_after)
    elif args.command == "train":
        from kinema.train.dit_trainer import train_dit

        result = train_dit(_load(DiTTrainConfig, DIT_TRAIN_PRESETS, args), args.data, args.out, resume=args.resume, stop_after=args.stop_after)
    elif args.model == "refiner":
        if args.kind != "text":
            raise InvalidInputError("`kinema cache latents --for refiner`: the refiner trains on pixels; cache its text only")
        return _cache(_load(RefinerTrainConfig, REFINER_TRAIN_PRESETS, args), args)
    else:
        return _cache(_load(DiTTrainConfig, DIT_TRAIN_PRESETS, args), args)
    if result.rank == 0:
        print(f"step {result.step}: loss {result.last_loss:.4f}, {result.steps_per_second:.2f} steps/s, "
              f"{len(result.skipped_files)} files skipped; run folder {result.run_dir}"
              + (f"; final weights in {result.final_dir}" if result.final_dir else ""))
    return 0


def _cache(cfg: Any, args: argparse.Namespace) -> int:
    import torch

    from kinema.data.cache import build_latent_cache, build_text_cache
    from kinema.data.datasets import VideoDataset, open_dataset

    dataset = open_dataset(args.data, cfg.data.buckets, target_fps=cfg.data.fps, seed=cfg.data.seed,
                           random_crop=cfg.data.random_crop, world_clips=cfg.data.world_clips)
    if args.kind == "text":
        from kinema.text.encoder import TextEncoder

        if isinstance(dataset, VideoDataset):
            captions = [e.caption for e, b in zip(dataset.entries, dataset.bucket_of) if b >= 0]
        else:
            captions = [dataset[(i, 0)]["caption"] for i in range(len(dataset))]
        folder = build_text_cache(captions, TextEncoder(cfg.text), args.out, dtype=getattr(torch, args.dtype))
        print(f"text cache: {len(set(captions)) + 1} captions -> {folder}")
        return 0
    if not isinstance(dataset, VideoDataset):
        raise InvalidInputError(f"`kinema cache latents` needs a manifest; got --data {args.data}")
    import torch

    from kinema.train.dit_trainer import LatentSource, with_init_model

    cfg = with_init_model(cfg)  # a continuation config (stage 2, ...) caches for the init's model shape
    device = "cuda" if torch.cuda.is_available() and cfg.runtime.device != "cpu" else "cpu"
    source = LatentSource(cfg, torch.device(device), None, None)
    folder, report = build_latent_cache(dataset, source.vae, args.out, batch_size=args.batch_size, device=device, vae_path=cfg.vae.path)
    print(f"latent cache -> {folder} ({report.skipped} files skipped)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m kinema.train.cli train dit ...``), also used under torchrun."""
    parser = argparse.ArgumentParser(prog="kinema")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except KinemaError as e:
        print(f"kinema {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
