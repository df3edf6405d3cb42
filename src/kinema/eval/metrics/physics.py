"""Physics metrics: gravity (piecewise parabola fit), bounces and collisions (timing, momentum),
object permanence through occlusion, and state changes (break, colour change, bite) that persist."""

from __future__ import annotations

import numpy as np

from kinema.eval.assign import Context, world_centers
from kinema.eval.expectations import GRAVITY_MOTIONS, ObjectExpectation
from kinema.eval.metrics.base import MetricResult, velocity, world_gravity_px
from kinema.eval.thresholds import Thresholds
from kinema.eval.tracker import Track
from kinema.world.geometry import shape_area
from kinema.world.simulate import PHYSICS


def _series(ctx: Context, tr: Track, intact_only: bool = True) -> np.ndarray:
    """World centres (f, 2) keeping only unclipped one-piece frames (NaN elsewhere)."""
    c = world_centers(ctx, tr)
    for t in tr.obs:
        if tr.clipped(t) or (intact_only and tr.pieces(t) > 1):
            c[t] = np.nan
    return c


def _segments(y: np.ndarray, min_len: int = 5) -> list[np.ndarray]:
    """Split a y series (f,) at floor contacts (vy turns from down to up) into runs of frame indices."""
    ok = ~np.isnan(y)
    idx = np.nonzero(ok)[0]
    if idx.size < min_len:
        return []
    runs: list[list[int]] = [[int(idx[0])]]
    for a, b in zip(idx[:-1], idx[1:]):
        if b != a + 1:
            runs.append([int(b)])
        else:
            runs[-1].append(int(b))
    segs: list[np.ndarray] = []
    for run in runs:
        r = np.array(run)
        v = np.diff(y[r])
        cut = [0]
        for i in range(1, len(v)):
            if v[i - 1] > 0.2 and v[i] < v[i - 1] - 0.8:  # a floor contact between r[i] and r[i+1]
                cut.append(i + 1)
        cut.append(len(r))
        for a, b in zip(cut[:-1], cut[1:]):
            s = r[a:b]
            if len(s) >= min_len and np.ptp(y[s]) > 1.5:  # resting on the floor is no parabola
                segs.append(s)
    return segs


def gravity_fit(ctx: Context, th: Thresholds) -> MetricResult | None:
    """Falling and thrown objects follow parabolas with the world's gravity; bounces never gain height."""
    g = world_gravity_px(ctx)
    accs: list[float] = []
    notes: list[str] = []
    ok = True
    for o in ctx.exp.objects:
        tr = ctx.assigned[o.id]
        if o.motion not in GRAVITY_MOTIONS:
            continue
        if tr is None:
            ok = False
            notes.append(f"{o.color} {o.shape}: not found")
            continue
        y = _series(ctx, tr)[:, 1]
        if o.event == "break":  # only the flight before it breaks
            y[break_start(ctx, o):] = np.nan
            if np.sum(~np.isnan(y)) < 5:
                continue  # broke too soon to fit a parabola; direction and state_change still check it
        segs = _segments(y)
        if not segs:
            ok = False
            notes.append(f"{o.color} {o.shape}: no free-flight segment")
            continue
        seg_acc: list[float] = []
        apex: list[float] = []
        rms_max = 0.0
        for s in segs:
            t = s.astype(float)
            coef = np.polyfit(t, y[s], 2)
            seg_acc.append(2.0 * coef[0])
            rms_max = max(rms_max, float(np.sqrt(np.mean((np.polyval(coef, t) - y[s]) ** 2))))
            apex.append(float(np.min(y[s])))
        a = float(np.average(seg_acc, weights=[len(s) for s in segs]))
        accs.append(a)
        gained = any(apex[i + 1] < apex[i] - th.bounce_gain_px for i in range(len(apex) - 1))
        bad = abs(a - g) > th.gravity_rel_error * g or rms_max > th.gravity_residual_px or gained
        if bad:
            ok = False
            notes.append(f"{o.color} {o.shape}: a={a:.3f} (g={g:.3f}) rms={rms_max:.2f}" + (" bounce gained height" if gained else ""))
    if not accs and ok:
        return None
    value = float(np.median(accs)) / g if accs else 0.0
    return MetricResult("gravity", value, ok, th.gravity_rel_error, "; ".join(notes) or "value = fitted a / g")


