"""Two evaluation reports of the same clips, compared clip by clip.

    python benchmarks/compare_reports.py A/report.json B/report.json [--names shipped,trial]

Both must come from ``kinema eval`` (or ``kinema eval-modes``) with the same split, seed and clips, so each
clip's verdict pairs with its twin. For each metric (eval-modes: mode/measurement) it prints both pass rates,
the clips one passes and the other fails (lost / gained going from A to B) and the two-sided exact sign
test's p-value on those discordant clips: whether B differs from A beyond the noise of these clips.
Pass rates with overlapping intervals can still differ significantly when most clips agree.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def sign_test(lost: int, gained: int) -> float:
    """Two-sided exact binomial p-value of ``lost`` against ``gained`` discordant pairs (p = 1/2 each)."""
    n = lost + gained
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(lost, gained) + 1)) / 2**n
    return min(1.0, 2.0 * tail)


def verdicts(report: dict) -> dict[str, dict[str, bool]]:
    """Metric -> clip -> passed, from a ``kinema eval`` or ``kinema eval-modes`` report (clips without the metric left out)."""
    out: dict[str, dict[str, bool]] = {}
    for r in report["results"]:
        if "metrics" in r:  # kinema eval
            for name, m in r["metrics"].items():
                if m.get("passed") is not None:
                    out.setdefault(name, {})[r["clip_id"]] = bool(m["passed"])
        else:  # kinema eval-modes: one row per (mode, clip)
            for m in r["measurements"]:
                if m.get("passed") is not None:
                    out.setdefault(f"{r['mode']}/{m['name']}", {})[r["clip_id"]] = bool(m["passed"])
    return out


def compare(a: dict, b: dict) -> list[dict[str, object]]:
    """Per metric in both: n of each, pass rates, paired clips, lost (A passes, B fails), gained, sign-test p."""
    va, vb = verdicts(a), verdicts(b)
    rows = []
    for name in [m for m in va if m in vb]:
        pa, pb = va[name], vb[name]
        both = [c for c in pa if c in pb]
        lost = sum(1 for c in both if pa[c] and not pb[c])
        gained = sum(1 for c in both if pb[c] and not pa[c])
        rows.append({"metric": name, "n_a": len(pa), "n_b": len(pb), "rate_a": sum(pa.values()) / len(pa),
                     "rate_b": sum(pb.values()) / len(pb), "paired": len(both), "lost": lost, "gained": gained,
                     "p": sign_test(lost, gained)})
    return rows


def table(rows: list[dict[str, object]], names: tuple[str, str]) -> str:
    lines = [f"| metric | {names[0]} (n) | {names[1]} (n) | lost / gained | sign test p |", "|---|---|---|---|---|"]
    for r in rows:
        mark = " *" if float(r["p"]) < 0.05 else ""  # type: ignore[arg-type]
        lines.append(f"| {r['metric']} | {100 * float(r['rate_a']):.1f}% ({r['n_a']}) | {100 * float(r['rate_b']):.1f}% ({r['n_b']}) "  # type: ignore[arg-type]
                     f"| {r['lost']} / {r['gained']} | {float(r['p']):.3f}{mark} |")  # type: ignore[arg-type]
    return "\n".join(lines) + "\n\n\\* p < 0.05 (two-sided exact sign test on the clips whose verdicts differ)\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=Path, help="report.json of the reference")
    p.add_argument("b", type=Path, help="report.json of the candidate")
    p.add_argument("--names", default="A,B", help="column names, comma-separated (default A,B)")
    args = p.parse_args()
    a, b = (json.loads(path.read_text()) for path in (args.a, args.b))
    if "config" in a and "config" in b:
        keys = ("split", "seed", "width", "height", "num_frames")
        differ = [k for k in keys if a["config"].get(k) != b["config"].get(k)]
        if differ:
            raise SystemExit(f"the reports are of different clips ({', '.join(differ)} differ): compare runs of the same clips")
    names = tuple(args.names.split(",", 1)) if "," in args.names else (args.names, "B")
    print(table(compare(a, b), names))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
