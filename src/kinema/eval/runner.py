"""Run a suite over clips from one source and collect per-clip results.

Sources: ground-truth renders of a world split (``ground_truth``, optionally through an MP4 round
trip and/or a corruption), existing videos with their spec JSON (``videos``: a folder with a
``manifest.jsonl`` as written by ``kinema world``, or ``*.mp4`` files with ``*.json`` beside them),
or a model (``model``: a ``KinemaPipeline`` folder generating from each clip's caption).

Every clip is checked against a clean ground truth (``kinema.world.clean.clip_problems``). World
samples are clean by construction; a clip whose spec is not clean is left out and listed in
``SuiteRun.skipped`` with the reasons, which the reports show.
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

from kinema.errors import InvalidInputError, KinemaError
from kinema.eval.corruptions import CORRUPTIONS
from kinema.eval.evaluate import ClipResult, evaluate_frames
from kinema.eval.expectations import from_spec
from kinema.eval.modes import psnr
from kinema.eval.suites import Suite
from kinema.eval.thresholds import THRESHOLD_PRESETS, Thresholds
from kinema.video import Video, read_video
from kinema.world.clean import clip_problems
from kinema.world.render import render
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
    max_tries: int = 40  # split examples looked at per accepted clip, at most, when a suite takes only some


@dataclass
class SkippedClip:
    """A clip left out of a run because its ground truth cannot be checked against: reasons in words."""

    clip_id: str
    caption: str
    reasons: list[str]

    def to_dict(self) -> dict[str, object]:
        return {"clip_id": self.clip_id, "caption": self.caption, "reasons": list(self.reasons)}


@dataclass
class SuiteRun:
    """Results of one suite over one source; ``strips`` keeps 8 frames of each clip for the gallery.

    ``skipped`` lists the clips left out (ground truth not clean, or not samplable), with reasons;
    reports show their count and reasons, so nothing is dropped without a trace.
    """

    suite: Suite
    source: str
    config: RunConfig
    thresholds: Thresholds
    clips: list[ClipResult] = field(default_factory=list)
    strips: dict[str, np.ndarray] = field(default_factory=dict)  # clip_id -> uint8 (8, h, w, 3)
    skipped: list[SkippedClip] = field(default_factory=list)
    psnr: dict[str, float] = field(default_factory=dict)  # clip_id -> dB against the ground truth (VAE runs)


def _strip(frames: np.ndarray, k: int = 8) -> np.ndarray:
    idx = np.linspace(0, len(frames) - 1, min(k, len(frames))).round().astype(int)
    return frames[idx].copy()


def mp4_round_trip(frames: np.ndarray, fps: float, crf: int) -> np.ndarray:
    """Encode to H.264 (yuv420p) and decode again: the artefacts a generated MP4 carries."""
    with tempfile.TemporaryDirectory() as d:
        path = Video(frames, fps).save(Path(d) / "clip.mp4", crf=crf)
        return read_video(path).frames


def _check(run: SuiteRun, cid: str, spec: ClipSpec) -> bool:
    """False (and the clip recorded in ``run.skipped`` with its reasons) when its ground truth is not clean.

    Split samples are always clean (``kinema.world.sample_spec``); specs read from disk may come
    from an older writer or from ``kinema world render``, where a layout is best effort.
    """
    problems = clip_problems(spec)
    if problems:
        run.skipped.append(SkippedClip(cid, spec.caption, problems))
        log.warning("skipping %s: its ground truth does not show what the caption says: %s", cid, "; ".join(problems))
    return not problems


def ground_truth_specs(suite: Suite, cfg: RunConfig, run: SuiteRun, progress: bool = False) -> Iterator[tuple[str, ClipSpec, np.ndarray]]:
    """Ground-truth clips of ``cfg.split`` that ``suite`` accepts: (clip id, spec, frames).

    Examples ``0, 1, ...`` of the split (clean by construction); a suite that takes only some
    clips (e.g. ``permanence``) looks at up to ``cfg.n * cfg.max_tries`` examples. An example the
    world cannot sample, or one that is not clean, goes to ``run.skipped`` with the reason.
    ``progress``: a progress bar over the accepted clips (on stderr).
    """
    from tqdm import tqdm

    from kinema.world import sample_spec

    bar = tqdm(total=cfg.n, desc=f"{suite.name} {cfg.split}", unit="clip", disable=not progress)
    found = tried = 0
    while found < cfg.n and tried < cfg.n * cfg.max_tries:
        index, tried = tried, tried + 1
        cid = f"{cfg.split}-{index:05d}"
        try:
            spec = sample_spec(cfg.split, cfg.seed, index, cfg.width, cfg.height, cfg.fps, cfg.num_frames)
        except KinemaError as e:
            run.skipped.append(SkippedClip(cid, "", [str(e)]))
            log.warning("skipping %s: %s", cid, e)
            continue
        if suite.accepts(spec) and _check(run, cid, spec):
            found += 1
            yield cid, spec, render(spec)
            bar.update(1)
    bar.close()


def _condition(suite: Suite, frames: np.ndarray) -> tuple[int, np.ndarray | None]:
    if suite.mode == "t2v":
        return 0, None
    k = suite.condition_frames or max(2, len(frames) // 2)
    return k, frames[:k].copy()


def _expect(suite: Suite, spec: ClipSpec, cond_frames: int, cond: np.ndarray | None):  # noqa: ANN202
    exp = from_spec(spec, rollout=suite.mode != "t2v", condition_frames=cond_frames)
    exp.condition = cond
    return exp


def run_ground_truth(suite: Suite, cfg: RunConfig, progress: bool = False) -> SuiteRun:
    """Evaluate ground-truth renders (the calibration source: every metric should pass)."""
    if cfg.corruption and cfg.corruption not in CORRUPTIONS:
        raise InvalidInputError(f"unknown corruption {cfg.corruption!r}; choose one of {sorted(CORRUPTIONS)}")
    th = THRESHOLD_PRESETS[cfg.thresholds]
    run = SuiteRun(suite, "ground_truth" + (f"+{cfg.corruption}" if cfg.corruption else ""), cfg, th)
    for cid, spec, frames in ground_truth_specs(suite, cfg, run, progress):
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


def run_videos(suite: Suite, folder: str | Path, cfg: RunConfig, progress: bool = False) -> SuiteRun:
    """Evaluate existing videos, each with its ground-truth spec JSON."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInputError(f"--videos must be a folder, got '{folder}'")
    th = THRESHOLD_PRESETS[cfg.thresholds]
    run = SuiteRun(suite, f"videos:{folder}", cfg, th)
    from tqdm import tqdm

    for path, spec_path in tqdm(_manifest_rows(folder)[: cfg.n], desc=f"{suite.name} videos", unit="clip", disable=not progress):
        spec = ClipSpec.from_json(spec_path)
        if not suite.accepts(spec) or not _check(run, path.stem, spec):
            continue
        video = read_video(path)
        k, cond = 0, None
        if suite.mode != "t2v":  # the given frames are the ground truth's, re-rendered from the spec
            k, cond = _condition(suite, render(spec))
        _add(run, path.stem, video.frames, spec, k, cond, th)
    return run


