"""Object-level metrics: count, attributes, spurious appearance/disappearance, identity
persistence, direction, speed and (conditioned generations) trajectory against the rollout."""

from __future__ import annotations

from typing import Final

import numpy as np

from kinema.eval.assign import Context, world_centers
from kinema.eval.expectations import DIRECTED_MOTIONS, ObjectExpectation
from kinema.eval.metrics.base import MetricResult, px_per_frame
from kinema.eval.segment import Detection
from kinema.eval.thresholds import Thresholds
from kinema.eval.tracker import Track
from kinema.world.simulate import PHYSICS


# ---------------------------------------------------------------- count
def _is_shard(ctx: Context, tr: Track, t: int) -> bool:
    """A small piece near an object that broke (counted with that object, not on its own)."""
    if not near_break(ctx, t, tr.center(t), tr):
        return False
    breakers = [o for o in ctx.exp.objects if o.event == "break"]
    owners = [ctx.assigned.get(o.id) for o in breakers]
    if any(own is tr for own in owners):
        return False
    ref = max((own.reference_area() for own in owners if own is not None), default=0.0)
    same = tr.color(t) in {o.color for o in breakers}
    return tr.area(t) < (0.6 if same else 0.2) * ref  # shards keep their colour, mostly


def _at_edge(ctx: Context, d: Detection) -> bool:
    x0, y0, x1, y1 = d.bbox
    return x0 <= 0 or y0 <= 0 or x1 >= ctx.result.width or y1 >= ctx.result.height


def _hidden_in_gap(ctx: Context, tr: Track, t: int) -> bool:
    """Inside a gap of ``tr``, is the track's interpolated position covered by another object?"""
    if not tr.first < t < tr.last or t in tr.obs:
        return False
    a = max(f for f in tr.obs if f < t)
    b = min(f for f in tr.obs if f > t)
    c = (np.array(tr.center(a)) * (b - t) + np.array(tr.center(b)) * (t - a)) / (b - a)
    reach = max(tr.main(a).extent, 2.0) + 2.0
    return _behind_object(ctx, t, (float(c[0]), float(c[1])), reach, tr)


def count_accuracy(ctx: Context, th: Thresholds) -> MetricResult | None:
    """Share of frames whose number of visible objects is what the caption / rollout says."""
    res, exp = ctx.result, ctx.exp
    tracks = res.long_tracks(th.min_track_frames)
    broken_colors = {o.color for o in exp.objects if o.event == "break"}
    n_ok = n_used = 0
    wrong: list[int] = []
    for t in range(res.num_frames):
        if exp.rollout is not None:
            vis = [o.frames[t].visible for o in exp.rollout.objects]
            if any(0.02 < v < 0.6 for v in vis):
                continue  # partly hidden: ambiguous
            hi = sum(v >= 0.6 for v in vis)
            lo = hi - sum(o.frames[t].state == "broken" for o in exp.rollout.objects)  # shards: see state_change
        else:
            hi = exp.count
            # objects behind the wall may be hidden; a broken object's shards are checked by state_change;
            # objects may leave through the frame edge (colliding pairs fly apart)
            lo = hi - sum(o.motion == "pass_behind" or o.event == "break" for o in exp.objects)
            lo -= sum(1 for tr in tracks if tr.last < t and _at_edge(ctx, tr.main(tr.last)))
        if ctx.result.occluder[t].any() and any(
            d.clipped and _near_occluder(ctx, t, d.center, d.extent + 3.0) for d in res.detections[t]
        ):
            continue  # partly behind the wall: a sliver may show as a separate piece
        present = [tr for tr in tracks if (t in tr.obs and not _is_shard(ctx, tr, t)) or _hidden_in_gap(ctx, tr, t)]
        cols = [tr.color(t) if t in tr.obs else tr.color(tr.last) for tr in present]
        plain = sum(1 for c in cols if c not in broken_colors)
        for c in broken_colors:  # pieces of a broken object may form several tracks
            n_c = sum(1 for o in exp.objects if o.color == c)
            plain += min(cols.count(c), n_c)
        n_used += 1
        if lo <= plain <= hi:
            n_ok += 1
        else:
            wrong.append(t)
    if n_used == 0:
        return None  # every frame ambiguous (e.g. two objects behind the wall): nothing to check
    value = n_ok / n_used
    return MetricResult("count", value, value >= th.count_frames, th.count_frames,
                        f"{len(wrong)} of {n_used} frames wrong" + (f", first {wrong[:5]}" if wrong else ""))


