"""Kinema World physics: every motion and event appears in the spec with plausible physics."""

from __future__ import annotations

import numpy as np
import pytest

from kinema.world import Action, Clause, ClipSpec, Scene, Thing, make_clip, simulate
from kinema.world.palette import COLORS


def one(shape: str, color: str, action: Action, size: str = "medium", count: int = 1, **kw) -> Scene:
    return Scene((Clause((Thing(shape, color, size, count),), action),), **kw)


def xs(spec: ClipSpec, i: int = 0) -> np.ndarray:
    return np.array([f.center for f in spec.objects[i].frames])  # (f, 2)


def events(spec: ClipSpec, kind: str) -> list[int]:
    return [e.frame for e in spec.events if e.kind == kind]


def test_deterministic_by_seed() -> None:
    scene = Scene((Clause((Thing("ball", "red", count=2), Thing("square", "blue")), Action("fall")),), "dark")
    s1, f1 = make_clip(scene, seed=3)
    s2, f2 = make_clip(scene, seed=3)
    s3, f3 = make_clip(scene, seed=4)
    assert s1.to_json() == s2.to_json() and np.array_equal(f1, f2)
    assert s1.to_json() != s3.to_json() and not np.array_equal(f1, f3)


@pytest.mark.parametrize("direction", ["left", "right", "up", "down"])
def test_uniform_motion_direction(direction: str) -> None:
    spec = simulate(one("square", "blue", Action("move", direction)), seed=1)
    c = xs(spec)
    d = np.diff(c, axis=0)  # (f-1, 2)
    axis, sign = {"left": (0, -1), "right": (0, 1), "up": (1, -1), "down": (1, 1)}[direction]
    assert np.all(np.sign(d[:, axis]) == sign)
    assert np.allclose(d[:, axis], d[0, axis], atol=1e-6)  # constant velocity
    assert np.allclose(d[:, 1 - axis], 0.0, atol=1e-9)
    assert spec.objects[0].motion == direction
    assert all(f.visible > 0.99 for f in spec.objects[0].frames)  # stays in frame at normal speed


def test_speed_words_order() -> None:
    mean = {}
    for speed in ("slow", "", "fast", "very_fast"):
        v = [abs(simulate(one("ball", "red", Action("move", "right", speed)), seed=s).objects[0].frames[0].velocity[0])
             for s in range(6)]
        mean[speed] = (min(v), max(v))
    assert mean["slow"][1] < mean[""][0] and mean[""][1] < mean["fast"][0] and mean["fast"][1] < mean["very_fast"][0]


def test_still_object_does_not_move() -> None:
    c = xs(simulate(one("triangle", "green", Action("still")), seed=2))
    assert np.allclose(c, c[0])


def test_gravity_parabola_and_floor_bounce() -> None:
    spec = simulate(one("ball", "purple", Action("fall")), seed=5)
    bounces = events(spec, "floor_bounce")
    assert bounces, "a falling object bounces on the floor"
    y = xs(spec)[:, 1]
    first = bounces[0]
    # before the first contact y(t) is a parabola with second difference = gravity (px / frame^2)
    second = y[2:first] - 2 * y[1:first - 1] + y[: first - 2]
    assert spec.gravity > 0 and np.allclose(second, spec.gravity, rtol=1e-4)
    coeffs = np.polyfit(np.arange(first), y[:first], 2)
    assert np.allclose(2 * coeffs[0], spec.gravity, rtol=1e-4)
    vy = [f.velocity[1] for f in spec.objects[0].frames]
    assert vy[first - 1] > 0 and vy[first] < 0  # falling, then going up after the bounce
    bottom = y + spec.objects[0].frames[0].radius
    assert np.all(bottom <= spec.floor_y + 1e-6)


def test_thrown_is_a_parabola() -> None:
    spec = simulate(one("square", "white", Action("thrown", "right")), seed=7)
    assert 0 in events(spec, "throw")
    c = xs(spec)
    stop = (events(spec, "floor_bounce") or [spec.num_frames])[0]
    assert np.all(np.diff(c[:stop, 0]) > 0)  # moves right
    second = np.diff(c[:stop, 1], 2)
    assert np.allclose(second, spec.gravity, rtol=1e-4)
    assert c[: stop, 1].min() < c[0, 1] - 5  # rises before it falls


