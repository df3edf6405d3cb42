"""Reports of a suite run: a JSON summary and a self-contained HTML page.

Clips left out of the run (ground truth not clean) are counted (``skipped``) and listed with their
reasons (``skipped_clips``) in both.

Per metric: the pass rate over the clips it applied to, with a bootstrap 95% interval (1,000
resamples of the clips), and the mean value. The HTML page draws the pass rates as a bar chart
(PNG made with Pillow, inlined as base64) and shows the worst clips as frame strips with what failed.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from kinema.eval.runner import SuiteRun


def bootstrap_ci(passed: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of a 0/1 array (n,)."""
    if passed.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, passed.size, size=(n_boot, passed.size))  # (n_boot, n)
    means = passed[idx].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarize(run: SuiteRun) -> dict[str, object]:
    """The JSON report: suite, source, thresholds, overall and per-metric pass rates, every clip."""
    per: dict[str, dict[str, object]] = {}
    for name in run.suite.metrics:
        rs = [c.metrics[name] for c in run.clips if name in c.metrics]
        ok = np.array([r.passed for r in rs], dtype=float)
        lo, hi = bootstrap_ci(ok)
        per[name] = {"clips": len(rs), "passed": int(ok.sum()), "pass_rate": float(ok.mean()) if rs else None,
                     "ci95": [lo, hi] if rs else None,
                     "mean_value": float(np.mean([r.value for r in rs])) if rs else None,
                     "threshold": float(rs[0].threshold) if rs else None}
    allok = np.array([c.passed for c in run.clips], dtype=float)
    lo, hi = bootstrap_ci(allok)
    return {
        "suite": run.suite.name, "description": run.suite.description, "mode": run.suite.mode,
        "source": run.source, "config": asdict(run.config), "thresholds": asdict(run.thresholds),
        "clips": len(run.clips), "clip_pass_rate": float(allok.mean()) if run.clips else None,
        "clip_pass_ci95": [lo, hi] if run.clips else None,
        "skipped": len(run.skipped), "skipped_clips": [k.to_dict() for k in run.skipped], "metrics": per,
        "results": [c.to_dict() for c in run.clips],
        "psnr": _psnr_summary(run.psnr) if run.psnr else None,
    }


def _psnr_summary(values: dict[str, float]) -> dict[str, object]:
    v = np.array(list(values.values()), dtype=float)
    return {"mean_db": float(v.mean()), "median_db": float(np.median(v)), "min_db": float(v.min()),
            "p10_db": float(np.percentile(v, 10)), "clips": int(v.size), "per_clip": dict(values)}