# ---------------------------------------------------------------- attributes
def _size_class(radius_px: float, unit: float, expected: str) -> str:
    """Nearest world size (``PHYSICS.radii``) among small/medium/large and the expected one."""
    r = radius_px / unit
    sizes = {"small", "medium", "large", expected}
    return min(sizes, key=lambda s: abs(np.log(r / PHYSICS.radii[s])))


def _track_radius(tr: Track, frames: list[int], shape: str) -> float:
    use = [t for t in frames if not tr.clipped(t) and tr.pieces(t) == 1]
    if not use:
        return float("nan")
    return float(np.median([tr.main(t).radius(shape) for t in use]))


def _pre_event_frames(ctx: Context, o: ObjectExpectation, tr: Track) -> list[int]:
    """Frames of ``tr`` before the object's state change (all frames when it has none)."""
    if not o.event:
        return tr.frames
    ev = [e.frame for e in ctx.exp.events(o.event) if o.id in e.objects]
    if ev:
        cut = ev[0]
    elif o.event == "break":
        from kinema.eval.metrics.physics import break_start

        cut = break_start(ctx, o)
    else:
        cut = tr.first + max(3, (tr.last - tr.first) // 4)
    return [t for t in tr.frames if t < cut] or tr.frames[:3]


def _observed_attributes(ctx: Context) -> list[tuple[ObjectExpectation, tuple[str | None, str, str] | None]]:
    """Each expected object with the (size, colour, shape) its track shows, or None when it was not found.

    Measured once per clip (``ctx.cache``): ``attributes``, ``color`` and ``shape`` all read it.
    """
    if "attributes" in ctx.cache:
        return ctx.cache["attributes"]  # type: ignore[return-value]
    seen: list[tuple[ObjectExpectation, tuple[str | None, str, str] | None]] = []
    for o in ctx.exp.objects:
        tr = ctx.assigned[o.id]
        if tr is None:
            seen.append((o, None))
            continue
        pre = _pre_event_frames(ctx, o, tr)
        col = tr.majority_color([t for t in pre if not tr.clipped(t)] or pre)  # slivers at the wall blur
        shape = tr.majority_shape(pre)
        rad = _track_radius(tr, pre, shape)
        size = _size_class(rad, ctx.unit, o.size) if np.isfinite(rad) else o.size
        seen.append((o, (size, col, shape)))
    ctx.cache["attributes"] = seen
    return seen


def _attribute_metric(ctx: Context, th: Thresholds, name: str, checks: tuple[int, ...]) -> MetricResult:
    """Share of expected objects found with the attributes at ``checks`` (0 size, 1 colour, 2 shape) right."""
    ok = 0
    bad: list[str] = []
    for o, got in _observed_attributes(ctx):
        want = (o.size, o.color, o.shape)
        if got is None:
            bad.append(f"{o.size} {o.color} {o.shape}: not found")
        elif all(got[i] == want[i] for i in checks):
            ok += 1
        else:
            bad.append(f"{o.size} {o.color} {o.shape} seen as {got[0]} {got[1]} {got[2]}")
    value = ok / max(ctx.exp.count, 1)
    return MetricResult(name, value, value >= th.attributes, th.attributes, "; ".join(bad))


def attribute_accuracy(ctx: Context, th: Thresholds) -> MetricResult:
    """Share of expected objects found with the right colour, shape and size."""
    return _attribute_metric(ctx, th, "attributes", (0, 1, 2))


def color_accuracy(ctx: Context, th: Thresholds) -> MetricResult:
    """Share of expected objects found with the right colour (shape and size not checked)."""
    return _attribute_metric(ctx, th, "color", (1,))


def shape_accuracy(ctx: Context, th: Thresholds) -> MetricResult:
    """Share of expected objects found with the right shape (colour and size not checked)."""
    return _attribute_metric(ctx, th, "shape", (2,))


# ---------------------------------------------------------------- spurious appearance / disappearance
def _near_occluder(ctx: Context, t: int, center: tuple[float, float], margin: float) -> bool:
    occ = ctx.result.occluder[t]
    if not occ.any():
        return False
    h, w = occ.shape
    x, y = int(round(center[0])), int(round(center[1]))
    m = int(np.ceil(margin))
    return bool(occ[max(0, y - m) : min(h, y + m + 1), max(0, x - m) : min(w, x + m + 1)].any())


def near_break(ctx: Context, t: int, center: tuple[float, float], tr: Track | None = None) -> bool:
    """Is ``center`` near an object that breaks (its shards come and go), at or after frame 2?"""
    from kinema.eval.metrics.physics import break_start

    for o in ctx.exp.objects:
        own = ctx.assigned.get(o.id)
        if o.event != "break" or own is None or t < break_start(ctx, o) - 1:
            continue
        start = break_start(ctx, o)
        if own is tr:
            return True  # the broken object's own shards come and go
        seen = [f for f in own.obs if f <= t] or own.frames
        cx, cy = own.center(max(seen))
        reach = 3.0 * PHYSICS.radii[o.size] * ctx.unit + 3.0 + 1.5 * (t - start)  # shards slide apart
        if np.hypot(center[0] - cx, center[1] - cy) <= reach:
            return True
    return False


def explained(ctx: Context, tr: Track, t: int, other_t: int, center: tuple[float, float], reach: float) -> bool:
    """Is a track's start/end/gap at frame ``t`` explained by the edge, the occluder, a merge or a break?"""
    if t in tr.obs and tr.clipped(t):
        return True
    if near_break(ctx, t, center, tr):
        return True
    if _near_occluder(ctx, min(max(t, 0), ctx.result.num_frames - 1), center, reach):
        return True
    if not 0 <= other_t < ctx.result.num_frames:
        return True
    return _behind_object(ctx, other_t, center, reach, tr)


def _behind_object(ctx: Context, t: int, center: tuple[float, float], reach: float, tr: Track) -> bool:
    """Does another detection in frame ``t`` cover ``center`` (merged with or hidden by another object)?"""
    own = {id(d) for d in tr.obs.get(t, [])}
    for d in ctx.result.detections[t]:
        x0, y0, x1, y1 = d.bbox
        if id(d) not in own and x0 - reach <= center[0] <= x1 + reach and y0 - reach <= center[1] <= y1 + reach:
            return True
    return False


def spurious_events(ctx: Context, th: Thresholds) -> MetricResult:
    """Objects that appear, vanish or blink out with no edge, occluder, merge or break to explain it."""
    res = ctx.result
    events: list[str] = []
    for tr in res.long_tracks(th.min_track_frames):
        reach = max(tr.main(tr.first).extent, 2.0) + 2.0
        if tr.first > 0 and not explained(ctx, tr, tr.first, tr.first - 1, tr.center(tr.first), reach):
            events.append(f"appears f{tr.first} at ({tr.center(tr.first)[0]:.0f},{tr.center(tr.first)[1]:.0f})")
        if tr.last < res.num_frames - 1 and not explained(ctx, tr, tr.last, tr.last + 1, tr.center(tr.last), reach):
            events.append(f"vanishes f{tr.last + 1} at ({tr.center(tr.last)[0]:.0f},{tr.center(tr.last)[1]:.0f})")
        fs = tr.frames
        for a, b in zip(fs[:-1], fs[1:]):
            if b - a > 1:
                mid = a + (b - a) // 2
                c = tuple((np.array(tr.center(a)) * (b - mid) + np.array(tr.center(b)) * (mid - a)) / (b - a))
                if not explained(ctx, tr, mid, mid, c, reach):  # type: ignore[arg-type]
                    events.append(f"blinks out f{a + 1}-{b - 1}")
    n = len(events)
    return MetricResult("spurious", float(n), n <= th.spurious_events, float(th.spurious_events), "; ".join(events[:6]))


# ---------------------------------------------------------------- identity persistence
def merged(ctx: Context, tr: Track, t: int) -> bool:
    """Does the track's detection in frame ``t`` touch another object (a contact, merged pixels)?"""
    x0, y0, x1, y1 = tr.main(t).bbox
    for other in ctx.result.tracks:
        if other is tr or t not in other.obs:
            continue
        for d in other.obs[t]:
            ox0, oy0, ox1, oy1 = d.bbox
            if ox0 <= x1 + 1 and x0 <= ox1 + 1 and oy0 <= y1 + 1 and y0 <= oy1 + 1:
                return True
    missing = [o for o in ctx.exp.objects if ctx.assigned.get(o.id) is not None and t not in ctx.assigned[o.id].obs]
    return bool(missing) and tr.area(t) > 1.5 * tr.reference_area()  # another object hidden inside this one


def identity_persistence(ctx: Context, th: Thresholds) -> MetricResult:
    """Colour, shape and size drift of each object over its track (state changes allowed for)."""
    worst = 0.0
    notes: list[str] = []
    ok = True
    for o in ctx.exp.objects:
        tr = ctx.assigned[o.id]
        if tr is None:
            continue
        use = _pre_event_frames(ctx, o, tr) if o.event == "break" else tr.frames
        cols = [tr.color(t) for t in ([t for t in use if not tr.clipped(t)] or use)]  # slivers at edges blur
        if o.event == "color_change":  # X...X then Y...Y is fine; anything else drifts
            cut = next((i for i, c in enumerate(cols) if c == o.to_color), len(cols))
            wrong = sum(c != o.color for c in cols[:cut]) + sum(c != o.to_color for c in cols[cut:])
        else:
            wrong = sum(c != o.color for c in cols)
        color_drift = wrong / len(cols)
        stable = [t for t in _pre_event_frames(ctx, o, tr) if not tr.clipped(t) and tr.pieces(t) == 1
                  and not merged(ctx, tr, t)]
        if len(stable) >= 3:
            shapes = [tr.main(t).shape for t in stable]
            shape_drift = 1.0 - max(shapes.count(s) for s in set(shapes)) / len(shapes)
            areas = np.array([tr.area(t) for t in stable], dtype=float)
            size_drift = float(np.percentile(areas, 90) / max(np.percentile(areas, 10), 1.0))
        else:
            shape_drift, size_drift = 0.0, 1.0
        bad = color_drift > th.color_drift or shape_drift > th.shape_drift or size_drift > th.size_drift
        ok &= not bad
        worst = max(worst, color_drift / th.color_drift, shape_drift / th.shape_drift,
                    (size_drift - 1) / (th.size_drift - 1))
        if bad:
            notes.append(f"{o.color} {o.shape}: colour {color_drift:.2f} shape {shape_drift:.2f} size x{size_drift:.2f}")
    return MetricResult("identity", worst, ok, 1.0, "; ".join(notes) or "value = worst drift / its threshold")


# ---------------------------------------------------------------- direction
_DIR_VEC: Final[dict[str, tuple[float, float]]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def _displacement(ctx: Context, tr: Track, upto: float = 0.5, o: ObjectExpectation | None = None) -> np.ndarray | None:
    """World displacement over the first ``upto`` of the track's frames (pan added back), before any break."""
    c = world_centers(ctx, tr)
    frames = _pre_event_frames(ctx, o, tr) if o is not None and o.event == "break" else tr.frames
    fs = [t for t in frames if tr.pieces(t) == 1]
    if len(fs) < 3:
        return None
    end = fs[max(1, int(len(fs) * upto) - 1)]
    return c[end] - c[fs[0]]


def _sightings_displacement(ctx: Context, o: ObjectExpectation) -> np.ndarray | None:
    """World displacement from the first to the last detection of ``o``'s colour and shape."""
    offset = float(np.median(ctx.pan)) if ctx.pan.size else 0.0
    seen = [(t, d.center) for t, ds in enumerate(ctx.result.detections) for d in ds
            if d.color in (o.color, o.final_color) and d.shape == o.shape]
    if len(seen) < 2:
        return None
    (t0, a), (t1, b) = seen[0], seen[-1]
    return np.array([b[0] - a[0] + offset * (t1 - t0), b[1] - a[1]])


def direction_accuracy(ctx: Context, th: Thresholds) -> MetricResult | None:
    """Objects said to move left/right/up/down (or be thrown, pass behind) go that way; still ones stay."""
    checked = ok = 0
    notes: list[str] = []
    for o in ctx.exp.objects:
        tr = ctx.assigned[o.id]
        want = o.direction if o.motion in DIRECTED_MOTIONS else ("down" if o.motion == "fall" else "")
        if o.motion != "still" and not want:
            continue
        checked += 1
        if tr is None:
            notes.append(f"{o.color} {o.shape}: not found")
            continue
        if o.motion == "pass_behind":  # its track is cut by the wall: first and last sighting of its colour
            d = _sightings_displacement(ctx, o)
        else:
            d = _displacement(ctx, tr, 1.0 if o.motion == "still" or o.event == "break" else 0.5, o)
        if d is None:
            notes.append(f"{o.color} {o.shape}: too short")
            continue
        if o.motion == "still":
            # under a pan, compressed floor texture lags the picture: allow a quarter of the pan's travel
            travel = abs(float(np.median(ctx.pan))) * ctx.result.num_frames if ctx.pan.size else 0.0
            good = float(np.hypot(*d)) <= th.still_max_frac * ctx.unit + 0.25 * travel
        else:
            v = np.array(_DIR_VEC[want])
            along = float(d @ v)
            good = along >= th.direction_min_frac * ctx.unit and along >= 0.7 * float(np.hypot(*d)) * (o.motion == "move")
        ok += good
        if not good:
            notes.append(f"{o.color} {o.shape} {o.motion} {want}: moved ({d[0]:+.1f},{d[1]:+.1f}) px")
    if checked == 0:
        return None
    value = ok / checked
    return MetricResult("direction", value, value >= 1.0, 1.0, "; ".join(notes))


# ---------------------------------------------------------------- speed
def _speeds(ctx: Context, tr: Track) -> tuple[list[int], np.ndarray]:
    """World speed (px/frame) at each frame step t -> t+1 where the track is seen whole: (steps, speeds)."""
    c = world_centers(ctx, tr)
    v = np.hypot(*np.diff(c, axis=0).T)  # (f-1,)
    ok = [t for t in range(len(v)) if t in tr.obs and t + 1 in tr.obs and tr.pieces(t) == 1 and tr.pieces(t + 1) == 1
          and not tr.clipped(t) and not tr.clipped(t + 1)]
    return ok, v[ok]


def speed_error(ctx: Context, th: Thresholds) -> MetricResult | None:
    """Mean speed against the rollout, or against the speed word ("slowly", "quickly") of the caption."""
    notes: list[str] = []
    ratios: list[float] = []
    ok = True
    for o in ctx.exp.objects:
        tr = ctx.assigned[o.id]
        if o.motion not in ("move", "bounce", "collide") or tr is None:
            continue
        steps, v = _speeds(ctx, tr)
        if o.motion == "collide":  # before the collision: afterwards speeds follow the masses
            steps, v = steps[: max(3, len(steps) // 3)], v[: max(3, v.size // 3)]
        if v.size < 3:
            continue
        got = float(np.median(v))
        if ctx.exp.rollout is not None:
            spec = ctx.exp.rollout.objects[o.id]
            pan = ctx.exp.rollout.camera_pan
            true = np.array([np.hypot(spec.frames[t + 1].center[0] - spec.frames[t].center[0] + pan,
                                      spec.frames[t + 1].center[1] - spec.frames[t].center[1])
                             for t in steps if t + 1 < len(spec.frames)])  # the rollout's world speed, same steps
            want = float(np.median(true))
            lo, hi = want / th.speed_ratio - th.speed_slack_px, want * th.speed_ratio + th.speed_slack_px
        else:
            base = PHYSICS.speeds[o.speed] * (PHYSICS.bounce_speed_factor if o.motion == "bounce" else 1.0)
            want = px_per_frame(ctx, base)
            normal = px_per_frame(ctx, PHYSICS.speeds[""] * (PHYSICS.bounce_speed_factor if o.motion == "bounce" else 1.0))
            lo, hi = want / th.speed_ratio - th.speed_slack_px, want * th.speed_ratio + th.speed_slack_px
            if o.speed in ("fast", "very_fast"):
                lo = max(lo, normal * th.speed_word_ratio)
            elif o.speed == "slow":
                hi = min(hi, normal / th.speed_word_ratio)
        ratios.append(got / max(want, 1e-6))
        if not lo <= got <= hi:
            ok = False
            notes.append(f"{o.color} {o.shape}: {got:.2f} px/frame, expected {lo:.2f}..{hi:.2f}")
    if not ratios:
        return None
    worst = max(ratios, key=lambda r: abs(np.log(max(r, 1e-6))))
    return MetricResult("speed", worst, ok, th.speed_ratio, "; ".join(notes) or "value = measured / expected speed")


# ---------------------------------------------------------------- trajectory (rollout only)
def trajectory_error(ctx: Context, th: Thresholds) -> MetricResult | None:
    """Median centre distance to the ground-truth rollout, as a share of the frame size."""
    spec = ctx.exp.rollout
    if spec is None:
        return None
    errs: list[float] = []
    notes: list[str] = []
    for o in ctx.exp.objects:
        tr = ctx.assigned[o.id]
        fr = spec.objects[o.id].frames
        vis = [t for t in range(min(len(fr), ctx.result.num_frames)) if fr[t].visible >= 0.6 and fr[t].state != "broken"]
        if tr is None:
            errs.append(1.0)
            notes.append(f"{o.color} {o.shape}: not found")
            continue
        d = []
        for t in vis:  # nearest detection of the object's colour (occlusion may split its track)
            cand = [tr.center(t)] if t in tr.obs else []
            cand += [x.center for x in ctx.result.detections[t] if x.color == fr[t].color]
            d.append(min((float(np.hypot(c[0] - fr[t].center[0], c[1] - fr[t].center[1])) for c in cand),
                         default=ctx.unit * 0.25))
        e = float(np.median(d)) / ctx.unit if d else 0.0
        errs.append(e)
        if e > th.trajectory_frac:
            notes.append(f"{o.color} {o.shape}: {e * ctx.unit:.1f} px")
    value = max(errs) if errs else 0.0
    return MetricResult("trajectory", value, value <= th.trajectory_frac, th.trajectory_frac, "; ".join(notes))
