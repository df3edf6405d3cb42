"""Evaluation of each generation mode (issue 6): measured on a model, over ground-truth clips of a split.

Every mode is driven from a ground-truth render of a Kinema World split (default ``heldout``) and
measured with pixel statistics and the tracker (``kinema.eval.tracker``):

| mode              | given                              | measurements (bar)                                               |
|-------------------|------------------------------------|------------------------------------------------------------------|
| ``i2v``           | frame 0 + caption                  | first-frame PSNR (>= 30 dB); frame-0 objects kept (all)          |
| ``extend``        | first half                         | seam ratio (<= 1.5); speed change (<= 10%); same objects (yes); motion kept (>= 0.5) |
| ``extend_backward`` | second half                      | the same, at the seam before the given frames                    |
| ``loop``          | caption                            | last-to-first difference / median adjacent difference (<= 1.5)   |
| ``connect``       | first and last third               | seam ratio at both ends (<= 1.5); PSNR of both ends (reported)   |
| ``edit``          | the clip + caption with one colour changed | new colour found; shapes, count, directions kept (all)   |
| ``long``          | caption; chained extension to 20 s | share of 2 s windows with the first window's objects (all)       |
| ``refine``        | base clip (and the ground truth)   | passes the base's tracker metrics; edge energy vs bilinear (>= 1.05); gradient at the 2x ground truth's edges vs bilinear (>= 1); PSNR vs the 2x ground truth, bilinear's and the VAE's (reported) |

*Seam ratio*: mean |frame difference| across the seam over the median adjacent-frame difference of
the rest of the clip (floored at ``ModeBars.min_step`` levels, so a still scene is not divided by 0).
*Speed change*: per tracked object, ``|v_after - v_pred| / max(|v_pred|, min_speed)`` where ``v_after``
is the mean velocity over ``window`` steps after the seam and ``v_pred`` the mean velocity over the
``window`` steps before it carried forward with the object's median acceleration away from the seam
(gravity is not a seam fault); the clip's value is the largest over objects, less what the ground truth
itself shows at the same frame (a bounce there is the world's, not the seam's).
*Motion kept*: ``min(r, 1/r)`` for ``r`` = the generated stretch's mean speed over the ground truth's on
the same frames (:func:`mean_speed`, both floored at ``min_speed``): a continuation that slows to a
stop, or races, fails it even when its seam is smooth and its objects stay.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

import numpy as np

from kinema.errors import InvalidInputError, KinemaError
from kinema.eval.evaluate import evaluate_frames
from kinema.eval.expectations import from_spec
from kinema.eval.suites import SUITES
from kinema.eval.tracker import TrackResult, track
from kinema.world.palette import COLORS
from kinema.world.render import render
from kinema.world.spec import ClipSpec

if TYPE_CHECKING:
    from kinema.pipeline import KinemaPipeline

log = logging.getLogger(__name__)

EVAL_MODES: Final[tuple[str, ...]] = ("i2v", "extend", "extend_backward", "loop", "connect", "edit", "long", "refine")
Signature = Counter  # Counter[(colour | None, shape)]: the objects of a stretch of frames


# ------------------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class ModeBars:
    """The issue's bars, as data. Pixel differences are mean |difference| in 0..255 levels."""

    first_frame_psnr: float = 30.0  # dB, i2v frame 0 vs the given image
    seam_ratio: float = 1.5  # seam difference / median adjacent-frame difference (extend, connect)
    loop_ratio: float = 1.5  # last-to-first difference / median adjacent-frame difference
    speed_change: float = 0.10  # relative velocity change across a seam
    edge_ratio: float = 1.05  # refined edge energy / bilinear-upsampled base edge energy
    gt_edge_ratio: float = 1.0  # on the 2x ground truth's edge pixels: refined gradient / bilinear gradient
    edge_level: float = 20.0  # a ground-truth pixel is an edge pixel when its luma gradient reaches this (levels/px)
    min_step: float = 0.5  # floor of the median adjacent-frame difference (levels)
    min_speed_frac: float = 0.008  # floor of |v_pred| as a share of the frame's shorter side (0.5 px at 64)
    speed_window: int = 3  # velocity steps averaged on each side of a seam
    min_track_frames: int = 3  # shorter tracks are noise
    identity_coverage: float = 0.8  # i2v: a frame-0 object is tracked for this share of its ground-truth frames
    still_frac: float = 0.04  # edit: a net displacement below this share of the frame is "still"
    motion_kept: float = 0.5  # extend: generated / true mean speed after the seam within [0.5, 2]