def _kink(x: np.ndarray, e: int, gap: int = 2, span: int = 4) -> tuple[float, float] | None:
    """Lines fitted to ``x`` (f,) before (``e-gap-span+1..e-gap``) and after (``e+gap-1..``) an event.

    Returns (time the two lines meet, velocity change). The frames right at the contact, where two
    objects may merge into one component, are left out.
    """
    tb = np.arange(e - gap - span + 1, e - gap + 1)
    ta = np.arange(e + gap - 1, e + gap - 1 + span)
    tb, ta = tb[(tb >= 0) & (tb < len(x))], ta[(ta >= 0) & (ta < len(x))]
    tb, ta = tb[~np.isnan(x[tb])], ta[~np.isnan(x[ta])]
    if len(tb) < span - 1 or len(ta) < span - 1:
        return None
    b1, a1 = np.polyfit(tb.astype(float), x[tb], 1)
    b2, a2 = np.polyfit(ta.astype(float), x[ta], 1)
    if abs(b1 - b2) < 1e-6:
        return float(e), 0.0
    return float((a2 - a1) / (b1 - b2)), float(b2 - b1)


def bounce_collision(ctx: Context, th: Thresholds) -> MetricResult | None:
    """Bounces and collisions happen (at the rollout's frames) and collisions conserve momentum."""
    exp = ctx.exp
    notes: list[str] = []
    hits = total = 0
    mom_errs: list[float] = []
    if exp.rollout is not None:
        for e in exp.rollout.events:
            if e.kind not in ("floor_bounce", "wall_bounce", "collision"):
                continue
            if e.kind == "collision" and len({exp.objects[i].color for i in e.objects}) == 1:
                # same colour: merged pixels swap identities, and an elastic swap of equal bodies looks
                # like passing through. Check the contact itself: the pair meets near the event frame.
                total += 1
                if _contact(ctx, e.objects, e.frame, th):
                    hits += 1
                else:
                    notes.append(f"collision at f{e.frame}: the {exp.objects[e.objects[0]].color} pair never meets")
                continue
            for oid in e.objects:
                tr = ctx.assigned.get(oid)
                fv = exp.rollout.objects[oid].frames
                if tr is None or fv[e.frame].visible < 0.6 or fv[e.frame].state == "broken":
                    continue
                dv_true = np.subtract(fv[min(e.frame + 1, len(fv) - 1)].velocity, fv[max(e.frame - 2, 0)].velocity)
                axis = int(abs(dv_true[1]) > abs(dv_true[0]))
                x = _series(ctx, tr)[:, axis]
                if axis == 1 and exp.objects[oid].motion in GRAVITY_MOTIONS:  # free flight becomes a line
                    x = x - 0.5 * world_gravity_px(ctx) * np.arange(len(x), dtype=float) ** 2
                fit = _kink(x, e.frame)
                if fit is None:
                    continue  # unseen around the event: other metrics report it
                t_hit, dv = fit
                total += 1
                if abs(t_hit - (e.frame - 0.5)) <= th.event_frames and dv * dv_true[axis] > 0 and abs(dv) >= 0.5 * abs(dv_true[axis]):
                    hits += 1
                else:
                    notes.append(f"{e.kind} of object {oid} at f{e.frame}: seen at f{t_hit:.1f}, dv {dv:+.2f} (rollout {dv_true[axis]:+.2f})")
            if e.kind == "collision" and len(e.objects) == 2 and len({exp.objects[i].color for i in e.objects}) == 2:
                err = _momentum_error(ctx, e.objects, e.frame, [exp.rollout.objects[i].mass for i in e.objects])
                if err is not None:
                    mom_errs.append(err)
    else:
        for o in exp.objects:
            tr = ctx.assigned[o.id]
            if o.motion not in ("bounce", "fall") or o.event == "break":
                continue
            total += 1
            if tr is None:
                notes.append(f"{o.color} {o.shape}: not found")
                continue
            c = _series(ctx, tr)
            axes = (1,) if o.motion == "fall" else (0, 1)
            flips = 0
            for ax in axes:
                v = np.diff(c[:, ax])
                sign = np.sign(np.where(np.abs(v) > 0.25, v, 0.0))
                nz = sign[sign != 0]
                flips += int(np.sum((nz[:-1] > 0) & (nz[1:] < 0))) if o.motion == "fall" else int(np.sum(nz[:-1] != nz[1:]))
            if flips >= 1:
                hits += 1
            else:
                notes.append(f"{o.color} {o.shape} {o.motion}: no bounce seen")
        colliders = [o for o in exp.objects if o.motion == "collide"]
        for a, b in zip(colliders[0::2], colliders[1::2]):
            total += 1
            ta, tb = ctx.assigned[a.id], ctx.assigned[b.id]
            if ta is None or tb is None:
                notes.append("colliding pair not found")
                continue
            ca, cb = world_centers(ctx, ta), world_centers(ctx, tb)
            dist = np.hypot(*(ca - cb).T)
            if np.all(np.isnan(dist)):
                notes.append("colliding pair never seen together")
                continue
            t = int(np.nanargmin(dist))
            reach = th.contact_factor * (PHYSICS.radii[a.size] + PHYSICS.radii[b.size]) * ctx.unit
            if dist[t] > reach:
                notes.append(f"the pair never touches (closest {dist[t]:.1f} px > {reach:.1f})")
                continue
            hits += 1
            masses = [shape_area(a.shape, PHYSICS.radii[a.size]), shape_area(b.shape, PHYSICS.radii[b.size])]
            err = _momentum_error(ctx, [a.id, b.id], t, masses)
            if err is not None:
                mom_errs.append(err)
    if total == 0 and not mom_errs:
        return None
    recall = hits / max(total, 1)
    mom_ok = all(e <= th.momentum_rel_error for e in mom_errs)
    if not mom_ok:
        notes.append("momentum error " + ", ".join(f"{e:.2f}" for e in mom_errs))
    passed = recall >= th.bounce_recall and mom_ok
    return MetricResult("bounce", recall, passed, th.bounce_recall, "; ".join(notes) or "value = share of bounces/collisions seen")


