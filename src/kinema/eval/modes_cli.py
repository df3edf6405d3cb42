"""``kinema eval-modes``: measure every generation mode of a model on ground-truth clips of a split.

    kinema eval-modes --model src/kinema/weights/default --n 8 -o eval-modes
    kinema eval-modes --model runs/x/final --modes i2v,extend,loop --n 20 --steps 20 -o out
    kinema eval-modes --preset quick -o out            # 2 clips, 8 steps, a 6-second long video

Writes ``report.json`` (``summarize_modes``) and ``report.md`` (``markdown_report``: mode,
measurement, value, bar, pass rate, n) into ``-o`` and prints the table. See ``kinema.eval.modes`` for what each measurement is and its bar.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from kinema.eval.modes import EVAL_MODES, MODE_EVAL_PRESETS, ModeBars, ModeEvalRun, json_number, run_modes


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval-modes", help="measure image-to-video, extension, loops, connect, edit, long videos and the refiner",
        description="Evaluate each generation mode of a model on ground-truth clips of a world split "
                    "(first-frame PSNR, seam continuity, loop closure, edit fidelity, 20-second consistency, refiner "
                    "sharpness); writes report.json and report.md.",
    )
    p.add_argument("--model", type=Path, default=None, help="model folder (default: $KINEMA_MODEL or the bundled model)")
    p.add_argument("--preset", default="default", choices=sorted(MODE_EVAL_PRESETS), help="settings to start from (default: default)")
    p.add_argument("--modes", default=None,
                   help=f"comma-separated modes of {', '.join(EVAL_MODES)} (default: every mode the model has)")
    p.add_argument("--split", default=None, help="world split the clips come from (default heldout)")
    p.add_argument("--n", type=int, default=None, help="clips per mode (default 8)")
    p.add_argument("--long-n", type=int, default=None,
                   help="clips whose captions make a long video (default 2; may be more than --n)")
    p.add_argument("--seed", type=int, default=None, help="base seed of the split's examples and of generation")
    p.add_argument("--frames", type=int, default=None, help="frames per ground-truth clip (default 33)")
    p.add_argument("--fps", type=float, default=None, help="frames per second (default 16)")
    p.add_argument("--size", default=None, help="WIDTHxHEIGHT (default 64x64)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's)")
    p.add_argument("--context", type=int, default=None, help="latent frames of overlap for extend/loop/connect (default: the pipeline's)")
    p.add_argument("--strength", type=float, default=None, help="edit strength in (0, 1] (default 0.6)")
    p.add_argument("--long-seconds", type=float, default=None, help="length of the long video (default 20)")
    p.add_argument("--window-seconds", type=float, default=None, help="window in which objects must stay the same (default 2)")
    p.add_argument("--refine-steps", type=int, default=None, help="refiner sampling steps (default: the refiner's own, refiner.json)")
    p.add_argument("-o", "--out", default="eval-modes-out", help="folder for report.json and report.md")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from kinema.cli import default_model_path
    from kinema.errors import InvalidInputError
    from kinema.pipeline import KinemaPipeline

    cfg = MODE_EVAL_PRESETS[args.preset]
    overrides: dict[str, object] = {
        "split": args.split, "n": args.n, "long_n": args.long_n, "seed": args.seed, "num_frames": args.frames,
        "fps": args.fps, "steps": args.steps, "guidance": args.guidance, "context": args.context, "strength": args.strength,
        "long_seconds": args.long_seconds, "window_seconds": args.window_seconds, "refine_steps": args.refine_steps,
    }
    if args.size is not None:
        try:
            overrides["width"], overrides["height"] = (int(v) for v in args.size.lower().split("x"))
        except ValueError as e:
            raise InvalidInputError(f"--size must be WIDTHxHEIGHT, e.g. 64x64; got {args.size!r}") from e
    if args.modes is not None:
        overrides["modes"] = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if cfg.long_seconds <= 0 or cfg.window_seconds <= 0:
        raise InvalidInputError(f"--long-seconds and --window-seconds must be > 0, got {cfg.long_seconds} and {cfg.window_seconds}")
    model = args.model or default_model_path()
    pipe = KinemaPipeline.from_pretrained(model)
    result = run_modes(pipe, cfg, ModeBars(), model=str(model), progress=not args.quiet)
    jp, mp = write_mode_reports(result, args.out)
    print(mp.read_text())
    print(f"wrote {jp} and {mp}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------ reports
def summarize_modes(run: ModeEvalRun) -> dict[str, object]:
    """The JSON report: per mode and measurement n, passed, pass rate, median and mean value, bar; every clip."""
    modes: dict[str, dict[str, object]] = {}
    for mode in dict.fromkeys(r.mode for r in run.results):
        rs = [r for r in run.results if r.mode == mode]
        per: dict[str, dict[str, object]] = {}
        for name in dict.fromkeys(m.name for r in rs for m in r.measurements):
            ms = [m for r in rs for m in r.measurements if m.name == name]
            vals = np.array([m.value for m in ms], dtype=np.float64)
            finite = vals[~np.isnan(vals)]
            verdicts = [m.passed for m in ms if m.passed is not None]
            per[name] = {
                "n": len(ms), "bar": ms[0].bar, "op": ms[0].op,
                "passed": int(sum(verdicts)) if verdicts else None,
                "pass_rate": float(np.mean(verdicts)) if verdicts else None,
                "median": json_number(float(np.median(finite))) if finite.size else None,
                "mean": json_number(float(np.mean(finite))) if finite.size else None,
            }
        modes[mode] = {"clips": len(rs), "seconds_per_clip": float(np.mean([r.seconds for r in rs])),
                       "clip_pass_rate": float(np.mean([all(m.passed is not False for m in r.measurements) for r in rs])),
                       "measurements": per}
    return {"model": run.model, "config": dataclasses.asdict(run.config), "bars": dataclasses.asdict(run.bars),
            "modes": modes, "skipped_modes": dict(run.skipped_modes), "skipped_clips": list(run.skipped_clips),
            "results": [r.to_dict() for r in run.results]}


def markdown_report(summary: dict[str, object]) -> str:
    """A markdown table: mode, measurement, value (median over clips), bar, pass rate, n."""
    cfg = summary["config"]
    lines = [f"# Generation modes of `{summary['model']}`", "",
             f"{cfg['split']} split, {cfg['width']}x{cfg['height']}, {cfg['num_frames']} frames at {cfg['fps']:g} fps, "  # type: ignore[index]
             f"seed {cfg['seed']}; value = median over clips.", "",  # type: ignore[index]
             "| mode | measurement | value | bar | pass rate | n |", "|---|---|---|---|---|---|"]
    for mode, m in summary["modes"].items():  # type: ignore[union-attr]
        for name, v in m["measurements"].items():
            val = v["median"]
            val = "n/a" if val is None else val if isinstance(val, str) else f"{val:.3g}"
            bar = f"{v['op']} {v['bar']:g}" if v["bar"] is not None else "(reported)"
            rate = "" if v["pass_rate"] is None else f"{v['pass_rate']:.0%} ({v['passed']}/{v['n']})"
            lines.append(f"| {mode} | {name} | {val} | {bar} | {rate} | {v['n']} |")
    lines += ["", "| mode | clips | all bars met | seconds per clip |", "|---|---|---|---|"]
    for mode, m in summary["modes"].items():  # type: ignore[union-attr]
        lines.append(f"| {mode} | {m['clips']} | {m['clip_pass_rate']:.0%} | {m['seconds_per_clip']:.2f} |")
    for mode, why in summary["skipped_modes"].items():  # type: ignore[union-attr]
        lines.append(f"\nNot run: {mode} ({why}).")
    skipped = summary["skipped_clips"]
    if skipped:
        lines.append(f"\nSkipped clips: {len(skipped)} (" + "; ".join(f"{s['mode']} {s['clip_id']}: {s['reason']}" for s in skipped) + ")")  # type: ignore[union-attr]
    return "\n".join(lines) + "\n"


def write_mode_reports(run: ModeEvalRun, out: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``out``; returns their paths."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarize_modes(run)
    jp, mp = folder / "report.json", folder / "report.md"
    jp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    mp.write_text(markdown_report(summary))
    return jp, mp