@dataclass
class ModeEvalConfig:
    """One evaluation run. ``modes`` empty = every mode the model has (``refine`` only with a refiner)."""

    split: str = "heldout"
    n: int = 8
    long_n: int = 2  # clips whose captions make a long video (each is ``long_seconds`` of chained extension)
    seed: int = 0
    width: int = 64
    height: int = 64
    fps: float = 16.0
    num_frames: int = 33
    modes: tuple[str, ...] = ()
    steps: int | None = None  # None: the model's
    guidance: float | None = None
    context: int | None = None  # latent frames of overlap (None: the pipeline's default)
    strength: float = 0.6  # edit (SDEdit) strength
    long_seconds: float = 20.0
    window_seconds: float = 2.0
    refine_steps: int | None = None


MODE_EVAL_PRESETS: Final[dict[str, ModeEvalConfig]] = {
    "default": ModeEvalConfig(),
    "quick": ModeEvalConfig(n=2, long_n=1, steps=8, long_seconds=6.0),
}


# ------------------------------------------------------------------------------------------ results
@dataclass
class Measurement:
    """One value of one clip. ``op`` is how it compares with ``bar`` (None: reported, no bar)."""

    name: str
    value: float
    bar: float | None = None
    op: Literal[">=", "<="] | None = None
    detail: str = ""

    @property
    def passed(self) -> bool | None:
        if self.bar is None or self.op is None:
            return None
        if np.isnan(self.value):
            return False
        return bool(self.value >= self.bar) if self.op == ">=" else bool(self.value <= self.bar)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "value": json_number(self.value), "bar": self.bar, "op": self.op,
                "passed": self.passed, "detail": self.detail}


@dataclass
class ModeClipResult:
    mode: str
    clip_id: str
    caption: str
    seconds: float  # wall time of generation + measurement
    measurements: list[Measurement] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"mode": self.mode, "clip_id": self.clip_id, "caption": self.caption, "seconds": round(self.seconds, 4),
                "measurements": [m.to_dict() for m in self.measurements], **({"extra": self.extra} if self.extra else {})}


@dataclass
class ModeEvalRun:
    model: str
    config: ModeEvalConfig
    bars: ModeBars
    results: list[ModeClipResult] = field(default_factory=list)
    skipped_modes: dict[str, str] = field(default_factory=dict)  # mode -> why it was not run
    skipped_clips: list[dict[str, str]] = field(default_factory=list)


def json_number(x: float) -> float | str | None:
    """A float for JSON: ``inf`` / ``-inf`` as strings, NaN as null."""
    x = float(x)
    if np.isnan(x):
        return None
    if np.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