def _contact(ctx: Context, ids: list[int], frame: int, th: Thresholds) -> bool:
    """Do the objects' colour blobs touch (or merge) within ``event_frames`` of ``frame``?"""
    objs = [ctx.exp.objects[i] for i in ids]
    reach = th.contact_factor * sum(PHYSICS.radii.get(o.size, 0.1) for o in objs) * ctx.unit
    color = objs[0].color
    for t in range(max(0, frame - th.event_frames - 1), min(ctx.result.num_frames, frame + th.event_frames + 1)):
        cs = [d.center for d in ctx.result.detections[t] if d.color == color]
        if len(cs) == 1:
            return True  # one merged blob
        if any(np.hypot(a[0] - b[0], a[1] - b[1]) <= reach for i, a in enumerate(cs) for b in cs[i + 1 :]):
            return True
    return False


def _momentum_error(ctx: Context, ids: list[int], frame: int, masses: list[float]) -> float | None:
    """|p_after - p_before| / (sum of |p_i| before) for two objects around ``frame``."""
    before, after, scale = np.zeros(2), np.zeros(2), 0.0
    for oid, m in zip(ids, masses):
        tr = ctx.assigned.get(oid)
        if tr is None:
            return None
        c = _series(ctx, tr)
        vb, va = velocity(c, frame - 2, True, 3), velocity(c, frame + 1, False, 3)  # contact frames left out
        if vb is None or va is None:
            return None
        before += m * vb
        after += m * va
        scale += m * float(np.hypot(*vb))
    return float(np.hypot(*(after - before)) / max(scale, 1e-6))


def _color_series(ctx: Context, o: ObjectExpectation) -> list[list[tuple[float, float]]]:
    """Per frame, centres of detections in the object's colours not taken by another expected object."""
    others = {id(tr.obs.get(t, [None])[0]) for oid, tr in ctx.assigned.items() if tr is not None and oid != o.id
              for t in tr.obs}
    out: list[list[tuple[float, float]]] = []
    for dets in ctx.result.detections:
        out.append([d.center for d in dets if d.color in (o.color, o.final_color) and id(d) not in others])
    return out


