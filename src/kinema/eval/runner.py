"""Run a suite over clips from one source and collect per-clip results.

Sources: ground-truth renders of a world split (``ground_truth``, optionally through an MP4 round
trip and/or a corruption), existing videos with their spec JSON (``videos``: a folder with a
``manifest.jsonl`` as written by ``kinema world``, or ``*.mp4`` files with ``*.json`` beside them),
or a model (``model``: a ``KinemaPipeline`` folder generating from each clip's caption).
"""

from __future__ import annotations

import inspect
import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kinema.errors import InvalidInputError
from kinema.eval.corruptions import CORRUPTIONS
from kinema.eval.evaluate import ClipResult, evaluate_frames
from kinema.eval.expectations import from_spec
from kinema.eval.suites import Suite
from kinema.eval.thresholds import THRESHOLD_PRESETS, Thresholds
from kinema.video import Video, read_video
from kinema.world.spec import ClipSpec

log = logging.getLogger(__name__)


@dataclass
class RunConfig:
    split: str = "heldout"
    n: int = 20
    seed: int = 0
    width: int = 64
    height: int = 64
    fps: float = 16.0
    num_frames: int = 33
    crf: int | None = None  # ground truth: MP4 round trip at this CRF (None: raw frames)
    corruption: str = ""  # ground truth: a name of CORRUPTIONS ("" = none)
    thresholds: str = "default"
    max_tries: int = 40  # ground-truth clips drawn per accepted clip, at most, when a suite filters


@dataclass
class SuiteRun:
    """Results of one suite over one source; ``strips`` keeps 8 frames of each clip for the gallery."""

    suite: Suite
    source: str
    config: RunConfig
    thresholds: Thresholds
    clips: list[ClipResult] = field(default_factory=list)
    strips: dict[str, np.ndarray] = field(default_factory=dict)  # clip_id -> uint8 (8, h, w, 3)


def _strip(frames: np.ndarray, k: int = 8) -> np.ndarray:
    idx = np.linspace(0, len(frames) - 1, min(k, len(frames))).round().astype(int)
    return frames[idx].copy()


def mp4_round_trip(frames: np.ndarray, fps: float, crf: int) -> np.ndarray:
    """Encode to H.264 (yuv420p) and decode again: the artefacts a generated MP4 carries."""
    with tempfile.TemporaryDirectory() as d:
        path = Video(frames, fps).save(Path(d) / "clip.mp4", crf=crf)
        return read_video(path).frames


def clean_layout(spec: ClipSpec) -> bool:
    """False when two objects that do not collide overlap in some frame of the ground truth, or a
    caption's event (bounce, collision, floor contact, reappearance, break) is missing from it.

    The simulator re-draws layouts until they are clean, but keeps its best try when none is; such a
    clip shows fewer objects than its caption says, so it cannot calibrate a metric.
    """
    need = {"bounce": "wall_bounce", "collide": "collision", "fall": "floor_bounce", "pass_behind": "occlusion_end"}
    for o in spec.objects:  # the caption's promised event happened (the simulator's own check)
        want = "break" if o.event == "break" else need.get(o.motion)
        if want and not any(e.kind == want and o.id in e.objects for e in spec.events):
            return False
        if o.event == "break" and any(e.kind == "break" and o.id in e.objects and e.frame < 3 for e in spec.events):
            return False  # broke before it could be seen whole
    scale = {"triangle": 1.25}
    objs = spec.objects
    for i, a in enumerate(objs):
        for b in objs[i + 1 :]:
            if a.motion == "collide" and b.motion == "collide":
                continue
            for fa, fb in zip(a.frames, b.frames):
                if fa.state == "broken" or fb.state == "broken" or fa.visible <= 0 or fb.visible <= 0:
                    continue
                reach = fa.radius * scale.get(a.shape, 1.0) + fb.radius * scale.get(b.shape, 1.0)
                if np.hypot(fa.center[0] - fb.center[0], fa.center[1] - fb.center[1]) < reach:
                    return False
    return True


def ground_truth_specs(suite: Suite, cfg: RunConfig) -> Iterator[tuple[str, ClipSpec, np.ndarray]]:
    """Accepted ground-truth clips of ``cfg.split``: (clip id, spec, frames)."""
    from kinema.world import sample_example

    found = tried = 0
    while found < cfg.n and tried < cfg.n * cfg.max_tries:
        spec, frames = sample_example(cfg.split, cfg.seed, tried, cfg.width, cfg.height, cfg.fps, cfg.num_frames)
        tried += 1
        if not clean_layout(spec):
            log.info("skipping %s-%05d: objects overlap in the ground truth (%s)", cfg.split, tried - 1, spec.caption)
            continue
        if suite.accepts(spec):
            found += 1
            yield f"{cfg.split}-{tried - 1:05d}", spec, frames


