"""Diagnose watermark misses after the 10% crop, one clip at a time (docs/safety.md, sessions 19-20).

    .venv/bin/python benchmarks/watermark_crop_phases.py 71 84 231 [trial_patience=23 ...]

For each index ``i`` of ``watermark_robustness.py --content generated --seed 11`` (same clip, same payload),
prints the kept candidate's trial outcome (attacks of ``TRIAL_ATTACKS`` survived, lowest score) and the
detection after a 10% border crop at 7 phases: centred (what the trial sees) and six one pixel off (the
benchmark's crop is (+1, -1)). ``KEY=VALUE`` arguments override ``WatermarkConfig`` fields.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from watermark_robustness import generated_clip  # noqa: E402

from kinema.safety.watermark import Payload, WatermarkConfig, _trial, detect_watermark, embed_watermark  # noqa: E402

PHASES = [(0, 0), (1, -1), (1, 1), (-1, 1), (-1, -1), (1, 0), (0, 1)]


def main(argv: list[str]) -> int:
    overrides = dict(a.split("=", 1) for a in argv if "=" in a)
    config = WatermarkConfig(**{k: float(v) if "." in v else int(v) for k, v in overrides.items()})
    tmp = Path(tempfile.mkdtemp(prefix="wm_crop_"))
    for i in (int(a) for a in argv if "=" not in a):
        clip = generated_clip(i, 11, 33)
        payload = Payload.from_ids(f"model-{i % 3}", f"generation-11-{i}")
        marked = embed_watermark(clip, payload, config)
        h, w = marked.shape[1:3]
        dy, dx = round(0.1 * h), round(0.1 * w)
        row = []
        for py, px in PHASES:
            d = detect_watermark(marked[:, dy + py : h - dy + py, dx + px : w - dx + px], config)
            row.append(f"({py:+d},{px:+d}) {'ok' if d.present and d.payload == payload else 'MISS'} {d.score:.1f}")
        survived, lowest = _trial(marked, payload, config, tmp)
        print(f"clip {i}: trials survived {survived}, lowest score {lowest:.2f} | " + "; ".join(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
