"""Scene-level metrics: background colour and stability, camera pan, flicker, first-frame
fidelity (image-to-video) and seam continuity (extensions)."""

from __future__ import annotations

import numpy as np

from kinema.eval.assign import Context
from kinema.eval.metrics.base import MetricResult
from kinema.eval.metrics.objects import explained, merged
from kinema.eval.thresholds import Thresholds


def _luma(frames: np.ndarray) -> np.ndarray:
    x = frames.astype(np.float32)
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]  # (f, h, w)


def background_stability(ctx: Context, th: Thresholds) -> MetricResult:
    """The background is the caption's and, with a still camera, does not change under the objects."""
    notes: list[str] = []
    ok = ctx.result.background == ctx.exp.background
    if not ok:
        notes.append(f"background {ctx.result.background}, expected {ctx.exp.background}")
    value = 0.0
    if not ctx.exp.camera and ctx.result.num_frames > 1:
        y = _luma(ctx.frames)
        both = ctx.scene[1:] & ctx.scene[:-1]  # (f-1, h, w)
        diff = np.abs(np.diff(y, axis=0))  # (f-1, h, w)
        per = np.array([float(diff[t][both[t]].mean()) if both[t].any() else 0.0 for t in range(len(diff))])
        value = float(np.percentile(per, 95))
        if value > th.background_mad:
            ok = False
            notes.append(f"background changes by {value:.1f} levels per frame (worst step f{int(per.argmax()) + 1})")
    return MetricResult("background", value, ok, th.background_mad, "; ".join(notes))


def camera_pan(ctx: Context, th: Thresholds) -> MetricResult | None:
    """A said pan moves the floor texture the right way at the right speed; a still camera stays still."""
    if not ctx.texture and not ctx.exp.camera:
        return None
    pan = float(np.median(ctx.pan)) if ctx.pan.size else 0.0
    want = ctx.exp.camera
    if not want:
        ok = abs(pan) <= th.pan_min_px
        return MetricResult("camera_pan", pan, ok, th.pan_min_px, "" if ok else f"camera moves {pan:+.2f} px/frame, expected still")
    if not ctx.texture:
        return MetricResult("camera_pan", 0.0, False, th.pan_min_px, "no floor texture to show the pan")
    sign = 1.0 if want == "right" else -1.0
    ok = pan * sign >= th.pan_min_px
    detail = "" if ok else f"pan {pan:+.2f} px/frame, expected {want}"
    if ctx.exp.rollout is not None and ok:
        true = ctx.exp.rollout.camera_pan
        ok = abs(pan - true) <= th.pan_rel_error * abs(true)
        detail = "" if ok else f"pan {pan:+.2f} px/frame, rollout {true:+.2f}"
    return MetricResult("camera_pan", pan, ok, th.pan_min_px, detail)


def flicker(ctx: Context, th: Thresholds) -> MetricResult | None:
    """No frame is brighter or darker than its neighbours: max |L_t - (L_{t-1} + L_{t+1}) / 2| of scene luma."""
    f = ctx.result.num_frames
    if f < 3:
        return None
    y = _luma(ctx.frames)
    spikes = np.zeros(f)
    for t in range(1, f - 1):
        m = ctx.scene[t - 1] & ctx.scene[t] & ctx.scene[t + 1]
        if m.sum() < 16:
            continue
        a, b, c = y[t - 1][m].mean(), y[t][m].mean(), y[t + 1][m].mean()
        spikes[t] = abs(b - 0.5 * (a + c))
    value = float(spikes.max())
    ok = value <= th.flicker
    return MetricResult("flicker", value, ok, th.flicker, "" if ok else f"frame {int(spikes.argmax())} jumps {value:.1f} levels")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse <= 1e-10 else 10.0 * np.log10(255.0**2 / mse)


def first_frame_fidelity(ctx: Context, th: Thresholds) -> MetricResult | None:
    """Image-to-video: frame 0 reproduces the given image (PSNR)."""
    cond = ctx.exp.condition
    if ctx.exp.condition_frames < 1 or cond is None:
        return None
    cond = np.asarray(cond)
    if cond.shape[1:] != ctx.frames.shape[1:]:
        return MetricResult("first_frame", 0.0, False, th.first_frame_psnr, f"size {ctx.frames.shape[1:3]} != image {cond.shape[1:3]}")
    value = psnr(ctx.frames[0], cond[0])
    ok = value >= th.first_frame_psnr
    return MetricResult("first_frame", value, ok, th.first_frame_psnr, "" if ok else f"PSNR {value:.1f} dB")


def seam_continuity(ctx: Context, th: Thresholds) -> MetricResult | None:
    """Extension: the given frames are kept and the cut to new frames is no bigger than a normal step."""
    k = ctx.exp.condition_frames
    cond = ctx.exp.condition
    f = ctx.result.num_frames
    if k < 2 or cond is None or k >= f:
        return None
    cond = np.asarray(cond)
    notes: list[str] = []
    kept = psnr(ctx.frames[:k], cond[:k])
    ok = kept >= th.first_frame_psnr
    if not ok:
        notes.append(f"given frames changed (PSNR {kept:.1f} dB)")
    # background pixels only: objects may legitimately change at once (colour change, bite); their
    # continuity is checked through the tracks below
    diff = np.abs(np.diff(ctx.frames.astype(np.float32), axis=0)).mean(axis=-1)  # (f-1, h, w)
    both = ctx.scene[1:] & ctx.scene[:-1]
    step = np.array([float(diff[t][both[t]].mean()) if both[t].any() else 0.0 for t in range(f - 1)])  # (f-1,)
    seam = float(step[k - 1])
    others = np.delete(step, k - 1)
    typical = float(np.median(others)) if others.size else 0.0
    value = seam / (th.seam_ratio * typical + th.seam_slack)
    if value > 1.0:
        ok = False
        notes.append(f"seam step {seam:.1f} vs typical {typical:.1f}")
    # objects: no track may end or start at the seam, nor jump more than its own worst step elsewhere
    for tr in ctx.result.long_tracks(th.min_track_frames):
        if tr.last == k - 1 or tr.first == k:
            t = k - 1 if tr.last == k - 1 else k
            other = k if tr.last == k - 1 else k - 1
            reach = max(tr.main(t).extent, 2.0) + 2.0
            if not explained(ctx, tr, t, other, tr.center(t), reach):
                ok = False
                notes.append(f"a {tr.color(t)} object {'ends' if t == k - 1 else 'starts'} at the seam")
            continue
        if any(t in tr.obs and (tr.clipped(t) or merged(ctx, tr, t)) for t in (k - 2, k - 1, k, k + 1)):
            continue  # at an edge, the wall or touching another object the centre is not reliable
        c = tr.centers(f)
        acc = np.hypot(*np.diff(c, n=2, axis=0).T)  # (f-2,) |second difference|, NaN where unseen
        at = acc[k - 2] if 0 <= k - 2 < len(acc) else np.nan
        rest = np.delete(acc, [i for i in (k - 3, k - 2, k - 1) if 0 <= i < len(acc)])
        limit = max(th.seam_jump_frac * ctx.unit, 1.5 * float(np.nanmax(rest)) if np.isfinite(rest).any() else 0.0)
        if np.isfinite(at) and at > limit:
            ok = False
            value = max(value, float(at / limit))
            notes.append(f"a {tr.color(k)} object jumps {at:.1f} px at the seam (limit {limit:.1f})")
    return MetricResult("seam", value, ok, 1.0, "; ".join(notes) or "value = seam change / allowed change")