# ------------------------------------------------------------------------------------------ pixel measurements
def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays of one shape (peak 255); ``inf`` when identical."""
    if a.shape != b.shape:
        raise InvalidInputError(f"PSNR needs arrays of one shape, got {a.shape} and {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0.0 else 10.0 * float(np.log10(255.0**2 / mse))


def frame_steps(frames: np.ndarray) -> np.ndarray:
    """Mean |difference| of each adjacent pair: uint8 ``(f, h, w, 3)`` -> ``(f - 1,)`` levels."""
    x = frames.astype(np.float32)
    return np.abs(np.diff(x, axis=0)).mean(axis=(1, 2, 3))  # (f-1,)


def seam_ratio(frames: np.ndarray, seam: int, min_step: float = 0.5) -> float:
    """Difference between frames ``seam - 1`` and ``seam`` over the median of the clip's other steps.

    ``frames`` uint8 ``(f, h, w, 3)``; ``seam`` in ``1 .. f - 1`` is the first frame after the cut.
    """
    f = frames.shape[0]
    if not 1 <= seam <= f - 1:
        raise InvalidInputError(f"seam={seam} out of range: must be between 1 and {f - 1} for {f} frames")
    steps = frame_steps(frames)
    others = np.delete(steps, seam - 1)
    typical = float(np.median(others)) if others.size else 0.0
    return float(steps[seam - 1]) / max(typical, min_step)


def loop_ratio(frames: np.ndarray, min_step: float = 0.5) -> float:
    """Last-to-first difference over the median adjacent-frame difference (1 = like any other step)."""
    if frames.shape[0] < 2:
        raise InvalidInputError(f"a loop needs at least 2 frames, got {frames.shape[0]}")
    wrap = float(np.abs(frames[-1].astype(np.float32) - frames[0].astype(np.float32)).mean())
    return wrap / max(float(np.median(frame_steps(frames))), min_step)


def luma_gradient(frames: np.ndarray) -> np.ndarray:
    """Luma gradient magnitude ``(f, h, w)`` of uint8 ``(f, h, w, 3)`` (central differences, levels per pixel)."""
    x = frames.astype(np.float32)
    y = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]  # (f, h, w)
    gy, gx = np.gradient(y, axis=(1, 2))
    return np.hypot(gx, gy)


def edge_energy(frames: np.ndarray) -> float:
    """Mean gradient magnitude of the luma (central differences), levels per pixel."""
    return float(luma_gradient(frames).mean())


def upsample_frames(frames: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear ``factor``x upsampling of uint8 ``(f, h, w, 3)`` (the refiner's own baseline)."""
    import torch

    from kinema.refine import upsample_bilinear

    x = torch.from_numpy(frames.astype(np.float32)).permute(3, 0, 1, 2)[None]  # (1, 3, f, h, w)
    y = upsample_bilinear(x, factor)[0].permute(1, 2, 3, 0).numpy()  # (f, s h, s w, 3)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def area_downsample_frames(frames: np.ndarray, factor: int) -> np.ndarray:
    """Exact ``factor x factor`` area average of uint8 ``(f, h, w, 3)`` (how refiner inputs are made)."""
    f, h, w, c = frames.shape
    x = frames.astype(np.float32).reshape(f, h // factor, factor, w // factor, factor, c)
    return np.clip(np.rint(x.mean(axis=(2, 4))), 0, 255).astype(np.uint8)


def scale_spec(spec: ClipSpec, factor: int) -> ClipSpec:
    """The same clip at ``factor``x the pixel size: every pixel coordinate scaled (renders the 2x ground truth)."""
    s = float(factor)

    def rect(r):  # noqa: ANN001, ANN202
        return None if r is None else dataclasses.replace(r, x0=r.x0 * s, y0=r.y0 * s, x1=r.x1 * s, y1=r.y1 * s)

    objects = [
        dataclasses.replace(o, frames=[
            dataclasses.replace(
                fr, center=(fr.center[0] * s, fr.center[1] * s), radius=fr.radius * s,
                velocity=(fr.velocity[0] * s, fr.velocity[1] * s), pieces=[(x * s, y * s, r * s) for x, y, r in fr.pieces],
                notch=None if fr.notch is None else (fr.notch[0] * s, fr.notch[1] * s, fr.notch[2] * s),
            ) for fr in o.frames
        ]) for o in spec.objects
    ]
    return dataclasses.replace(
        spec, width=spec.width * factor, height=spec.height * factor, objects=objects,
        floor_y=None if spec.floor_y is None else spec.floor_y * s, occluder=rect(spec.occluder), walls=rect(spec.walls),
        floor_marks=[rect(m) for m in spec.floor_marks], camera_pan=spec.camera_pan * s, gravity=spec.gravity * s,
        unit=spec.unit * s,
    )


# ------------------------------------------------------------------------------------------ tracker measurements
def seam_speed_change(centers: np.ndarray, seam: int, window: int = 3, min_speed: float = 0.5) -> float | None:
    """Relative velocity change of one object across a seam; None when it is not seen around it.

    ``centers`` ``(f, 2)`` (NaN where unseen); ``seam`` is the first frame after the cut. The velocity
    before (steps ``seam-window-1 .. seam-2``) is carried over ``window + 1`` steps with the median
    acceleration of the track away from the seam, and compared with the velocity after (steps
    ``seam .. seam+window-1``); the step across the seam itself is left out.
    """
    f = centers.shape[0]
    lo, hi = seam - window - 1, seam + window
    if lo < 0 or hi >= f or not np.isfinite(centers[lo : hi + 1]).all():
        return None
    v = np.diff(centers, axis=0)  # (f-1, 2) velocity of step t: t -> t+1
    before = v[lo : seam - 1].mean(axis=0)  # steps seam-window-1 .. seam-2
    after = v[seam : seam + window].mean(axis=0)
    acc = np.diff(v, axis=0)  # (f-2, 2) acceleration at step t: v[t+1] - v[t]
    away = np.ones(acc.shape[0], dtype=bool)
    away[max(0, seam - 3) : seam + 1] = False  # accelerations touching the seam step (seam-1)
    acc = acc[away & np.isfinite(acc).all(axis=1)]
    a = np.median(acc, axis=0) if acc.shape[0] else np.zeros(2)
    pred = before + a * (window + 1)
    return float(np.linalg.norm(after - pred) / max(float(np.linalg.norm(pred)), min_speed))


def clip_speed_change(result: TrackResult, seam: int, bars: ModeBars) -> float:
    """The largest ``seam_speed_change`` over the clip's long, unclipped tracks (0 when none is measurable);
    ``inf`` when a track ends just before the seam or starts at it in full view (the object jumped)."""
    min_speed = bars.min_speed_frac * min(result.height, result.width)
    span = range(seam - bars.speed_window - 1, seam + bars.speed_window + 1)
    values = []
    for tr in result.long_tracks(bars.min_track_frames):
        if (tr.last == seam - 1 and not tr.clipped(seam - 1)) or (tr.first == seam and not tr.clipped(seam)):
            return float("inf")
        if any(t in tr.obs and (tr.clipped(t) or tr.pieces(t) > 1) for t in span):
            continue  # at the frame edge, the occluder or broken: the centre is not the object's
        v = seam_speed_change(tr.centers(result.num_frames), seam, bars.speed_window, min_speed)
        if v is not None:
            values.append(v)
    return max(values, default=0.0)


def mean_speed(result: TrackResult, lo: int, hi: int, min_frames: int = 3) -> float:
    """Mean step length (px per frame) of the long tracks' centres within frames ``lo .. hi - 1``.

    Steps at the frame edge, behind the occluder or of a broken object are left out (the centre is not
    the object's there); 0 when nothing is tracked.
    """
    steps: list[float] = []
    for tr in result.long_tracks(min_frames):
        for t in range(max(lo, tr.first), min(hi, tr.last + 1) - 1):
            if t in tr.obs and t + 1 in tr.obs and not (tr.clipped(t) or tr.clipped(t + 1) or tr.pieces(t) > 1 or tr.pieces(t + 1) > 1):
                (y0, x0), (y1, x1) = tr.center(t), tr.center(t + 1)
                steps.append(float(np.hypot(y1 - y0, x1 - x0)))
    return float(np.mean(steps)) if steps else 0.0


def motion_kept(result: TrackResult, truth: TrackResult, lo: int, hi: int, bars: ModeBars) -> tuple[float, str]:
    """``min(r, 1/r)`` for ``r`` = generated / true :func:`mean_speed` on frames ``lo .. hi - 1`` (both floored
    at ``min_speed``), and a description."""
    floor = bars.min_speed_frac * min(result.height, result.width)
    gen = mean_speed(result, lo, hi, bars.min_track_frames)
    true = mean_speed(truth, lo, hi, bars.min_track_frames)
    r = max(gen, floor) / max(true, floor)
    return min(r, 1.0 / r), f"{gen:.2f} px/frame generated, {true:.2f} in the ground truth"


def signature(result: TrackResult, lo: int, hi: int, min_frames: int = 3) -> Signature:
    """Objects seen in frames ``lo .. hi - 1``: a multiset of (colour, shape) of the tracks seen there
    in at least ``min(min_frames, hi - lo)`` frames (majority colour and shape inside the stretch)."""
    need = min(min_frames, hi - lo)
    out: Signature = Counter()
    for tr in result.tracks:
        seen = [t for t in tr.frames if lo <= t < hi]
        if len(seen) >= need:
            out[(tr.majority_color(seen), tr.majority_shape(seen))] += 1
    return out


def describe_signature(sig: Signature) -> str:
    return ", ".join(f"{n}x {c or '?'} {s}" for (c, s), n in sorted(sig.items(), key=str)) or "nothing"


def window_consistency(result: TrackResult, window: int, min_frames: int = 3) -> tuple[float, int]:
    """Share of ``window``-frame stretches whose objects are the first stretch's; (share, windows)."""
    starts = list(range(0, max(1, result.num_frames - window + 1), window))
    sigs = [signature(result, s, min(s + window, result.num_frames), min_frames) for s in starts]
    same = sum(1 for s in sigs if s == sigs[0])
    return same / len(sigs), len(sigs)


def identity_kept(image: np.ndarray, gen: TrackResult, truth: TrackResult, bars: ModeBars) -> tuple[float, str]:
    """Share of the image's objects that start the generated clip and stay tracked.

    Each (colour, shape) of the image (uint8 ``(h, w, 3)``) needs a generated track seen in frame 0 or
    1 with that colour and shape in its first 3 frames (a bite or colour change may come later),
    lasting ``identity_coverage`` times as many frames as the longest such track of the ground truth
    (objects may leave the frame there too); objects the ground truth's tracks do not show are left out.
    """
    objects = signature(track(image[None]), 0, 1, 1)
    if not objects:
        return float("nan"), "no object found in the image"

    def longest(res: TrackResult, color: str | None, shape: str) -> int:
        return max((len(tr.obs) for tr in res.tracks if tr.first <= 1 and (tr.majority_color(tr.frames[:3]), tr.majority_shape(tr.frames[:3])) == (color, shape)), default=0)

    kept, total, lost = 0, 0, []
    for (color, shape), n in objects.items():
        reference = longest(truth, color, shape)
        if reference == 0:
            continue  # the tracker does not follow this object even in the ground truth
        total += n
        if longest(gen, color, shape) >= bars.identity_coverage * reference:
            kept += n
        else:
            lost.append(f"{color} {shape}")
    if total == 0:
        return float("nan"), "the ground truth's tracks do not start with the image's objects"
    return kept / total, ("lost: " + ", ".join(lost)) if lost else ""


def direction_of(centers: np.ndarray, still_px: float) -> str:
    """``left`` / ``right`` / ``up`` / ``down`` by the net displacement's larger axis, ``still`` below ``still_px``."""
    seen = centers[np.isfinite(centers).all(axis=1)]
    if seen.shape[0] < 2:
        return "still"
    dx, dy = seen[-1] - seen[0]
    if np.hypot(dx, dy) < still_px:
        return "still"
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


# ------------------------------------------------------------------------------------------ edit prompt
def recolor_caption(spec: ClipSpec, rng: np.random.Generator) -> tuple[str, str, str] | None:
    """The caption with one object colour word replaced: (new caption, old colour, new colour).

    The old colour is one that no object changes to or from (a colour-change caption names both) and
    that occurs exactly once as a word; the new colour is one no object of the scene has. None when
    no colour qualifies.
    """
    used = {o.color for o in spec.objects} | {o.to_color for o in spec.objects if o.to_color}
    fixed = {o.color for o in spec.objects if o.event == "color_change"} | {o.to_color for o in spec.objects if o.to_color}
    free = [c for c in COLORS if c not in used]
    for o in spec.objects:
        word = re.compile(rf"\b{o.color}\b")
        if o.color in fixed or len(word.findall(spec.caption)) != 1 or not free:
            continue
        new = str(rng.choice(free))
        return word.sub(new, spec.caption), o.color, new
    return None


# ------------------------------------------------------------------------------------------ per-mode runners
@dataclass
class GroundTruth:
    """One ground-truth clip, tracked once and shared by every mode."""

    clip_id: str
    index: int
    spec: ClipSpec
    frames: np.ndarray  # uint8 (f, h, w, 3)
    result: TrackResult


ModeFn = Callable[["KinemaPipeline", GroundTruth, ModeEvalConfig, ModeBars], list[Measurement]]


def _gen_kwargs(gt: GroundTruth, cfg: ModeEvalConfig) -> dict[str, object]:
    return dict(fps=gt.spec.fps, width=gt.spec.width, height=gt.spec.height, steps=cfg.steps, guidance=cfg.guidance,
                seed=cfg.seed + gt.index)


def measure_i2v(pipe: KinemaPipeline, gt: GroundTruth, cfg: ModeEvalConfig, bars: ModeBars) -> list[Measurement]:
    image = gt.frames[0]
    out = pipe.generate(gt.spec.caption, image=image, mode="i2v", frames=gt.spec.num_frames, **_gen_kwargs(gt, cfg)).frames
    kept, why = identity_kept(image, track(out), gt.result, bars)
    return [Measurement("first_frame_psnr_db", psnr(out[0], image), bars.first_frame_psnr, ">="),
            Measurement("identity_kept", kept, 1.0, ">=", why)]


def seam_measurements(out: np.ndarray, gt: GroundTruth, seam: int, bars: ModeBars,
                      generated: tuple[int, int] | None = None) -> list[Measurement]:
    """Seam ratio, speed change and same objects of ``out`` (uint8 ``(f, h, w, 3)``) at frame ``seam``.

    When ``out`` is as long as the ground truth, the world's own speed change at that frame is
    subtracted and the objects the world shows after the seam also count as the same objects.
    ``generated`` (frames ``lo, hi``, with ``out`` as long as the ground truth): also measure whether
    the generated stretch keeps the world's motion (``motion_kept``).
    """
    res = track(out)
    ratio = seam_ratio(out, seam, bars.min_step)
    change = clip_speed_change(res, seam, bars)
    world = clip_speed_change(gt.result, seam, bars) if out.shape[0] == gt.frames.shape[0] else 0.0
    w = bars.speed_window + 1
    before = signature(res, max(0, seam - w), seam, bars.min_track_frames)
    after = signature(res, seam, min(out.shape[0], seam + w), bars.min_track_frames)
    # the same objects on both sides, or (an object coming out from behind a wall, a break) what the world shows there
    truth_after = signature(gt.result, seam, min(gt.frames.shape[0], seam + w), bars.min_track_frames)
    same = before == after or (out.shape[0] == gt.frames.shape[0] and after == truth_after)
    kept = []
    if generated is not None and out.shape[0] == gt.frames.shape[0]:
        value, why = motion_kept(res, gt.result, generated[0], generated[1], bars)
        kept = [Measurement("motion_kept", value, bars.motion_kept, ">=", why)]
    return [
        Measurement("seam_ratio", ratio, bars.seam_ratio, "<="),
        Measurement("speed_change", 0.0 if np.isinf(world) else max(0.0, change - world), bars.speed_change, "<=",
                    f"{change:.3f} generated, {world:.3f} in the ground truth at the same frame"),
        Measurement("same_objects", float(same), 1.0, ">=",
                    "" if same else f"before: {describe_signature(before)}; after: {describe_signature(after)}; "
                                    f"ground truth after: {describe_signature(truth_after)}"),
        *kept,
    ]


def measure_extend(pipe: KinemaPipeline, gt: GroundTruth, cfg: ModeEvalConfig, bars: ModeBars) -> list[Measurement]:
    n = gt.frames.shape[0]
    k = n // 2 + 1
    out = pipe.generate(gt.spec.caption, video=gt.frames[:k], mode="extend", frames=n - k, context=cfg.context,
                        **_gen_kwargs(gt, cfg)).frames
    return seam_measurements(out, gt, k, bars, generated=(k, n))


def measure_extend_backward(pipe: KinemaPipeline, gt: GroundTruth, cfg: ModeEvalConfig, bars: ModeBars) -> list[Measurement]:
    n = gt.frames.shape[0]
    k = n // 2 + 1
    out = pipe.generate(gt.spec.caption, video=gt.frames[n - k :], mode="extend_backward", frames=n - k,
                        context=cfg.context, **_gen_kwargs(gt, cfg)).frames
    return seam_measurements(out, gt, out.shape[0] - k, bars, generated=(0, out.shape[0] - k))


def measure_loop(pipe: KinemaPipeline, gt: GroundTruth, cfg: ModeEvalConfig, bars: ModeBars) -> list[Measurement]:
    out = pipe.generate(gt.spec.caption, mode="loop", frames=gt.spec.num_frames, context=cfg.context, **_gen_kwargs(gt, cfg)).frames
    return [Measurement("loop_ratio", loop_ratio(out, bars.min_step), bars.loop_ratio, "<=", f"{out.shape[0]} frames")]


def measure_connect(pipe: KinemaPipeline, gt: GroundTruth, cfg: ModeEvalConfig, bars: ModeBars) -> list[Measurement]:
    n = gt.frames.shape[0]
    a = b = n // 3
    first, second = gt.frames[:a], gt.frames[n - b :]
    out = pipe.generate(gt.spec.caption, video=first, end_video=second, mode="connect", frames=n - a - b,
                        context=cfg.context, **_gen_kwargs(gt, cfg)).frames
    end = out.shape[0] - b  # first frame of the second video
    return [
        Measurement("start_seam_ratio", seam_ratio(out, a, bars.min_step), bars.seam_ratio, "<="),
        Measurement("end_seam_ratio", seam_ratio(out, end, bars.min_step), bars.seam_ratio, "<="),
        Measurement("start_psnr_db", psnr(out[a], first[-1]), detail="first generated frame vs the first video's last"),
        Measurement("end_psnr_db", psnr(out[end - 1], second[0]), detail="last generated frame vs the second video's first"),
    ]


def measure_edit(pipe: KinemaPipeline, gt: GroundTruth, cfg: ModeEvalConfig, bars: ModeBars) -> list[Measurement]:
    rng = np.random.default_rng([cfg.seed, gt.index])
    change = recolor_caption(gt.spec, rng)
    if change is None:
        raise _NotApplicable(f"no colour of {gt.spec.caption!r} can be changed alone")
    caption, old, new = change
    out = pipe.generate(caption, video=gt.frames, mode="edit", strength=cfg.strength, **_gen_kwargs(gt, cfg)).frames
    return edit_measurements(out, gt.result, old, new, bars)


def edit_measurements(out: np.ndarray, truth: TrackResult, old: str, new: str, bars: ModeBars) -> list[Measurement]:
    """An edit of a clip (tracked as ``truth``) that should turn its ``old``-coloured objects ``new``:
    the new colour is found (and the old is gone), and shapes, count and directions are the clip's."""
    res = track(out)
    n = out.shape[0]
    mine = res.long_tracks(bars.min_track_frames)
    theirs = truth.long_tracks(bars.min_track_frames)
    want = sum(1 for tr in theirs if tr.majority_color() == old)
    got_new = sum(1 for tr in mine if tr.majority_color() == new)
    got_old = sum(1 for tr in mine if tr.majority_color() == old)
    recolored = got_new >= want and got_old == 0
    shapes_kept = Counter(tr.majority_shape() for tr in mine) == Counter(tr.majority_shape() for tr in theirs)
    still_px = bars.still_frac * min(out.shape[1], out.shape[2])
    ok_dirs, used = 0, set()
    for tr in theirs:  # each ground-truth object: the nearest unused edited track moves the same way
        c = tr.centers(n)
        best, best_d = None, np.inf
        for j, other in enumerate(mine):
            d = np.nanmedian(np.hypot(*(other.centers(n) - c).T)) if set(other.obs) & set(tr.obs) else np.inf
            if j not in used and d < best_d:
                best, best_d = j, d
        if best is not None:
            used.add(best)
            ok_dirs += direction_of(mine[best].centers(n), still_px) == direction_of(c, still_px)
    detail = f"{old} -> {new}: {got_new} {new} and {got_old} {old} tracks (want {want} {new})"
    return [
        Measurement("new_color", float(recolored), 1.0, ">=", detail),
        Measurement("shapes_kept", float(shapes_kept), 1.0, ">="),
        Measurement("count_kept", float(len(mine) == len(theirs)), 1.0, ">=", f"{len(mine)} tracks vs {len(theirs)}"),
        Measurement("directions_kept", ok_dirs / len(theirs) if theirs else float("nan"), 1.0, ">="),
    ]


def measure_long(pipe: KinemaPipeline, gt: GroundTruth, cfg: ModeEvalConfig, bars: ModeBars) -> list[Measurement]:
    total = int(round(cfg.long_seconds * gt.spec.fps))
    first = min(gt.spec.num_frames, pipe.config.max_frames)
    first = 1 + ((first - 1) // pipe.temporal_factor) * pipe.temporal_factor
    kw = _gen_kwargs(gt, cfg)
    base = pipe.generate(gt.spec.caption, frames=first, **kw).frames
    out = pipe.generate(gt.spec.caption, video=base, mode="extend", frames=max(1, total - first), context=cfg.context, **kw).frames
    window = max(2, int(round(cfg.window_seconds * gt.spec.fps)))
    share, windows = window_consistency(track(out), window, bars.min_track_frames)
    return [Measurement("windows_consistent", share, 1.0, ">=", f"{windows} windows of {window} frames"),
            Measurement("seconds", out.shape[0] / gt.spec.fps, detail=f"{out.shape[0]} frames")]


def measure_refine(pipe: KinemaPipeline, gt: GroundTruth, cfg: ModeEvalConfig, bars: ModeBars) -> list[Measurement]:
    from kinema.pipeline import SampleSettings

    refiner = pipe.refiner
    if refiner is None:
        raise InvalidInputError(f"model '{pipe.name}' has no refiner; leave 'refine' out of the modes")
    s = refiner.config.scale_factor
    kw = _gen_kwargs(gt, cfg)
    base = pipe.generate(gt.spec.caption, frames=gt.spec.num_frames, **kw).frames
    high = pipe.generate(gt.spec.caption, frames=gt.spec.num_frames, refine=True, refine_steps=cfg.refine_steps, **kw).frames
    metrics = list(SUITES["t2v"].metrics)
    r_base = evaluate_frames(base, from_spec(gt.spec), gt.spec.fps, metrics)
    r_high = evaluate_frames(high, from_spec(scale_spec(gt.spec, s)), gt.spec.fps, metrics)
    need = [m for m, r in r_base.metrics.items() if r.passed]
    kept = [m for m in need if m in r_high.metrics and r_high.metrics[m].passed]
    lost = sorted(set(need) - set(kept))
    up = upsample_frames(base, s)
    # super-resolution of the ground truth: the 2x render, area-averaged down, refined back up
    truth = render(scale_spec(gt.spec, s))
    low = area_downsample_frames(truth, s)
    c = pipe.config
    settings = SampleSettings(gt.spec.caption, c.negative_prompt, gt.spec.width, gt.spec.height, gt.spec.num_frames, gt.spec.fps,
                              cfg.steps or c.steps, c.guidance if cfg.guidance is None else cfg.guidance, c.sampler, 0.0,
                              cfg.seed + gt.index, pipe.name)
    sr = refiner.refine(low, settings, steps=cfg.refine_steps, strength=1.0, text_encoder=pipe.text_encoder)
    bilinear = upsample_frames(low, s)
    edges = luma_gradient(truth) >= bars.edge_level  # (f, H, W): where the ground truth has its edges
    g_ref, g_bil, g_true = (float(luma_gradient(x)[edges].mean()) if edges.any() else float("nan") for x in (sr, bilinear, truth))
    p_ref, p_bil = psnr(sr, truth), psnr(bilinear, truth)
    p_vae = vae_reconstruction_psnr(refiner.vae, truth)
    return [
        Measurement("tracker_metrics_kept", len(kept) / len(need) if need else 1.0, 1.0, ">=",
                    ("lost: " + ", ".join(lost)) if lost else f"{len(need)} metrics the base passes"),
        Measurement("edge_ratio", edge_energy(high) / max(edge_energy(up), 1e-6), bars.edge_ratio, ">="),
        Measurement("gt_edge_ratio", g_ref / max(g_bil, 1e-6), bars.gt_edge_ratio, ">=",
                    f"gradient on the ground truth's edges: refined {g_ref:.1f}, bilinear {g_bil:.1f}, truth {g_true:.1f}"),
        Measurement("gt_psnr_db", p_ref, detail=f"refined ground truth vs the {s}x render"),
        Measurement("gt_psnr_gain_db", p_ref - p_bil, detail=f"refined {p_ref:.2f} dB, bilinear {p_bil:.2f} dB"),
        Measurement("gt_vae_psnr_db", p_vae, detail="the refiner's VAE reconstructing the render: the bound of any latent refiner"),
    ]


def vae_reconstruction_psnr(vae: object, frames: np.ndarray) -> float:
    """PSNR of ``vae``'s encode (mode) -> decode round trip of uint8 ``(f, h, w, 3)`` frames."""
    import torch

    from kinema.video import Video

    with torch.no_grad():
        x = Video(frames, fps=16.0).to_tensor()  # (1, 3, f, h, w)
        rec = vae.decode(vae.encode(x).mode()).clamp(-1.0, 1.0)  # type: ignore[attr-defined]
    return psnr(Video.from_tensor(rec, fps=16.0).frames, frames)


class _NotApplicable(KinemaError):
    """A clip a mode cannot be measured on (e.g. no colour to change): counted in ``skipped_clips``."""


MODE_MEASURES: Final[dict[str, ModeFn]] = {
    "i2v": measure_i2v, "extend": measure_extend, "extend_backward": measure_extend_backward, "loop": measure_loop,
    "connect": measure_connect, "edit": measure_edit, "long": measure_long, "refine": measure_refine,
}
_GENERATE_NEEDS: Final[dict[str, tuple[str, ...]]] = {
    "i2v": ("image", "mode"), "extend": ("video", "mode"), "extend_backward": ("video", "mode"), "loop": ("mode",),
    "connect": ("video", "end_video", "mode"), "edit": ("video", "mode", "strength"), "long": ("video", "mode"),
    "refine": ("refine",),
}


def select_modes(pipe: KinemaPipeline, requested: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """Modes to run and modes skipped (with why). An explicitly requested mode the model lacks is an error."""
    from kinema.modes import MODES

    unknown = [m for m in requested if m not in EVAL_MODES]
    if unknown:
        raise InvalidInputError(f"unknown modes {unknown}; choose from {', '.join(EVAL_MODES)}")
    params = set(inspect.signature(pipe.generate).parameters)
    missing: dict[str, str] = {}
    for m in EVAL_MODES:
        lacks = [p for p in _GENERATE_NEEDS[m] if p not in params]
        pipeline_mode = {"long": "extend", "refine": "t2v"}.get(m, m)
        if lacks:
            missing[m] = f"this pipeline's generate() takes no {', '.join(lacks)}"
        elif pipeline_mode not in MODES:
            missing[m] = f"this pipeline has no mode '{pipeline_mode}' (it has {', '.join(MODES)})"
        elif m == "refine" and pipe.refiner is None:
            missing[m] = f"model '{pipe.name}' has no refiner"
    if requested:
        bad = {m: missing[m] for m in requested if m in missing}
        if bad:
            raise InvalidInputError("the model cannot run the requested modes: " + "; ".join(f"{m}: {w}" for m, w in bad.items()))
        return list(dict.fromkeys(requested)), {}
    return [m for m in EVAL_MODES if m not in missing], missing


# ------------------------------------------------------------------------------------------ runner
def ground_truth_clips(cfg: ModeEvalConfig, run: ModeEvalRun, count: int) -> list[GroundTruth]:
    """Examples ``0 .. count-1`` of ``cfg.split`` (clean by construction); unsamplable ones are recorded as skipped."""
    from kinema.world import sample_spec

    clips = []
    for index in range(count):
        cid = f"{cfg.split}-{index:05d}"
        try:
            spec = sample_spec(cfg.split, cfg.seed, index, cfg.width, cfg.height, cfg.fps, cfg.num_frames)
        except KinemaError as e:
            run.skipped_clips.append({"clip_id": cid, "mode": "*", "reason": str(e)})
            continue
        frames = render(spec)
        clips.append(GroundTruth(cid, index, spec, frames, track(frames)))
    return clips


def run_modes(pipe: KinemaPipeline, cfg: ModeEvalConfig, bars: ModeBars = ModeBars(), *, model: str = "",
              progress: bool = True) -> ModeEvalRun:
    """Run every selected mode on the first ``cfg.n`` ground-truth clips, and ``long`` on the first ``cfg.long_n``
    (which may be more than ``cfg.n``)."""
    from tqdm import tqdm

    if cfg.n < 1:
        raise InvalidInputError(f"n={cfg.n} not supported: must be >= 1")
    if cfg.long_n < 0:
        raise InvalidInputError(f"long_n={cfg.long_n} not supported: must be >= 0")
    modes, skipped = select_modes(pipe, tuple(cfg.modes))
    run = ModeEvalRun(model or pipe.name, cfg, bars, skipped_modes=skipped)
    clips = ground_truth_clips(cfg, run, max(cfg.n, cfg.long_n) if "long" in modes else cfg.n)
    bar = tqdm(clips, desc="clips", unit="clip", disable=not progress)
    for gt in bar:
        for mode in modes:
            if gt.index >= (cfg.long_n if mode == "long" else cfg.n):
                continue
            bar.set_postfix_str(mode)
            t0 = time.perf_counter()
            try:
                values = MODE_MEASURES[mode](pipe, gt, cfg, bars)
            except _NotApplicable as e:
                run.skipped_clips.append({"clip_id": gt.clip_id, "mode": mode, "reason": str(e)})
                continue
            run.results.append(ModeClipResult(mode, gt.clip_id, gt.spec.caption, time.perf_counter() - t0, values))
            log.info("%s %s: %s", mode, gt.clip_id, ", ".join(f"{m.name}={m.value:.3g}" for m in values))
    return run