def run_model(suite: Suite, model: str | Path, cfg: RunConfig, steps: int | None = None,
              guidance: float | None = None, fast: bool = False, progress: bool = False) -> SuiteRun:
    """Generate a video for each accepted ground-truth clip of the split and evaluate it.

    ``fast``: sample with the model's few-step student (text-to-video suites only)."""
    from kinema.pipeline import KinemaPipeline

    pipe = KinemaPipeline.from_pretrained(model)
    params = inspect.signature(pipe.generate).parameters
    if suite.mode == "i2v" and "image" not in params:
        raise InvalidInputError(f"suite {suite.name!r} needs image conditioning; this pipeline's generate() takes {sorted(params)}")
    if suite.mode == "extend" and "video" not in params:
        raise InvalidInputError(f"suite {suite.name!r} needs video conditioning; this pipeline's generate() takes {sorted(params)}")
    th = THRESHOLD_PRESETS[cfg.thresholds]
    run = SuiteRun(suite, f"model:{model}" + (" (fast)" if fast else ""), cfg, th)
    for i, (cid, spec, frames) in enumerate(ground_truth_specs(suite, cfg, run, progress)):
        k, cond = _condition(suite, frames)
        kwargs: dict[str, object] = dict(frames=spec.num_frames, fps=spec.fps, width=spec.width, height=spec.height,
                                         steps=steps, guidance=guidance, seed=cfg.seed + i)
        if fast:
            kwargs["fast"] = True
        if suite.mode == "i2v":
            kwargs["image"] = cond[0]  # type: ignore[index]
        elif suite.mode == "extend":  # extension takes the number of new frames: the clip is the given k plus these
            kwargs["video"] = Video(cond, spec.fps)  # type: ignore[arg-type]
            kwargs["frames"] = spec.num_frames - k
        out = pipe.generate(spec.caption, **kwargs)  # type: ignore[arg-type]
        if out.frames.shape[0] != spec.num_frames:
            raise RuntimeError(f"{cid}: the model made {out.frames.shape[0]} frames for a {spec.num_frames}-frame clip")
        log.info("generated %s: %s", cid, spec.caption)
        _add(run, cid, out.frames, spec, k, cond, th)
    return run


def run_vae(suite: Suite, vae_path: str | Path, cfg: RunConfig, progress: bool = False) -> SuiteRun:
    """Reconstruct ground-truth renders through a VAE (encode to the posterior mean, decode) and
    evaluate the reconstructions; ``SuiteRun.psnr`` holds each clip's PSNR against its render.

    ``vae_path`` is a VAE component folder, or a pipeline folder holding ``vae/``.
    """
    import torch

    from kinema.checkpoint import load_component
    from kinema.vae import CausalVAE, VAEConfig

    folder = Path(vae_path)
    if (folder / "vae" / "config.json").is_file():
        folder = folder / "vae"
    vae = load_component(CausalVAE, VAEConfig, folder).eval()
    th = THRESHOLD_PRESETS[cfg.thresholds]
    run = SuiteRun(suite, f"vae:{vae_path}", cfg, th)
    for cid, spec, frames in ground_truth_specs(suite, cfg, run, progress):
        with torch.no_grad():
            x = Video(frames, spec.fps).to_tensor()  # (1, 3, f, h, w) in [-1, 1]
            recon = Video.from_tensor(vae.decode(vae.encode(x).mode()), spec.fps).frames
        if cfg.crf is not None:
            recon = mp4_round_trip(recon, cfg.fps, cfg.crf)
        run.psnr[cid] = psnr(recon, frames)
        k, cond = _condition(suite, frames)
        _add(run, cid, recon, spec, k, cond, th)
    return run
