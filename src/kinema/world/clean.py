"""Is a simulated clip clean: does its video show exactly what its caption says?

A layout drawn from a seed can go wrong in ways the caption cannot express: two objects that the
caption does not make collide overlap (the video then shows fewer objects than the caption says),
an object starts partly out of view, an object that does not pass behind the wall goes behind it,
a promised event (wall bounce, collision, floor contact, reappearance after the wall, break, bite,
colour change) does not happen inside the clip, or an object breaks before it was seen whole.

``clip_problems(spec)`` lists those problems in words from the ``ClipSpec`` alone (so it also
checks specs read back from JSON); ``is_clean(spec)`` is ``not clip_problems(spec)``. The simulator
re-draws layouts until this holds and records what is left in ``ClipSpec.problems``; the split
samplers re-draw the scene until it holds (``kinema.world.sample_spec``).
"""

from __future__ import annotations

from typing import Final

import numpy as np

from kinema.world.geometry import shape_extent
from kinema.world.spec import ClipSpec, ObjectTrack

# The event each motion promises (a "break" event replaces the fall's floor bounce).
PROMISED_EVENTS: Final[dict[str, str]] = {
    "bounce": "wall_bounce", "collide": "collision", "fall": "floor_bounce", "pass_behind": "occlusion_end",
}
MIN_START_VISIBLE: Final[float] = 0.99  # every object starts (almost) fully in view
MIN_BREAK_FRAME: Final[int] = 3  # an object is seen whole in frames 0..2 before it breaks
APART_FACTOR: Final[float] = 1.2  # non-colliding centres stay >= 1.2 x summed radii + APART_SLACK apart
APART_SLACK: Final[float] = 0.02  # world units


def _name(o: ObjectTrack) -> str:
    return f"object {o.id} ({o.color} {o.shape}, {o.motion}{' + ' + o.event if o.event else ''})"


def collide_partners(spec: ClipSpec) -> dict[int, int]:
    """Colliding pairs as the simulator forms them: the ``collide`` objects in id order, taken in twos."""
    ids = [o.id for o in spec.objects if o.motion == "collide"]
    pairs: dict[int, int] = {}
    for i in range(0, len(ids) - 1, 2):
        pairs[ids[i]], pairs[ids[i + 1]] = ids[i + 1], ids[i]
    return pairs


def _event_problems(spec: ClipSpec, o: ObjectTrack) -> list[str]:
    out: list[str] = []
    mine = [e for e in spec.events if o.id in e.objects]
    kinds = {e.kind for e in mine}
    want = "break" if o.event == "break" else PROMISED_EVENTS.get(o.motion)
    if want and want not in kinds:
        out.append(f"{_name(o)}: no {want} event inside the clip")
    if o.event in ("bite", "color_change") and o.event not in kinds:
        out.append(f"{_name(o)}: no {o.event} event inside the clip")
    for e in mine:
        if e.kind == "break" and e.frame < MIN_BREAK_FRAME:
            out.append(f"{_name(o)}: breaks at frame {e.frame}, before it is seen whole for {MIN_BREAK_FRAME} frames")
    return out


def _wall_problems(spec: ClipSpec, o: ObjectTrack, unit: float) -> list[str]:
    """An object that does not pass behind the wall must stay out of the wall's column."""
    oc = spec.occluder
    if oc is None or o.motion == "pass_behind":
        return []
    f = spec.num_frames
    r = o.frames[0].radius / unit  # world units
    ext = max(shape_extent(o.shape, r)) * unit  # px
    c = np.array([fr.center for fr in o.frames], dtype=np.float64)  # (f, 2) screen px
    xs = c[:, 0] + spec.camera_pan * np.arange(f)  # frame-0 screen coordinates, like the occluder
    near = (xs + ext > oc.x0) & (xs - ext < oc.x1) & (c[:, 1] + ext > oc.y0) & (c[:, 1] - ext < oc.y1)  # (f,)
    if np.any(near):
        return [f"{_name(o)} goes near the wall at frame {int(np.argmax(near))} but the caption does not say so"]
    return []


def _overlap_problems(spec: ClipSpec, unit: float) -> list[str]:
    """Objects that do not collide keep their centres apart in every frame (also while hidden or broken)."""
    out: list[str] = []
    partners = collide_partners(spec)
    objs = spec.objects
    if len(objs) < 2:
        return out
    centers = np.array([[fr.center for fr in o.frames] for o in objs], dtype=np.float64)  # (n, f, 2)
    radii = np.array([o.frames[0].radius for o in objs])  # (n,) px
    for i, a in enumerate(objs):
        for j in range(i + 1, len(objs)):
            b = objs[j]
            if partners.get(a.id) == b.id:
                continue
            d = np.linalg.norm(centers[i] - centers[j], axis=-1)  # (f,)
            reach = (radii[i] + radii[j]) * APART_FACTOR + APART_SLACK * unit
            if np.any(d < reach):
                k = int(np.argmin(d))
                out.append(f"{_name(a)} and {_name(b)} come within {d[k]:.1f} px at frame {k} "
                           f"(need {reach:.1f}; the caption does not make them collide)")
    return out


def clip_problems(spec: ClipSpec) -> list[str]:
    """Why ``spec``'s video would not show what its caption says, in words; [] when the clip is clean."""
    unit = spec.unit or float(min(spec.width, spec.height))
    out: list[str] = []
    for o in spec.objects:
        if o.frames and o.frames[0].visible < MIN_START_VISIBLE:
            out.append(f"{_name(o)} starts {1 - o.frames[0].visible:.0%} out of view or hidden")
        out += _event_problems(spec, o)
        out += _wall_problems(spec, o, unit)
    return out + _overlap_problems(spec, unit)


def is_clean(spec: ClipSpec) -> bool:
    """True when the clip shows what its caption says (``clip_problems(spec)`` is empty)."""
    return not clip_problems(spec)