def _png(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def bar_chart(per: dict[str, dict[str, object]], width: int = 640) -> Image.Image:
    """Horizontal bars of per-metric pass rates with their 95% intervals as whiskers."""
    names = [k for k, v in per.items() if v["clips"]]
    row, left, pad = 22, 110, 10
    img = Image.new("RGB", (width, pad * 2 + row * max(len(names), 1) + 16), "white")
    d = ImageDraw.Draw(img)
    span = width - left - pad - 40
    for i, name in enumerate(names):
        v = per[name]
        y = pad + i * row
        rate = float(v["pass_rate"])  # type: ignore[arg-type]
        lo, hi = v["ci95"]  # type: ignore[misc]
        color = (60, 160, 80) if rate >= 0.99 else (230, 160, 40) if rate >= 0.8 else (210, 60, 60)
        d.text((4, y + 4), name, fill="black")
        d.rectangle([left, y + 3, left + int(span * rate), y + row - 5], fill=color)
        d.line([left + int(span * lo), y + row // 2, left + int(span * hi), y + row // 2], fill="black", width=2)
        d.text((left + span + 4, y + 4), f"{rate:.0%}", fill="black")
    y = pad + len(names) * row
    for frac in (0.0, 0.5, 1.0):
        x = left + int(span * frac)
        d.line([x, pad, x, y], fill=(200, 200, 200))
        d.text((x - 8, y + 2), f"{frac:.0%}", fill="gray")
    return img


def strip_image(frames: np.ndarray, scale: int = 2) -> Image.Image:
    """Frames (k, h, w, 3) side by side with 2-px gaps, upscaled ``scale`` times (nearest)."""
    k, h, w, _ = frames.shape
    canvas = np.full((h, k * (w + 2) - 2, 3), 255, dtype=np.uint8)
    for i, f in enumerate(frames):
        canvas[:, i * (w + 2) : i * (w + 2) + w] = f
    img = Image.fromarray(canvas)
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST)


def _metric_row(name: str, v: dict[str, object]) -> str:
    rate = "" if v["pass_rate"] is None else f"{v['pass_rate']:.1%}"
    ci = "" if v["ci95"] is None else f"{v['ci95'][0]:.1%} – {v['ci95'][1]:.1%}"  # type: ignore[index]
    mean = "" if v["mean_value"] is None else f"{v['mean_value']:.3g}"
    th = "" if v["threshold"] is None else f"{v['threshold']:.3g}"
    return f"<tr><td>{html.escape(name)}</td><td>{v['clips']}</td><td>{rate}</td><td>{ci}</td><td>{mean}</td><td>{th}</td></tr>"


def render_html(summary: dict[str, object], run: SuiteRun, worst: int = 8) -> str:
    per = summary["metrics"]  # type: ignore[assignment]
    rows = "".join(_metric_row(k, v) for k, v in per.items())  # type: ignore[union-attr]
    bad = sorted(run.clips, key=lambda c: (-len(c.failed()), c.clip_id))[:worst]
    gallery = "".join(
        f"<div class='clip'><b>{html.escape(c.clip_id)}</b> — {html.escape(c.caption)}<br>"
        f"<img src='{_png(strip_image(run.strips[c.clip_id]))}'><br>"
        + ("<span class='ok'>all metrics pass</span>" if c.passed else "<ul>" + "".join(
            f"<li><b>{html.escape(k)}</b> {c.metrics[k].value:.3g} (threshold {c.metrics[k].threshold:.3g}): "
            f"{html.escape(c.metrics[k].detail)}</li>" for k in c.failed()) + "</ul>")
        + "</div>"
        for c in bad if c.clip_id in run.strips
    )
    rate = summary["clip_pass_rate"]
    ci = summary["clip_pass_ci95"]
    head = (f"{rate:.1%} of {summary['clips']} clips pass every metric (95% CI {ci[0]:.1%} – {ci[1]:.1%})"  # type: ignore[index]
            if rate is not None else "no clips")
    skipped = "".join(
        f"<li><b>{html.escape(k.clip_id)}</b> {html.escape(k.caption)}: {html.escape('; '.join(k.reasons))}</li>"
        for k in run.skipped
    )
    skipped = (f"<p><b>{len(run.skipped)} clips skipped</b> (their ground truth does not show what the caption "
               f"says, so they cannot be checked):</p><ul>{skipped}</ul>" if run.skipped else "<p>0 clips skipped.</p>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Kinema eval: {html.escape(str(summary['suite']))}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px}}
.clip{{margin:1em 0;padding:.5em;border:1px solid #ddd}}.ok{{color:green}}li{{font-size:90%}}</style></head><body>
<h1>Kinema eval — suite <code>{html.escape(str(summary['suite']))}</code></h1>
<p>{html.escape(str(summary['description']))}. Source: <code>{html.escape(str(summary['source']))}</code>, mode {summary['mode']}.</p>
<p><b>{head}</b></p>
{skipped}
<h2>Pass rate per metric</h2><img src="{_png(bar_chart(per))}" alt="pass rates">
<table><tr><th>metric</th><th>clips</th><th>pass rate</th><th>95% CI</th><th>mean value</th><th>threshold</th></tr>{rows}</table>
<h2>Worst clips</h2>{gallery}
<p>How to read this page: docs/eval.md.</p></body></html>"""


def write_reports(run: SuiteRun, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(run)
    jp, hp = out / "report.json", out / "report.html"
    jp.write_text(json.dumps(summary, indent=1))
    hp.write_text(render_html(summary, run))
    return jp, hp