def test_wall_bounce_reverses_velocity() -> None:
    for seed in range(4):
        spec = simulate(one("ball", "green", Action("bounce")), seed=seed)
        frames = events(spec, "wall_bounce")
        assert frames
        w = spec.walls
        assert w is not None
        for e in frames:
            before, after = spec.objects[0].frames[e - 1].velocity, spec.objects[0].frames[e].velocity
            flipped = [np.sign(a) == -np.sign(b) and abs(a) > 0 for a, b in zip(before, after)]
            assert any(flipped)
            assert np.isclose(np.hypot(*before), np.hypot(*after))  # elastic walls keep the speed
        r = spec.objects[0].frames[0].radius
        c = xs(spec)
        assert np.all(c[:, 0] - r >= w.x0 - 1e-6) and np.all(c[:, 0] + r <= w.x1 + 1e-6)


def test_collision_conserves_momentum_and_energy() -> None:
    scene = Scene((Clause((Thing("ball", "red", "large"), Thing("square", "blue", "small")), Action("collide")),))
    for seed in range(4):
        spec = simulate(scene, seed=seed)
        (e,) = [ev for ev in spec.events if ev.kind == "collision"]
        a, b = spec.objects
        assert a.mass > b.mass  # mass ~ area
        va0, vb0 = np.array(a.frames[e.frame - 1].velocity), np.array(b.frames[e.frame - 1].velocity)
        va1, vb1 = np.array(a.frames[e.frame].velocity), np.array(b.frames[e.frame].velocity)
        p0, p1 = a.mass * va0 + b.mass * vb0, a.mass * va1 + b.mass * vb1
        assert np.allclose(p0, p1, atol=1e-6 * (1 + np.abs(p0).max()))
        k0 = a.mass * va0 @ va0 + b.mass * vb0 @ vb0
        k1 = a.mass * va1 @ va1 + b.mass * vb1 @ vb1
        assert np.isclose(k0, k1, rtol=1e-6)
        assert np.sign(va0[0]) != np.sign(vb0[0])  # approaching
        assert (vb1[0] - va1[0]) * (vb0[0] - va0[0]) < 0  # separating afterwards


@pytest.mark.parametrize("direction", ["left", "right", ""])
def test_occluder_object_permanence(direction: str) -> None:
    spec = simulate(one("triangle", "green", Action("pass_behind", direction)), seed=11)
    o = spec.objects[0]
    vis = np.array([f.visible for f in o.frames])
    start, end = events(spec, "occlusion_start"), events(spec, "occlusion_end")
    assert len(start) == 1 and len(end) == 1 and start[0] < end[0]
    assert np.all(vis[start[0]:end[0]] == 0) and vis[0] > 0.99 and vis[end[0]] > 0
    c = xs(spec)
    dx = np.diff(c[:, 0])
    assert np.allclose(dx, dx[0]) and dx[0] != 0  # keeps moving while hidden
    occ = spec.occluder
    assert occ is not None
    hidden = c[start[0]:end[0], 0]
    assert np.all((hidden > occ.x0) & (hidden < occ.x1))
    side = np.sign(c[[0, -1], 0] - (occ.x0 + occ.x1) / 2)
    assert side[0] == -side[1]  # comes out the other side
    if direction:
        assert (dx[0] > 0) == (direction == "right")


def test_break_persists_and_renders_pieces() -> None:
    spec, frames = make_clip(one("ball", "purple", Action("fall", event="break")), seed=3)
    (b,) = events(spec, "break")
    states = [f.state for f in spec.objects[0].frames]
    assert set(states[:b]) == {"intact"} and set(states[b:]) == {"broken"}
    assert all(len(f.pieces) >= 3 for f in spec.objects[0].frames[b:])
    mask = np.all(frames[-1] == COLORS["purple"], axis=-1)
    assert mask.sum() > 0
    assert _components(np.any(np.abs(frames[-1].astype(int) - COLORS["purple"]).sum(-1, keepdims=True) < 60, -1)) >= 3
    assert _components(np.abs(frames[0].astype(int) - COLORS["purple"]).sum(-1) < 60) == 1