def object_permanence(ctx: Context, th: Thresholds) -> MetricResult | None:
    """An object passing behind the occluder comes out the other side, on time, and stays."""
    movers = [o for o in ctx.exp.objects if o.motion == "pass_behind"]
    if not movers:
        return None
    occ_cols = np.nonzero(ctx.result.occluder.any(axis=(0, 1)))[0]
    ok = 0
    notes: list[str] = []
    f = ctx.result.num_frames
    for o in movers:
        series = _color_series(ctx, o)
        seen = [bool(s) for s in series]
        if occ_cols.size == 0:
            notes.append("no occluder visible")
            continue
        # the occluder's centre in each frame (it moves with a camera pan)
        mid = np.array([float(np.nonzero(ctx.result.occluder[t].any(0))[0].mean()) if ctx.result.occluder[t].any()
                        else float(occ_cols.mean()) for t in range(f)])
        side = [None if not s else float(np.sign(np.mean([c[0] for c in s]) - mid[t])) for t, s in enumerate(series)]
        first = next((t for t in range(f) if side[t] is not None), None)
        if first is None:
            notes.append(f"{o.color} {o.shape}: never seen")
            continue
        start_side = side[first]
        out = next((t for t in range(first, f) if side[t] is not None and side[t] == -start_side
                    and t > 0 and not seen[t - 1]), None)
        if out is None:
            notes.append(f"{o.color} {o.shape}: never reappears on the other side")
            continue
        stays = np.mean(seen[out:]) >= th.state_persistence
        good = stays
        if ctx.exp.rollout is not None:
            fr = ctx.exp.rollout.objects[o.id].frames
            ends = [e.frame for e in ctx.exp.events("occlusion_end") if o.id in e.objects]
            # a sliver at the wall's edge may be too thin to see: on time up to half visible
            halves = [next((t for t in range(e, f) if fr[t].visible >= 0.5), e) for e in ends]
            truth = fr[out].center
            dist = min(float(np.hypot(c[0] - truth[0], c[1] - truth[1])) for c in series[out])
            on_time = not ends or ends[0] - th.event_frames - 1 <= out <= halves[0] + th.event_frames + 1
            good = good and on_time and dist <= th.permanence_frac * ctx.unit + ctx.unit * 0.05
            if not good:
                notes.append(f"{o.color} {o.shape}: reappears f{out} (rollout f{ends[0] if ends else '?'}), {dist:.1f} px off")
        elif not stays:
            notes.append(f"{o.color} {o.shape}: reappears f{out} but does not stay")
        ok += good
    value = ok / len(movers)
    return MetricResult("permanence", value, value >= 1.0, 1.0, "; ".join(notes))


def _intact_frames(ctx: Context, o: ObjectExpectation, mass_tol: float = 0.15) -> np.ndarray:
    """(f,) bool: every object of ``o``'s colour and shape looks whole (shape and area as in frame 0).

    Shards of a broken object show as several pieces, as a pile of another shape or area, or not at all.
    """
    n = sum(1 for x in ctx.exp.objects if (x.color, x.shape, x.size) == (o.color, o.shape, o.size))
    dets = ctx.result.detections
    own = ctx.assigned.get(o.id)
    if own is not None:
        m0 = own.reference_area()
    else:
        ref = [d.mass for t in range(min(3, len(dets))) for d in dets[t] if d.color == o.color and d.shape == o.shape]
        if not ref:
            return np.zeros(len(dets), dtype=bool)
        m0 = float(np.median(ref))
    whole = [sum(1 for d in ds if d.color == o.color and d.shape == o.shape and abs(d.mass / m0 - 1) <= mass_tol)
             for ds in dets]
    return np.array([w >= n for w in whole])


