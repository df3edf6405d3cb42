"""Which track is which expected object, and scene-level measurements the metrics share.

``assign`` links each expected object to at most one track: against the rollout by median centre
distance, from a caption alone by colour, shape and size. ``estimate_pan`` measures the camera
pan from the floor texture; ``scene_pixels`` marks pixels that show no object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kinema.eval.expectations import Expectation
from kinema.eval.segment import scene_distance
from kinema.eval.tracker import Track, TrackResult
from kinema.world.palette import GRAYS
from kinema.world.simulate import PHYSICS


@dataclass
class Context:
    """One video under evaluation: frames, tracks, expectation and shared measurements."""

    frames: np.ndarray  # uint8 (f, h, w, 3)
    result: TrackResult
    exp: Expectation
    assigned: dict[int, Track | None]  # expected object id -> its track
    pan: np.ndarray  # (f-1,) measured camera pan per frame step, px (positive: camera moves right)
    scene: np.ndarray  # (f, h, w) bool, pixels showing no object (with a 1-px margin)
    fps: float = 16.0
    texture: bool = False  # the picture has horizontal texture (floor marks) that shows a pan
    cache: dict[str, object] = field(default_factory=dict)  # measurements shared between metrics

    @property
    def unit(self) -> float:
        return float(min(self.result.height, self.result.width))


def scene_pixels(frames: np.ndarray, fg_distance: float) -> np.ndarray:
    """Pixels far from any object: not foreground, nor next to it. (f, h, w) bool."""
    fg = scene_distance(frames) > fg_distance * 0.5  # (f, h, w), generous
    grown = fg.copy()
    grown[:, 1:] |= fg[:, :-1]
    grown[:, :-1] |= fg[:, 1:]
    grown[:, :, 1:] |= grown[:, :, :-1].copy()
    grown[:, :, :-1] |= grown[:, :, 1:].copy()
    return ~grown


def _luma(frames: np.ndarray) -> np.ndarray:
    x = frames.astype(np.float32)
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]  # (f, h, w)


def estimate_pan(frames: np.ndarray, scene: np.ndarray, max_shift: int = 6) -> tuple[np.ndarray, bool]:
    """Camera pan per frame step in px (positive: the camera moves right, the picture moves left).

    Uses the column profile of scene-pixel luma in rows with horizontal texture (floor marks).
    Returns the (f-1,) pan and whether there was texture to measure it (zeros when not).
    """
    f, h, w, _ = frames.shape
    y = _luma(frames)
    fill = np.median(y[scene]) if scene.any() else 0.0
    y = np.where(scene, y, fill)  # objects painted out
    floor = float(np.dot(GRAYS["floor"], (0.299, 0.587, 0.114)))
    floor_rows = np.abs(np.median(y, axis=(0, 2)) - floor) < 12.0  # (h,) rows of the floor band
    tex = np.abs(np.diff(y, axis=2)).mean(axis=(0, 2))  # (h,) horizontal texture per row
    rows = (tex > 2.0) & floor_rows  # floor marks only: moving objects' edges are no texture
    if rows.sum() == 0 or f < 2:
        return np.zeros(max(f - 1, 0)), False
    prof = y[:, rows, :].mean(axis=1)  # (f, w)
    prof = prof - prof.mean(axis=1, keepdims=True)
    shifts = np.arange(-max_shift, max_shift + 1e-6, 0.05)  # (S,) sub-pixel candidates
    xs = np.arange(w, dtype=np.float64)
    pos = xs[None, :] + shifts[:, None]  # (S, w): b is sampled at x + s
    valid = (pos >= 0) & (pos <= w - 1)
    i0 = np.clip(np.floor(pos).astype(int), 0, w - 2)
    frac = np.clip(pos - i0, 0.0, 1.0)
    out = np.zeros(f - 1)
    for t in range(f - 1):
        a, b = prof[t], prof[t + 1]
        # the picture moved left by s when b(x - s) = a(x), i.e. b(x) = a(x + s)
        a_s = a[i0] * (1 - frac) + a[np.minimum(i0 + 1, w - 1)] * frac  # (S, w) linear interpolation
        err = np.where(valid, (a_s - b[None, :]) ** 2, 0.0).sum(1) / np.maximum(valid.sum(1), 1)
        out[t] = float(shifts[int(err.argmin())])
    return out, True


def assign(result: TrackResult, exp: Expectation, min_frames: int) -> dict[int, Track | None]:
    """Expected object id -> its track (or None), greedy by cost."""
    tracks = result.long_tracks(min_frames)
    pairs: list[tuple[float, int, int]] = []
    unit = float(min(result.height, result.width))
    for oi, o in enumerate(exp.objects):
        for ti, tr in enumerate(tracks):
            if exp.rollout is not None:
                spec = exp.rollout.objects[o.id]
                d = [
                    float(np.hypot(*(np.array(tr.center(t)) - np.array(spec.frames[t].center))))
                    for t in tr.obs
                    if t < len(spec.frames) and spec.frames[t].visible > 0.3
                ]
                if len(d) < 2:
                    continue
                cost = float(np.median(d)) + 8.0 * (tr.color(tr.first) not in (o.color, o.final_color))
                if cost > 0.3 * unit:
                    continue
            else:
                early = tr.frames[: max(3, len(tr.obs) // 3)]  # before any break or bite
                col = tr.majority_color(early)
                shape = tr.majority_shape(early)
                cost = 10.0 * (col not in (o.color, o.final_color)) + 3.0 * (shape != o.shape)
                cost += 2.0 * (tr.first > 0)  # objects are all in view from the start
                # same colour and shape: tell them apart by size and by moving or not
                r = float(np.median([tr.main(t).radius(o.shape) for t in early])) / unit
                cost += 1.0 * abs(float(np.log(r / PHYSICS.radii[o.size])))
                c = tr.centers(result.num_frames)
                seen = [t for t in tr.frames if tr.pieces(t) == 1]
                moved = float(np.hypot(*(c[seen[-1]] - c[seen[0]]))) / unit if len(seen) > 1 else 0.0
                cost += 1.5 * ((o.motion == "still") == (moved > 0.08)) * (o.event != "break")
                cost -= 2.0 * len(tr.obs) / result.num_frames
            pairs.append((cost, oi, ti))
    pairs.sort()
    out: dict[int, Track | None] = {o.id: None for o in exp.objects}
    used: set[int] = set()
    for _, oi, ti in pairs:
        oid = exp.objects[oi].id
        if out[oid] is None and ti not in used:
            out[oid] = tracks[ti]
            used.add(ti)
    return out


def world_centers(ctx: Context, tr: Track) -> np.ndarray:
    """Track centres (f, 2) with the measured camera pan added back (world-fixed coordinates)."""
    c = tr.centers(ctx.result.num_frames)
    # the camera moves at a constant speed: the median step is robust to a few bad estimates
    rate = float(np.median(ctx.pan)) if ctx.pan.size else 0.0
    offset = rate * np.arange(ctx.result.num_frames)  # (f,)
    c[:, 0] += offset
    return c