def test_bite_persists_and_removes_area() -> None:
    spec, frames = make_clip(one("square", "blue", Action("still", event="bite"), size="large"), seed=2)
    (b,) = events(spec, "bite")
    states = [f.state for f in spec.objects[0].frames]
    assert set(states[:b]) == {"intact"} and set(states[b:]) == {"bitten"}
    area = np.all(frames == COLORS["blue"], axis=-1).sum(axis=(1, 2))  # (f,)
    assert np.all(area[b:] < area[0] * 0.95) and np.all(area[:b] == area[0])
    assert np.all(area[b:] == area[-1])


def test_colour_change_persists() -> None:
    spec, frames = make_clip(one("ball", "yellow", Action("still", event="color_change", to_color="purple")), seed=1)
    (e,) = [ev for ev in spec.events if ev.kind == "color_change"]
    assert e.detail == "yellow->purple"
    cols = [f.color for f in spec.objects[0].frames]
    assert set(cols[: e.frame]) == {"yellow"} and set(cols[e.frame:]) == {"purple"}
    has = lambda i, c: np.all(frames[i] == COLORS[c], axis=-1).any()  # noqa: E731
    assert has(0, "yellow") and not has(0, "purple")
    assert has(-1, "purple") and not has(-1, "yellow") and has(e.frame, "purple")


@pytest.mark.parametrize("pan", ["left", "right"])
def test_camera_pan_shifts_screen_positions(pan: str) -> None:
    spec, frames = make_clip(one("ball", "cyan", Action("still"), camera=pan), seed=4)
    assert (spec.camera_pan < 0) == (pan == "left") and spec.camera_pan != 0
    c = xs(spec)
    assert np.allclose(np.diff(c[:, 0]), -spec.camera_pan)  # a still object drifts against the pan
    assert all(f.visible > 0.99 for f in spec.objects[0].frames)
    assert spec.floor_y is not None and spec.floor_marks
    band = frames[:, int(spec.floor_y) + 2:, :, :].astype(int)
    assert np.abs(band[0] - band[-1]).sum() > 0  # the floor marks move


def test_objects_keep_apart_unless_colliding() -> None:
    scene = Scene((Clause((Thing("ball", "red", count=2), Thing("square", "blue")), Action("fall")),
                   Clause((Thing("triangle", "white", "small"),), Action("move", "up"))))
    for seed in range(6):
        spec = simulate(scene, seed=seed)
        c = np.stack([xs(spec, i) for i in range(4)], 1)  # (f, n, 2)
        for i in range(4):
            for j in range(i + 1, 4):
                d = np.linalg.norm(c[:, i] - c[:, j], axis=-1)
                assert d.min() > spec.objects[i].frames[0].radius + spec.objects[j].frames[0].radius


def _components(mask: np.ndarray) -> int:
    """Number of 4-connected components of a boolean image."""
    seen = np.zeros_like(mask, dtype=bool)
    n = 0
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        n += 1
        stack = [(y, x)]
        seen[y, x] = True
        while stack:
            cy, cx = stack.pop()
            for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
                if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
    return n


PROMISED = {"bounce": "wall_bounce", "collide": "collision", "fall": "floor_bounce", "thrown": "throw",
            "pass_behind": "occlusion_end"}


@pytest.mark.parametrize("split", ["train", "test", "heldout", "ood"])
def test_sampled_clips_show_what_captions_promise(split: str) -> None:
    from kinema.world import sample_example

    missing, total = 0, 0
    for i in range(60):
        spec, _ = sample_example(split, 0, i)
        for o in spec.objects:
            kinds = {e.kind for e in spec.events if o.id in e.objects}
            want = {PROMISED[o.motion]} if o.motion in PROMISED else set()
            if o.event == "break":
                want = {"break"}
            elif o.event:
                want.add(o.event)
            total += 1
            missing += not want <= kinds
            if o.event:  # state changes are never missing
                assert o.event in kinds, (spec.caption, o.id)
            missing += o.frames[0].visible < 0.9  # starts in view, not behind the wall
    assert missing == 0, (missing, total)  # samples are re-drawn until clean (test_world_clean.py)