def break_start(ctx: Context, o: ObjectExpectation) -> int:
    """First frame of the break: the rollout's, else the first of two frames that do not look whole."""
    key = f"break_start/{o.id}"
    if key not in ctx.cache:
        e = _change_frame(ctx, o)
        if e is None:
            broken = ~_intact_frames(ctx, o)
            f = len(broken)
            e = next((t for t in range(1, f) if broken[t] and broken[min(t + 1, f - 1)]), f)
        ctx.cache[key] = e
    return int(ctx.cache[key])  # type: ignore[call-overload]


def _change_frame(ctx: Context, o: ObjectExpectation) -> int | None:
    ev = [e.frame for e in ctx.exp.events(o.event) if o.id in e.objects]
    return ev[0] if ev else None


def state_change(ctx: Context, th: Thresholds) -> MetricResult | None:
    """Breaks, colour changes and bites happen (at the rollout's frame) and persist to the end."""
    changers = [o for o in ctx.exp.objects if o.event]
    if not changers:
        return None
    f = ctx.result.num_frames
    ok = 0
    notes: list[str] = []
    for o in changers:
        e = _change_frame(ctx, o)
        tr = ctx.assigned[o.id]
        if o.event == "break":
            intact = _intact_frames(ctx, o)
            broken = ~intact
            start = break_start(ctx, o)
            if start >= f - 2:
                notes.append(f"{o.color} {o.shape}: never breaks")
                continue
            first = min(break_start(ctx, x) for x in ctx.exp.objects
                        if x.event == "break" and x.color == o.color and x.shape == o.shape)
            intact_before = bool(intact[0]) and float(np.mean(intact[: max(first, 1)])) >= th.state_persistence
            after = broken[min(start + 2, f - 1):]
            persists = bool(after.size) and float(np.mean(after)) >= th.state_persistence
            good = intact_before and persists
            if not good:
                notes.append(f"{o.color} {o.shape}: break at f{start}, intact before {intact_before}, broken after {np.mean(after):.2f}")
        elif o.event == "color_change":
            if tr is None:
                notes.append(f"{o.color} {o.shape}: not found")
                continue
            cols = [(t, tr.color(t)) for t in tr.frames]
            first_new = next((t for t, c in cols if c == o.to_color), None)
            start = e if e is not None else first_new
            if start is None:
                notes.append(f"{o.color} {o.shape}: never turns {o.to_color}")
                continue
            before = [c == o.color for t, c in cols if t < start]
            after = [c == o.to_color for t, c in cols if t >= start + 1]
            good = bool(before) and np.mean(before) >= th.state_persistence and bool(after) and np.mean(after) >= th.state_persistence
            if not good:
                notes.append(f"{o.color}->{o.to_color} {o.shape}: before {np.mean(before) if before else 0:.2f}, after {np.mean(after) if after else 0:.2f}")
        else:  # bite: the area drops and stays down
            if tr is None:
                notes.append(f"{o.color} {o.shape}: not found")
                continue
            fs = [t for t in tr.frames if not tr.clipped(t)] or tr.frames
            area = np.array([tr.area(t) for t in fs])
            if len(fs) < 6:
                notes.append(f"{o.color} {o.shape}: too short")
                continue
            if e is None:  # the split that best separates a larger "before" from a smaller "after"
                cands = range(2, len(fs) - 2)  # two-level fit with the least squared error
                k = min(cands, key=lambda i: float(((area[:i] - area[:i].mean()) ** 2).sum() + ((area[i:] - area[i:].mean()) ** 2).sum()))
            else:
                k = next((i for i, t in enumerate(fs) if t >= e), len(fs))
            if k <= 0 or k >= len(fs) - 1:
                notes.append(f"{o.color} {o.shape}: bite frame outside the clip")
                continue
            before = float(np.median(area[:k]))
            after = area[min(k + 1, len(fs) - 1):]
            ratio = float(np.median(after)) / max(before, 1e-6)
            persists = float(np.mean(after <= before * (1 + th.bite_area_ratio) / 2)) >= th.state_persistence
            good = ratio <= th.bite_area_ratio and persists
            if not good:
                notes.append(f"{o.color} {o.shape}: area after/before {ratio:.2f}, persists {persists}")
        ok += good
    value = ok / len(changers)
    return MetricResult("state_change", value, value >= 1.0, 1.0, "; ".join(notes))
