"""Deliberately broken videos for calibration: each returns new frames, or None when the clip has
nothing the corruption could break (e.g. mirroring a clip with no left/right in it).

Corruptions use the clip's ground truth (``ClipSpec``) to know where objects are. The calibration
tests check that every metric passes on clean renders and that the suite fails on these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np

from kinema.eval.segment import scene_distance
from kinema.world.palette import COLORS
from kinema.world.spec import ClipSpec

Corruption = Callable[[np.ndarray, ClipSpec], "np.ndarray | None"]


def _directional(spec: ClipSpec) -> bool:
    return any(o.motion in ("left", "right", "up", "down", "fall", "thrown", "pass_behind", "move") or o.event
               for o in spec.objects) or abs(spec.camera_pan) > 0


def reverse_time(frames: np.ndarray, spec: ClipSpec) -> np.ndarray | None:
    """Play the clip backwards."""
    return frames[::-1].copy() if _directional(spec) else None


def swap_colors(frames: np.ndarray, spec: ClipSpec) -> np.ndarray | None:
    """Rotate RGB channels: every object colour but white becomes another colour; grays stay."""
    if all(o.color == "white" and o.to_color in ("", "white") for o in spec.objects):
        return None
    return frames[..., [2, 0, 1]].copy()


def mirror(frames: np.ndarray, spec: ClipSpec) -> np.ndarray | None:
    """Flip left and right."""
    lr = any(o.direction in ("left", "right") or o.motion in ("left", "right") for o in spec.objects)
    return frames[:, :, ::-1].copy() if lr or abs(spec.camera_pan) > 0 else None


def _victim(spec: ClipSpec) -> int | None:
    """An object that stays whole and in view: the one to delete or teleport."""
    for o in spec.objects:
        if not o.event and o.motion != "pass_behind" and all(fr.visible > 0.9 for fr in o.frames):
            return o.id
    return None


def _object_mask(frames: np.ndarray, spec: ClipSpec, oid: int, t: int, grow: float = 2.0) -> np.ndarray:
    """Pixels of object ``oid`` in frame ``t`` (within its radius + ``grow`` and unlike the scene)."""
    fr = spec.objects[oid].frames[t]
    h, w = frames.shape[1:3]
    yy, xx = np.mgrid[0:h, 0:w]
    reach = fr.radius * 1.3 + grow
    near = (xx + 0.5 - fr.center[0]) ** 2 + (yy + 0.5 - fr.center[1]) ** 2 <= reach**2
    return near & (scene_distance(frames[t : t + 1])[0] > 12.0)


def _erase(img: np.ndarray, mask: np.ndarray) -> None:
    """Paint ``mask`` with the median colour of the pixels around it (in place)."""
    grown = mask.copy()
    for _ in range(3):
        g = grown.copy()
        g[1:] |= grown[:-1]
        g[:-1] |= grown[1:]
        g[:, 1:] |= grown[:, :-1]
        g[:, :-1] |= grown[:, 1:]
        grown = g
    ring = grown & ~mask & (scene_distance(img[None])[0] <= 12.0)
    fill = np.median(img[ring], axis=0) if ring.any() else np.median(img.reshape(-1, 3), axis=0)
    img[mask] = fill.astype(np.uint8)


def delete_object(frames: np.ndarray, spec: ClipSpec) -> np.ndarray | None:
    """An object vanishes from the middle of the clip on."""
    oid = _victim(spec)
    if oid is None:
        return None
    out = frames.copy()
    for t in range(len(frames) // 2, len(frames)):
        _erase(out[t], _object_mask(frames, spec, oid, t))
    return out


def add_object(frames: np.ndarray, spec: ClipSpec) -> np.ndarray | None:
    """A new ball of an unused colour appears in the middle of the clip, far from every object."""
    f, h, w, _ = frames.shape
    used = {o.color for o in spec.objects} | {o.to_color for o in spec.objects}
    color = next(c for c in COLORS if c not in used and c != "white")
    r = 0.085 * min(h, w)
    cands = [(x, y) for x in np.linspace(r + 2, w - r - 2, 7) for y in np.linspace(r + 2, h * 0.8 - r, 6)]
    centers = np.array([[fr.center for fr in o.frames[f // 2 :]] for o in spec.objects]).reshape(-1, 2)
    best = max(cands, key=lambda c: float(np.min(np.hypot(centers[:, 0] - c[0], centers[:, 1] - c[1]))))
    yy, xx = np.mgrid[0:h, 0:w]
    disc = (xx + 0.5 - best[0]) ** 2 + (yy + 0.5 - best[1]) ** 2 <= r * r
    out = frames.copy()
    out[f // 2 :, disc] = np.array(COLORS[color], dtype=np.uint8)
    return out


def teleport(frames: np.ndarray, spec: ClipSpec) -> np.ndarray | None:
    """An object jumps a third of the frame sideways in the middle of the clip and stays there."""
    oid = _victim(spec)
    if oid is None:
        return None
    f, h, w, _ = frames.shape
    x0 = spec.objects[oid].frames[f // 2].center[0]
    dx = int(round(w / 3)) * (1 if x0 < w / 2 else -1)
    out = frames.copy()
    for t in range(f // 2, f):
        m = _object_mask(frames, spec, oid, t)
        ys, xs = np.nonzero(m)
        keep = (xs + dx >= 0) & (xs + dx < w)
        pix = frames[t, ys, xs]
        _erase(out[t], m)
        out[t, ys[keep], xs[keep] + dx] = pix[keep]
    return out


def inject_flicker(frames: np.ndarray, spec: ClipSpec) -> np.ndarray | None:
    """Two frames brighter by 20 levels."""
    f = len(frames)
    if f < 5:
        return None
    out = frames.astype(np.int16)
    for t in (f // 3, (2 * f) // 3):
        out[t] += 20
    return np.clip(out, 0, 255).astype(np.uint8)


def undo_state_change(frames: np.ndarray, spec: ClipSpec) -> np.ndarray | None:
    """Halfway between a state change and the end, the object goes back to how it was."""
    ev = [e for e in spec.events if e.kind in ("break", "bite", "color_change")]
    if not ev:
        return None
    e = ev[0]
    f = len(frames)
    mid = e.frame + max(1, (f - e.frame) // 3)
    if mid >= f - 2 or e.frame < 1:
        return None
    out = frames.copy()
    if e.kind == "color_change":
        o = spec.objects[e.objects[0]]
        src, dst = np.array(COLORS[o.to_color], float), np.array(COLORS[o.color], float)
        for t in range(mid, f):
            m = _object_mask(frames, spec, o.id, t)
            px = frames[t][m].astype(float)
            bg = np.median(frames[t][~m & (scene_distance(frames[t : t + 1])[0] <= 12.0)].astype(float), axis=0)
            a = np.clip(((px - bg) @ (src - bg)) / max(float((src - bg) @ (src - bg)), 1e-6), 0, 1)[:, None]
            out[t][m] = np.clip(bg + a * (dst - bg), 0, 255).astype(np.uint8)
    else:  # break / bite: the whole frame before the change comes back
        out[mid:] = frames[e.frame - 1]
    return out


CORRUPTIONS: Final[dict[str, Corruption]] = {
    "reverse": reverse_time,
    "swap_colors": swap_colors,
    "mirror": mirror,
    "delete": delete_object,
    "add": add_object,
    "teleport": teleport,
    "flicker": inject_flicker,
    "undo_state": undo_state_change,
}
