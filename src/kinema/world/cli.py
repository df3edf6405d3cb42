"""``kinema world`` commands: render a caption, write a dataset split, print sample captions.

    kinema world render "two red balls fall on a dark background" -o gt.mp4 [--size 96x64 --fps 16
        --seconds 2 | --frames 33] [--seed 0] [--spec gt.json]
    kinema world dataset --split train --n 1000 --out data/world/train [--size 64x64 --fps 16 --frames 33]
    kinema world sample --split heldout --n 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kinema.errors import InvalidInputError, KinemaError


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} must look like WIDTHxHEIGHT, e.g. 64x64") from None
    return w, h


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``world`` command and its sub-commands to a ``kinema`` sub-parser set."""
    from kinema.world.splits import SPLITS

    p = subparsers.add_parser("world", help="Kinema World: render captions, write datasets, sample captions")
    sub = p.add_subparsers(dest="world_command", required=True)
    r = sub.add_parser("render", help="render a caption in the world's vocabulary to a video")
    r.add_argument("caption")
    r.add_argument("-o", "--out", required=True, help="output video (.mp4, .webm, .gif, .png)")
    r.add_argument("--size", type=_size, default=(64, 64), help="WIDTHxHEIGHT (default 64x64)")
    r.add_argument("--fps", type=float, default=16.0)
    length = r.add_mutually_exclusive_group()
    length.add_argument("--seconds", type=float, default=None, help="duration; frames = seconds * fps + 1")
    length.add_argument("--frames", type=int, default=None, help="number of frames (default 33)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--spec", default=None, help="also write the ground-truth spec JSON here")
    d = sub.add_parser("dataset", help="write a split as MP4 clips + specs + manifest.jsonl")
    d.add_argument("--split", choices=SPLITS, default="train")
    d.add_argument("--n", type=int, default=1000)
    d.add_argument("--out", required=True)
    d.add_argument("--size", type=_size, default=(64, 64))
    d.add_argument("--fps", type=float, default=16.0)
    d.add_argument("--frames", type=int, default=33)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--start", type=int, default=0, help="first example index (to extend a dataset)")
    s = sub.add_parser("sample", help="print sample captions of a split")
    s.add_argument("--split", choices=SPLITS, default="train")
    s.add_argument("--n", type=int, default=10)
    s.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)
    return p


def _render(args: argparse.Namespace) -> int:
    from kinema.video import Video
    from kinema.world import make_clip, parse_caption

    width, height = args.size
    frames = args.frames if args.frames is not None else (
        int(round(args.seconds * args.fps)) + 1 if args.seconds is not None else 33
    )
    if frames < 1 or frames > 2000:
        raise InvalidInputError(f"frames must be in 1..2000, got {frames}")
    scene = parse_caption(args.caption)
    spec, video = make_clip(scene, width, height, args.fps, frames, seed=args.seed, caption=args.caption)
    out = Video(video, args.fps, {"comment": args.caption}).save(args.out)
    print(f"wrote {out} ({frames} frames, {width}x{height} at {args.fps:g} fps)")
    if spec.problems:  # best effort: no layout drawn from this seed shows everything the caption says
        print(f"warning: the video does not show everything the caption says (seed {args.seed}); "
              f"try another --seed or fewer objects: " + "; ".join(spec.problems), file=sys.stderr)
    if args.spec:
        spec.to_json(Path(args.spec))
        print(f"wrote {args.spec}")
    return 0


def _dataset(args: argparse.Namespace) -> int:
    from kinema.world.dataset import write_dataset

    width, height = args.size
    manifest = write_dataset(args.out, args.split, args.n, width, height, args.fps, args.frames, args.seed,
                             start=args.start)
    print(f"wrote {args.n} clips, manifest {manifest}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from kinema.world.captions import describe
    from kinema.world.splits import example_rng, sample_scene

    for i in range(args.n):
        rng = example_rng(args.split, args.seed, i)
        print(describe(sample_scene(rng, args.split), rng))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``kinema world ...`` command; errors print on one line and return 2."""
    handlers = {"render": _render, "dataset": _dataset, "sample": _sample}
    try:
        return handlers[args.world_command](args)
    except KinemaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kinema")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