def _condition(suite: Suite, frames: np.ndarray) -> tuple[int, np.ndarray | None]:
    if suite.mode == "t2v":
        return 0, None
    k = suite.condition_frames or max(2, len(frames) // 2)
    return k, frames[:k].copy()


def _expect(suite: Suite, spec: ClipSpec, cond_frames: int, cond: np.ndarray | None):  # noqa: ANN202
    exp = from_spec(spec, rollout=suite.mode != "t2v", condition_frames=cond_frames)
    exp.condition = cond
    return exp


def run_ground_truth(suite: Suite, cfg: RunConfig) -> SuiteRun:
    """Evaluate ground-truth renders (the calibration source: every metric should pass)."""
    if cfg.corruption and cfg.corruption not in CORRUPTIONS:
        raise InvalidInputError(f"unknown corruption {cfg.corruption!r}; choose one of {sorted(CORRUPTIONS)}")
    th = THRESHOLD_PRESETS[cfg.thresholds]
    run = SuiteRun(suite, "ground_truth" + (f"+{cfg.corruption}" if cfg.corruption else ""), cfg, th)
    for cid, spec, frames in ground_truth_specs(suite, cfg):
        k, cond = _condition(suite, frames)
        video = frames
        if cfg.corruption:
            broken = CORRUPTIONS[cfg.corruption](frames, spec)
            if broken is None:
                continue
            video = broken
        if cfg.crf is not None:
            video = mp4_round_trip(video, cfg.fps, cfg.crf)
        _add(run, cid, video, spec, k, cond, th)
    return run


def _add(run: SuiteRun, cid: str, video: np.ndarray, spec: ClipSpec, k: int, cond: np.ndarray | None,
         th: Thresholds) -> None:
    exp = _expect(run.suite, spec, k, cond)
    res = evaluate_frames(video, exp, spec.fps, list(run.suite.metrics), th, clip_id=cid, source=run.source)
    run.clips.append(res)
    run.strips[cid] = _strip(video)


def _manifest_rows(folder: Path) -> list[tuple[Path, Path]]:
    manifest = folder / "manifest.jsonl"
    if manifest.is_file():
        rows = []
        for line in manifest.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if "spec" not in row:
                    raise InvalidInputError(f"{manifest}: row without a 'spec' path: {line[:120]}")
                rows.append((folder / row["path"], folder / row["spec"]))
        return rows
    rows = [(p, p.with_suffix(".json")) for p in sorted(folder.rglob("*.mp4")) if p.with_suffix(".json").is_file()]
    if not rows:
        raise InvalidInputError(f"no manifest.jsonl and no *.mp4 with a *.json spec beside it under '{folder}'")
    return rows


def run_videos(suite: Suite, folder: str | Path, cfg: RunConfig) -> SuiteRun:
    """Evaluate existing videos, each with its ground-truth spec JSON."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInputError(f"--videos must be a folder, got '{folder}'")
    th = THRESHOLD_PRESETS[cfg.thresholds]
    run = SuiteRun(suite, f"videos:{folder}", cfg, th)
    for path, spec_path in _manifest_rows(folder)[: cfg.n]:
        spec = ClipSpec.from_json(spec_path)
        if not suite.accepts(spec):
            continue
        video = read_video(path)
        k, cond = 0, None
        if suite.mode != "t2v":  # the given frames are the ground truth's, re-rendered from the spec
            from kinema.world.render import render

            k, cond = _condition(suite, render(spec))
        _add(run, path.stem, video.frames, spec, k, cond, th)
    return run


def run_model(suite: Suite, model: str | Path, cfg: RunConfig, steps: int | None = None,
              guidance: float | None = None) -> SuiteRun:
    """Generate a video for each accepted ground-truth clip of the split and evaluate it."""
    from kinema.pipeline import KinemaPipeline

    pipe = KinemaPipeline.from_pretrained(model)
    params = inspect.signature(pipe.generate).parameters
    if suite.mode == "i2v" and "image" not in params:
        raise InvalidInputError(f"suite {suite.name!r} needs image conditioning; this pipeline's generate() takes {sorted(params)}")
    if suite.mode == "extend" and "video" not in params:
        raise InvalidInputError(f"suite {suite.name!r} needs video conditioning; this pipeline's generate() takes {sorted(params)}")
    th = THRESHOLD_PRESETS[cfg.thresholds]
    run = SuiteRun(suite, f"model:{model}", cfg, th)
    for i, (cid, spec, frames) in enumerate(ground_truth_specs(suite, cfg)):
        k, cond = _condition(suite, frames)
        kwargs: dict[str, object] = dict(frames=spec.num_frames, fps=spec.fps, width=spec.width, height=spec.height,
                                         steps=steps, guidance=guidance, seed=cfg.seed + i)
        if suite.mode == "i2v":
            kwargs["image"] = cond[0]  # type: ignore[index]
        elif suite.mode == "extend":
            kwargs["video"] = Video(cond, spec.fps)  # type: ignore[arg-type]
        out = pipe.generate(spec.caption, **kwargs)  # type: ignore[arg-type]
        log.info("generated %s: %s", cid, spec.caption)
        _add(run, cid, out.frames, spec, k, cond, th)
    return run
