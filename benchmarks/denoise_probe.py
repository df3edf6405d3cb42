"""Where does a model lose what the caption asks for? Denoise ground truth from flow time t and check it.

Each held-out clip is encoded, noised to flow time ``t`` and sampled back with its own caption (the
pipeline's SDEdit path, ``mode="edit"``, ``strength=t``), then checked with the tracker. At small
``t`` the noised latent still shows every object, so what is lost there is lost by the late, low-noise
steps (detail: shapes, sizes); what is only lost from large ``t`` is decided by the early steps
(layout: how many objects, where). ``t = 1`` is plain text-to-video.

    python benchmarks/denoise_probe.py --model src/kinema/weights/default --n 40 --times 0.2,0.4,0.6,0.8

Prints one row per ``t``: the share of clips passing each metric (MODEL_CARD.md quotes it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from kinema.eval.evaluate import evaluate_frames
from kinema.eval.expectations import from_spec
from kinema.pipeline import KinemaPipeline
from kinema.world import sample_spec
from kinema.world.render import render

METRICS = ("color", "shape", "count", "spurious", "direction")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="src/kinema/weights/default", help="pipeline folder")
    p.add_argument("--n", type=int, default=40, help="held-out clips (examples 0 .. n-1)")
    p.add_argument("--split", default="heldout")
    p.add_argument("--seed", type=int, default=0, help="split seed; clip i is sampled with seed + i")
    p.add_argument("--times", default="0.2,0.4,0.6,0.8", help="flow times to denoise from, comma-separated, each in (0, 1]")
    p.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = p.parse_args()
    times = [float(x) for x in args.times.split(",")]
    if not times or any(not 0.0 < t <= 1.0 for t in times):
        raise SystemExit(f"--times must be flow times in (0, 1], got {args.times!r}")
    pipe = KinemaPipeline.from_pretrained(args.model)
    pipe.config.watermark = False  # the probe reads the model's pixels, not the mark
    passed = {t: {m: 0 for m in METRICS} for t in times}
    seen = {t: {m: 0 for m in METRICS} for t in times}
    for i in tqdm(range(args.n), desc="clips", unit="clip"):
        spec = sample_spec(args.split, args.seed, i, 64, 64, 16.0, 33)
        frames = render(spec)
        for t in times:
            out = pipe.generate(spec.caption, video=frames, mode="edit", strength=t, seed=args.seed + i).frames
            res = evaluate_frames(out, from_spec(spec), spec.fps, list(METRICS))
            for name, m in res.metrics.items():
                seen[t][name] += 1
                passed[t][name] += bool(m.passed)
    table = {t: {m: (passed[t][m] / seen[t][m] if seen[t][m] else None, seen[t][m]) for m in METRICS} for t in times}
    print(f"{args.model}: {args.n} {args.split} clips, denoised from flow time t")
    print("t     " + "".join(f"{m:>14}" for m in METRICS))
    for t in times:
        print(f"{t:<6g}" + "".join(f"{'-' if v is None else f'{100 * v:.0f}%'} (n={k})".rjust(14) for v, k in table[t].values()))
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "n": args.n, "split": args.split, "seed": args.seed,
                                         "table": {str(t): {m: {"pass_rate": v, "clips": k} for m, (v, k) in row.items()}
                                                   for t, row in table.items()}}, indent=1))


if __name__ == "__main__":
    main()
