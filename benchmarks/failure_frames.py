"""Failure cases as frames: the model card's figures of what the evaluation suite catches.

Generates the first ``--n`` clips of a world split with a model (exactly as ``kinema eval --model``
does: the same clips, seeds and tracker), then picks, for each metric in ``--metrics``, the first clip
that fails it and is not picked yet, plus the first clip that passes colour, shape and direction. Each picked clip is one
row of a PNG: its caption and the metrics it fails, the ground-truth render (top) and the generated
clip (bottom), ``--frames`` frames evenly spaced over the clip, scaled up ``--scale`` times.

    python benchmarks/failure_frames.py --split heldout --n 24 --out docs/img/failures-heldout.png

The picks come from the run's own measurements; nothing is chosen by hand.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from kinema.eval.runner import RunConfig, SuiteRun, run_ground_truth, run_model
from kinema.eval.suites import SUITES

LINE_H = 12  # pixels per line of caption text above each row
GAP = 4  # pixels between rows and between the two strips of a row
SUCCESS = ("color", "shape", "direction")  # the metrics a row picked as a success passes


def failed(run: SuiteRun, cid: str) -> list[str]:
    clip = next(c for c in run.clips if c.clip_id == cid)
    return [name for name, m in clip.metrics.items() if m.passed is False]


def pick(run: SuiteRun, metrics: list[str]) -> list[tuple[str, str]]:
    """(clip id, why picked): for each metric the first clip failing it that is not picked yet, then the first
    clip passing ``SUCCESS`` that is not picked yet."""
    rows: list[tuple[str, str]] = []
    picked: set[str] = set()
    for name in metrics:
        for clip in run.clips:
            m = clip.metrics.get(name)
            if m is not None and m.passed is False and clip.clip_id not in picked:
                rows.append((clip.clip_id, f"first other clip to fail {name}" if rows else f"first to fail {name}"))
                picked.add(clip.clip_id)
                break
    for clip in run.clips:
        if clip.clip_id not in picked and all(clip.metrics.get(n) is not None and clip.metrics[n].passed for n in SUCCESS):
            rows.append((clip.clip_id, "first to pass " + ", ".join(SUCCESS)))
            break
    return rows


def upscale(strip: np.ndarray, scale: int) -> np.ndarray:
    """``(k, h, w, 3)`` -> one ``(h*scale, k*(w*scale + 2), 3)`` band (nearest neighbour, 2 white pixels apart)."""
    big = strip.repeat(scale, axis=1).repeat(scale, axis=2)
    pad = np.full((big.shape[0], big.shape[1], 2, 3), 255, dtype=np.uint8)
    return np.concatenate([np.concatenate([f, p], axis=1) for f, p in zip(big, pad)], axis=1)


def figure(model_run: SuiteRun, truth_run: SuiteRun, rows: list[tuple[str, str]], frames: int, scale: int) -> Image.Image:
    font = ImageFont.load_default()
    bands = []
    for cid, why in rows:
        idx = np.linspace(0, len(model_run.strips[cid]) - 1, frames).round().astype(int)
        gen, gt = upscale(model_run.strips[cid][idx], scale), upscale(truth_run.strips[cid][idx], scale)
        caption = next(c.caption for c in model_run.clips if c.clip_id == cid)
        fails = failed(model_run, cid)
        bands.append((f"{cid} ({why}): \"{caption}\"", "fails: " + (", ".join(fails) if fails else "nothing"), gt, gen))
    width = max(gt.shape[1] for _, _, gt, _ in bands)
    chars = max(20, int(width / max(font.getlength("m"), 1.0)))  # a line's characters at the widest glyph
    texts = [textwrap.wrap(head, chars) + textwrap.wrap(fails, chars) for head, fails, _, _ in bands]
    height = sum(LINE_H * len(t) + 2 + gt.shape[0] + GAP + gen.shape[0] + 2 * GAP for t, (_, _, gt, gen) in zip(texts, bands))
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = 0
    for lines, (_, _, gt, gen) in zip(texts, bands):
        for line in lines:
            draw.text((2, y + 1), line, fill=(0, 0, 0), font=font)
            y += LINE_H
        y += 2
        canvas.paste(Image.fromarray(gt), (0, y))
        y += gt.shape[0] + GAP
        canvas.paste(Image.fromarray(gen), (0, y))
        y += gen.shape[0] + 2 * GAP
    return canvas


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="src/kinema/weights/default", help="pipeline folder")
    p.add_argument("--split", default="heldout", help="world split (heldout, test, ood, ...)")
    p.add_argument("--n", type=int, default=24, help="clips generated and looked through")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--metrics", default="color,shape,count,spurious,direction,gravity",
                   help="comma-separated metrics whose first failure gets a row")
    p.add_argument("--frames", type=int, default=6, help="frames shown per clip")
    p.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscale of each frame")
    p.add_argument("--out", required=True, help="PNG to write")
    args = p.parse_args()
    metrics = [m for m in args.metrics.split(",") if m]
    suite = SUITES["t2v"]
    unknown = [m for m in metrics if m not in suite.metrics]
    if unknown:
        raise SystemExit(f"--metrics: {unknown} are not t2v metrics; choose from {list(suite.metrics)}")
    cfg = RunConfig(split=args.split, n=args.n, seed=args.seed)
    model_run = run_model(suite, args.model, cfg, progress=True)
    truth_run = run_ground_truth(suite, cfg)
    rows = pick(model_run, metrics)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure(model_run, truth_run, rows, args.frames, args.scale).save(out, optimize=True)
    print(f"{args.model} on {args.split} (first {args.n} clips, seed {args.seed}): wrote {out}, {len(rows)} rows")
    for cid, why in rows:
        print(f"  {cid} ({why}): fails {', '.join(failed(model_run, cid)) or 'nothing'}")


if __name__ == "__main__":
    main()
