"""``kinema eval``: run a suite on a model, on existing videos, or on ground-truth renders.

    kinema eval --model weights/kinema-world --suite t2v --split heldout --n 50 -o eval-out
    kinema eval --videos data/world-test --suite physics -o eval-out
    kinema eval --ground-truth --suite calibration --n 100 --crf 23 -o eval-out
    kinema eval --vae src/kinema/weights/default --suite calibration --n 200 -o eval-out
    kinema eval --ground-truth --corrupt mirror --suite t2v --n 30 -o eval-out

Writes ``report.json`` and ``report.html`` into ``-o``; prints the per-metric pass rates.
"""

from __future__ import annotations

import argparse
import sys

from kinema.eval.corruptions import CORRUPTIONS
from kinema.eval.report import summarize, write_reports
from kinema.eval.runner import RunConfig, run_ground_truth, run_model, run_vae, run_videos
from kinema.eval.suites import SUITES, get_suite
from kinema.eval.thresholds import THRESHOLD_PRESETS


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval", help="measure a model (or videos) where video generators are known to fail",
        description="Evaluate generated videos with a pixel tracker and one metric per failure mode; writes report.json and report.html.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a Kinema pipeline folder: generate from each clip's caption")
    src.add_argument("--videos", help="a folder of MP4s with their spec JSON (manifest.jsonl from `kinema world`, or x.mp4 + x.json)")
    src.add_argument("--ground-truth", action="store_true", help="evaluate ground-truth renders (calibration)")
    src.add_argument("--vae", help="a VAE folder (or a pipeline folder): evaluate its reconstructions of ground-truth renders, with PSNR")
    p.add_argument("--suite", default="t2v", choices=sorted(SUITES), help="which suite (default t2v)")
    p.add_argument("--split", default="heldout", help="world split the clips come from (default heldout)")
    p.add_argument("--n", type=int, default=20, help="number of clips (default 20)")
    p.add_argument("--seed", type=int, default=0, help="base seed of the split's examples and of generation")
    p.add_argument("--frames", type=int, default=33, help="frames per clip (default 33)")
    p.add_argument("--fps", type=float, default=16.0)
    p.add_argument("--size", default="64x64", help="WIDTHxHEIGHT (default 64x64)")
    p.add_argument("--crf", type=int, default=None, help="ground truth or --vae: MP4 round trip at this CRF")
    p.add_argument("--corrupt", default="", choices=[""] + sorted(CORRUPTIONS), help="ground truth: break the videos this way")
    p.add_argument("--thresholds", default="default", choices=sorted(THRESHOLD_PRESETS))
    p.add_argument("--steps", type=int, default=None, help="model: sampling steps (default: the model's)")
    p.add_argument("--guidance", type=float, default=None, help="model: guidance scale (default: the model's)")
    p.add_argument("--fast", action="store_true", help="model: sample with its few-step student (text-to-video suites)")
    p.add_argument("-o", "--out", default="eval-out", help="folder for report.json and report.html")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from kinema.errors import InvalidInputError

    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError as e:
        raise InvalidInputError(f"--size must be WIDTHxHEIGHT, e.g. 64x64; got {args.size!r}") from e
    if args.n < 1:
        raise InvalidInputError(f"--n must be >= 1, got {args.n}")
    if args.corrupt and not args.ground_truth:
        raise InvalidInputError("--corrupt applies to --ground-truth only")
    if args.fast and not args.model:
        raise InvalidInputError("--fast applies to --model only")
    if args.crf is not None and not (args.ground_truth or args.vae):
        raise InvalidInputError("--crf applies to --ground-truth and --vae only")
    cfg = RunConfig(split=args.split, n=args.n, seed=args.seed, width=w, height=h, fps=args.fps,
                    num_frames=args.frames, crf=args.crf, corruption=args.corrupt, thresholds=args.thresholds)
    suite = get_suite(args.suite)
    if args.model:
        result = run_model(suite, args.model, cfg, steps=args.steps, guidance=args.guidance, fast=args.fast, progress=not args.quiet)
    elif args.vae:
        result = run_vae(suite, args.vae, cfg, progress=not args.quiet)
    elif args.videos:
        result = run_videos(suite, args.videos, cfg, progress=not args.quiet)
    else:
        result = run_ground_truth(suite, cfg, progress=not args.quiet)
    jp, hp = write_reports(result, args.out)
    s = summarize(result)
    print(f"suite {suite.name} on {result.source}: {s['clips']} clips, "
          f"{(s['clip_pass_rate'] or 0.0):.1%} pass every metric")
    if s["psnr"]:
        ps = s["psnr"]
        print(f"  reconstruction PSNR mean {ps['mean_db']:.2f} dB, median {ps['median_db']:.2f}, "  # type: ignore[index]
              f"10th percentile {ps['p10_db']:.2f}, min {ps['min_db']:.2f}")  # type: ignore[index]
    for name, v in s["metrics"].items():  # type: ignore[union-attr]
        if v["clips"]:
            lo, hi = v["ci95"]
            print(f"  {name:<13} {v['pass_rate']:6.1%}  [{lo:.1%}, {hi:.1%}]  n={v['clips']}")
    print(f"wrote {jp} and {hp}", file=sys.stderr)
    return 0
