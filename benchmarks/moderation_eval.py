"""Recall and false-positive rate of the prompt moderator on every evaluation set of the project.

    .venv/bin/python benchmarks/moderation_eval.py [--preset default] [--json out.json] [--misses]

Sets (``src/kinema/safety/data``): ``eval_blocked.json`` + ``eval_benign.txt`` (development),
``eval_holdout5.json`` (held out, never used for tuning), and ``eval_holdout.json`` to
``eval_holdout4.json``, which were held out when written and are part of the classifier's labelled
bank since session 15 (printed with "(bank)": a check, not a measurement of
generalisation). See docs/safety.md for which were seen when. Prints one row per set; ``--misses`` lists every missed
blocked prompt and every refused benign one.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources

from kinema.safety.moderation import CATEGORIES, LABELLED_FILES, MODERATION_PRESETS, Moderator

DATA = resources.files("kinema.safety").joinpath("data")


def evaluation_sets() -> dict[str, tuple[dict[str, list[str]], list[str]]]:
    """name -> (blocked prompts per category, benign prompts)."""
    dev_blocked = json.loads(DATA.joinpath("eval_blocked.json").read_text())
    dev_benign = [line for line in DATA.joinpath("eval_benign.txt").read_text().splitlines() if line.strip()]
    sets = {"development": ({c: dev_blocked[c] for c in CATEGORIES}, dev_benign)}
    for name in ("eval_holdout5.json", "eval_holdout.json", "eval_holdout2.json", "eval_holdout3.json", "eval_holdout4.json"):
        data = json.loads(DATA.joinpath(name).read_text())
        label = name.removeprefix("eval_").removesuffix(".json") + (" (bank)" if name in LABELLED_FILES else "")
        sets[label] = (data["blocked"], data["benign"])
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default", choices=sorted(MODERATION_PRESETS))
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--misses", action="store_true", help="list missed blocked and refused benign prompts")
    args = ap.parse_args()
    moderator = Moderator(MODERATION_PRESETS[args.preset])
    results = {}
    print(f"{'set':16s} {'recall':>16s} {'false positives':>18s}   per-category recall")
    for name, (blocked, benign) in evaluation_sets().items():
        t0 = time.perf_counter()
        per_cat, missed = {}, []
        for cat, prompts in blocked.items():
            hits = [not moderator.review(p).allowed for p in prompts]
            per_cat[cat] = (sum(hits), len(prompts))
            missed += [(cat, p) for p, h in zip(prompts, hits) if not h]
        verdicts = [(p, moderator.review(p)) for p in benign]
        refused = [(p, v.category) for p, v in verdicts if not v.allowed]
        caught, total = sum(h for h, _ in per_cat.values()), sum(n for _, n in per_cat.values())
        results[name] = {"recall": caught / total, "caught": caught, "blocked": total, "false_positive_rate": len(refused) / len(benign),
                         "refused": len(refused), "benign": len(benign), "per_category": per_cat,
                         "seconds_per_prompt": (time.perf_counter() - t0) / (total + len(benign))}
        cats = " ".join(f"{c}={h}/{n}" for c, (h, n) in per_cat.items())
        print(f"{name:16s} {100 * caught / total:6.1f}% ({caught:3d}/{total:3d}) {100 * len(refused) / len(benign):7.1f}% ({len(refused):3d}/{len(benign):3d})   {cats}")
        if args.misses:
            for cat, p in missed:
                print(f"    missed [{cat}] {p}")
            for p, cat in refused:
                print(f"    refused as {cat}: {p}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"preset": args.preset, "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
