"""Physics of Kinema World: a ``Scene`` plus a seed -> ``ClipSpec`` (ground truth per frame).

World coordinates are normalised: one unit is ``min(width, height)`` pixels, so the world is
``(width / unit) x (height / unit)`` units, ``x`` right, ``y`` down. Physics runs in seconds with
fixed sub-steps (at most ``PHYSICS.max_dt``) and is sampled at ``t_i = i / fps``; the same scene
and seed give the same motion at any size and frame rate (up to sub-step rounding).

Layout (positions, exact speeds, event times) is drawn from the seed and re-drawn until the clip
is clean (``clean.clip_problems``): non-colliding objects keep apart, only the objects that pass
behind the wall go near it, every object starts fully in frame, each caption's promised event
happens inside the clip and nothing breaks before it was seen whole. When no draw is clean the
best one is kept and ``ClipSpec.problems`` says what is wrong with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kinema.errors import InvalidInputError
from kinema.world.clean import clip_problems, is_clean  # noqa: F401  (is_clean re-exported)
from kinema.world.geometry import box_size, sample_grid, sample_mask, shape_area, shape_extent
from kinema.world.scene import Action, Scene, Thing, validate_scene
from kinema.world.spec import ClipSpec, Event, ObjectFrame, ObjectTrack, Rect


@dataclass(frozen=True)
class WorldPhysics:
    """Physical constants of the world, in world units and seconds."""

    gravity: float = 2.0  # units / s^2
    floor_restitution: float = 0.6
    piece_restitution: float = 0.3
    rest_speed: float = 0.15  # units / s: a slower floor contact does not bounce
    floor_friction: float = 0.75  # horizontal speed kept by a piece at each floor bounce
    slide_friction: float = 0.15  # units / s^2 deceleration of a piece sliding on the floor
    floor_height: float = 0.12  # the floor band at the bottom of the frame
    wall_thickness: float = 0.04
    radii: dict[str, float] = field(
        default_factory=lambda: {"tiny": 0.045, "small": 0.06, "medium": 0.085, "large": 0.12, "huge": 0.18}
    )
    speeds: dict[str, float] = field(
        default_factory=lambda: {"slow": 0.12, "": 0.22, "fast": 0.38, "very_fast": 0.9}
    )
    speed_jitter: float = 0.1  # speeds vary by +-10% around their word's value
    bounce_speed_factor: float = 1.5  # "bounces" moves faster than "moves"
    camera_speed: tuple[float, float] = (0.08, 0.14)  # units / s
    max_dt: float = 1.0 / 120.0
    layout_attempts: int = 40


PHYSICS = WorldPhysics()
_SS_VIS = 4  # supersampling for the visibility integral


@dataclass
class _Piece:
    x: float
    y: float
    vx: float
    vy: float
    r: float
    flip: bool


@dataclass
class _Body:
    id: int
    thing: Thing
    action: Action
    r: float
    x: float = 0.0
    y: float = 0.0
    vx: float = 0.0
    vy: float = 0.0
    gravity: bool = False
    breaks: bool = False
    broken_at: float | None = None
    pieces: list[_Piece] = field(default_factory=list)
    event_frame: int | None = None  # bite / colour change frame
    notch: tuple[float, float, float] | None = None  # (dx, dy, r) units, relative
    partner: int | None = None  # collide partner id

    @property
    def mass(self) -> float:
        return shape_area(self.thing.shape, self.r)

    def extent(self) -> tuple[float, float, float, float]:
        return shape_extent(self.thing.shape, self.r)


@dataclass
class _Layout:
    W: float
    H: float
    T: float
    floor: float | None  # y of the floor top
    walls: tuple[float, float, float, float] | None  # inner box x0, y0, x1, y1
    occluder: tuple[float, float, float, float] | None
    cam_v: float

    def bounds(self) -> tuple[float, float, float, float]:
        """The box objects live in: frame minus walls and floor."""
        x0, y0, x1, y1 = self.walls if self.walls else (0.0, 0.0, self.W, self.H)
        if self.floor is not None:
            y1 = min(y1, self.floor)
        return x0, y0, x1, y1


def _frame_of(t: float, fps: float) -> int:
    """The first frame that shows the state after time ``t``."""
    return int(math.ceil(t * fps - 1e-6))


def _speed(action: Action, rng: np.random.Generator) -> float:
    base = PHYSICS.speeds[action.speed]
    return base * float(rng.uniform(1 - PHYSICS.speed_jitter, 1 + PHYSICS.speed_jitter))


def _make_layout(scene: Scene, W: float, H: float, T: float, bodies: list[_Body], rng: np.random.Generator) -> _Layout:
    floor = H - PHYSICS.floor_height if scene.has_floor else None
    walls = None
    if scene.has_walls:
        t = PHYSICS.wall_thickness
        walls = (t, t, W - t, (floor if floor is not None else H - t))
    occ = None
    if scene.has_occluder:
        passers = [b for b in bodies if b.action.motion == "pass_behind"]
        half = max(max(b.extent()[:2]) for b in passers) + 0.03
        cx = float(rng.uniform(0.45, 0.55)) * W
        bottom = floor if floor is not None else H * 0.9
        occ = (cx - half, 0.1 * H, cx + half, bottom)
    cam_v = 0.0
    if scene.camera:
        cam_v = float(rng.uniform(*PHYSICS.camera_speed)) * (1.0 if scene.camera == "right" else -1.0)
    return _Layout(W, H, T, floor, walls, occ, cam_v)


def _place(b: _Body, lay: _Layout, rng: np.random.Generator, fps: float, num_frames: int) -> None:
    """Initial conditions of one body for its action."""
    a, T = b.action, lay.T
    left, right, top, bottom = b.extent()
    bx0, by0, bx1, by1 = lay.bounds()
    pad = 0.01
    # x range in view for the whole clip (the camera moves by cam_v * T)
    shift = lay.cam_v * T
    vx0, vx1 = bx0 + max(0.0, shift), bx1 + min(0.0, shift)
    xlo, xhi = vx0 + left + pad, vx1 - right - pad
    ylo, yhi = by0 + top + pad, by1 - bottom - pad
    spans = [(xlo, max(xlo, xhi))]
    if lay.occluder is not None and a.motion != "pass_behind":  # keep out of the wall's column
        ox0, _, ox1, _ = lay.occluder
        spans = [sp for sp in ((xlo, ox0 - right - 0.03), (ox1 + left + 0.03, xhi)) if sp[1] > sp[0]] or spans

    def ux() -> float:
        lengths = np.array([hi - lo for lo, hi in spans]) + 1e-9
        lo, hi = spans[int(rng.choice(len(spans), p=lengths / lengths.sum()))]
        return float(rng.uniform(lo, hi))

    uy = lambda: float(rng.uniform(ylo, max(ylo, yhi)))  # noqa: E731
    m = a.motion
    if m == "still":
        b.x, b.y = ux(), uy()
    elif m == "move":
        s = _speed(a, rng)
        horizontal = a.direction in ("left", "right")
        sign = 1.0 if a.direction in ("right", "down") else -1.0
        lo, hi = (xlo, xhi) if horizontal else (ylo, yhi)
        length = s * T
        start = float(rng.uniform(lo, hi - length)) if hi - lo > length else lo
        start = start if sign > 0 else lo + hi - start
        if horizontal:
            b.x, b.y, b.vx = start, uy(), sign * s
        else:
            b.x, b.y, b.vy = ux(), start, sign * s
    elif m == "bounce":
        s = _speed(a, rng) * PHYSICS.bounce_speed_factor
        ang = float(rng.uniform(25, 65)) * math.pi / 180 + (math.pi / 2) * int(rng.integers(0, 4))
        b.x, b.y, b.vx, b.vy = ux(), uy(), s * math.cos(ang), s * math.sin(ang)
    elif m in ("fall",):
        b.gravity, b.breaks = True, a.event == "break"
        t_hit = float(rng.uniform(0.3, 0.55)) * T
        floor = lay.floor if lay.floor is not None else lay.H
        y0 = floor - bottom - 0.5 * PHYSICS.gravity * t_hit * t_hit
        b.x, b.y = ux(), max(ylo, y0)
    elif m == "thrown":
        b.gravity = True
        sign = 1.0 if a.direction == "right" else -1.0
        span = xhi - xlo
        start = float(rng.uniform(0.0, 0.35))  # of the span: room for a group thrown side by side
        b.x = xlo + start * span
        b.x = b.x if sign > 0 else xlo + xhi - b.x
        b.y = yhi - float(rng.uniform(0.0, 0.2))
        b.vx = sign * float(rng.uniform(0.5, max(0.5, min(0.75, 0.95 - start)))) * span / T  # lands in view
        b.vy = -float(rng.uniform(1.1, 1.4))
    elif m == "pass_behind":
        assert lay.occluder is not None
        ox0, oy0, ox1, oy1 = lay.occluder
        sign = 1.0 if a.direction == "right" else -1.0 if a.direction == "left" else float(rng.choice([-1.0, 1.0]))
        b.y = float(rng.uniform(oy0 + top + 0.02, max(oy0 + top + 0.02, oy1 - bottom - 0.02)))
        # start fully visible on one side, end fully visible on the other, constant speed
        near = float(rng.uniform(0.0, 0.4))
        a_lo, a_hi = xlo, ox0 - right - 0.02  # left of the wall
        b_lo, b_hi = ox1 + left + 0.02, xhi  # right of the wall
        x_left = a_hi - near * max(0.0, a_hi - a_lo)
        x_right = b_lo + float(rng.uniform(0.0, 0.4)) * max(0.0, b_hi - b_lo)
        b.x = x_left if sign > 0 else x_right
        b.vx = (x_right - x_left) / T * sign
    elif m == "collide":
        pass  # placed in pairs by _place_collision
    else:
        raise InvalidInputError(f"unknown motion {m!r}")
    if a.event in ("bite", "color_change"):
        b.event_frame = int(rng.integers(max(1, int(0.3 * num_frames)), max(2, int(0.6 * num_frames) + 1)))
    if a.event == "bite":
        r = b.r
        if b.thing.shape == "ball":
            ang = float(rng.choice([-45.0, -135.0, 0.0, 180.0])) * math.pi / 180
            b.notch = (r * math.cos(ang), r * math.sin(ang), 0.5 * r)
        elif b.thing.shape == "square":
            sx, sy = float(rng.choice([-1.0, 1.0])), float(rng.choice([-1.0, 1.0]))
            b.notch = (0.85 * r * sx, 0.85 * r * sy, 0.6 * r)
        else:
            big = 1.25 * r
            ang = float(rng.choice([-90.0, 30.0, 150.0])) * math.pi / 180
            b.notch = (0.8 * big * math.cos(ang), 0.8 * big * math.sin(ang), 0.6 * r)


def _place_collision(a: _Body, b: _Body, lay: _Layout, rng: np.random.Generator) -> None:
    """Two bodies on one horizontal line moving toward each other, meeting at ~0.3-0.5 T."""
    if rng.random() < 0.5:
        a, b = b, a  # a is on the left
    bx0, by0, bx1, by1 = lay.bounds()
    rmax = max(a.r, b.r)
    y = float(rng.uniform(by0 + 1.3 * rmax + 0.01, by1 - 1.3 * rmax - 0.01))
    va, vb = _speed(a.action, rng), _speed(b.action, rng)
    tc = float(rng.uniform(0.3, 0.5)) * lay.T
    xc = float(rng.uniform(0.4, 0.6)) * (bx1 - bx0) + bx0
    xa, xb = xc - a.r - va * tc, xc + b.r + vb * tc
    if xa < bx0 + a.r or xb > bx1 - b.r:  # too fast for this frame: start at the edges
        xa, xb = bx0 + a.r + 0.01, bx1 - b.r - 0.01
    a.x, a.y, a.vx = xa, y, va
    b.x, b.y, b.vx = xb, y, -vb
    a.partner, b.partner = b.id, a.id


def _break(b: _Body, t: float, rng: np.random.Generator) -> None:
    b.broken_at = t
    rp = 0.55 * b.r
    offs = [(-0.6, -0.2), (-0.2, 0.3), (0.2, -0.3), (0.6, 0.2)]
    spread = float(rng.uniform(0.15, 0.25))  # units / s of the outer pieces; inner ones fly at 0.4x
    for i, (ox, oy) in enumerate(offs):
        b.pieces.append(
            _Piece(
                x=b.x + ox * b.r, y=b.y + oy * b.r,
                vx=spread * (ox / 0.6 if abs(ox) > 0.5 else 0.4 * np.sign(ox)), vy=-float(rng.uniform(0.25, 0.4)),
                r=rp, flip=bool(i % 2),
            )
        )


def _step(bodies: list[_Body], lay: _Layout, t: float, dt: float, rng: np.random.Generator,
          events: list[tuple[str, float, list[int]]]) -> None:
    g = PHYSICS.gravity
    for b in bodies:
        if b.broken_at is not None:
            for p in b.pieces:
                p.x += p.vx * dt
                p.y += p.vy * dt + 0.5 * g * dt * dt
                p.vy += g * dt
                bottom = shape_extent("triangle", p.r, p.flip)[3]
                if lay.floor is not None and p.y + bottom > lay.floor:
                    p.y = lay.floor - bottom
                    if p.vy > PHYSICS.rest_speed:  # a bounce loses speed
                        p.vy = -PHYSICS.piece_restitution * p.vy
                        p.vx *= PHYSICS.floor_friction
                    else:  # sliding: constant friction deceleration
                        p.vy = 0.0
                        p.vx = math.copysign(max(0.0, abs(p.vx) - PHYSICS.slide_friction * dt), p.vx)
            continue
        ay = g if b.gravity else 0.0
        b.x += b.vx * dt
        b.y += b.vy * dt + 0.5 * ay * dt * dt
        b.vy += ay * dt
        left, right, top, bottom = b.extent()
        if lay.floor is not None and b.y + bottom > lay.floor and b.vy > 0:
            b.y = lay.floor - bottom - (b.y + bottom - lay.floor) * PHYSICS.floor_restitution
            if b.breaks:
                _break(b, t + dt, rng)
                events.append(("break", t + dt, [b.id]))
                continue
            if b.vy < PHYSICS.rest_speed:  # too slow to bounce: it rests on the floor
                b.y, b.vy = lay.floor - bottom, 0.0
            else:
                b.vy = -PHYSICS.floor_restitution * b.vy
                events.append(("floor_bounce", t + dt, [b.id]))
        if lay.walls is not None:
            x0, y0, x1, y1 = lay.walls
            hit = False
            if b.x - left < x0 and b.vx < 0:
                b.x, b.vx, hit = 2 * (x0 + left) - b.x, -b.vx, True
            if b.x + right > x1 and b.vx > 0:
                b.x, b.vx, hit = 2 * (x1 - right) - b.x, -b.vx, True
            if b.y - top < y0 and b.vy < 0:
                b.y, b.vy, hit = 2 * (y0 + top) - b.y, -b.vy, True
            if lay.floor is None and b.y + bottom > y1 and b.vy > 0:
                b.y, b.vy, hit = 2 * (y1 - bottom) - b.y, -b.vy, True
            if hit:
                events.append(("wall_bounce", t + dt, [b.id]))
    for b in bodies:  # elastic collisions of the caption's colliding pairs (discs, masses ~ area)
        if b.partner is None or b.partner < b.id or b.broken_at is not None:
            continue
        o = next(x for x in bodies if x.id == b.partner)
        dx, dy = o.x - b.x, o.y - b.y
        dist = math.hypot(dx, dy)
        if dist >= b.r + o.r or dist == 0:
            continue
        nx, ny = dx / dist, dy / dist
        rel = (b.vx - o.vx) * nx + (b.vy - o.vy) * ny
        if rel <= 0:
            continue
        m1, m2 = b.mass, o.mass
        j = 2 * rel / (m1 + m2)
        b.vx -= j * m2 * nx
        b.vy -= j * m2 * ny
        o.vx += j * m1 * nx
        o.vy += j * m1 * ny
        events.append(("collision", t + dt, [b.id, o.id]))


def _start_gap(a: _Body, b: _Body) -> float:
    """Clearance between two start positions along the axis their paths keep apart (< 0: too close)."""
    vert = lambda x: x.action.motion == "fall" or x.action.direction in ("up", "down")  # noqa: E731
    horiz = lambda x: x.action.direction in ("left", "right") and x.action.motion in ("move", "pass_behind")  # noqa: E731
    if vert(a) and vert(b):
        d = abs(a.x - b.x)
    elif horiz(a) and horiz(b):
        d = abs(a.y - b.y)
    else:
        d = math.hypot(a.x - b.x, a.y - b.y)
    return d - ((a.r + b.r) * 1.3 + 0.03)


def _ballistic(y0: float, v0: float, ts: np.ndarray, y_floor: float, stop: bool) -> np.ndarray:
    """Heights (t,) of a body under gravity bouncing on a floor at ``y_floor`` (rests when slow; ``stop``: at once)."""
    g, e = PHYSICS.gravity, PHYSICS.floor_restitution
    y = np.full(ts.shape, y_floor)
    done = np.zeros(ts.shape, dtype=bool)
    t0, yy, v = 0.0, y0, v0
    for _ in range(16):  # a few floor bounces at most inside a clip
        s = (-v + math.sqrt(max(v * v + 2 * g * (y_floor - yy), 0.0))) / g  # time to the next floor contact
        seg = ~done & (ts <= t0 + s)
        dt = ts[seg] - t0
        y[seg] = yy + v * dt + 0.5 * g * dt * dt
        done |= seg
        t0, v_hit = t0 + s, v + g * s
        if stop or e * v_hit < PHYSICS.rest_speed or done.all():
            break
        yy, v = y_floor, -e * v_hit
    return y


def _fold(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Positions (t,) of a point moving freely in [lo, hi] with elastic ends (reflections)."""
    span = hi - lo
    if span <= 0:
        return np.full(u.shape, lo)
    m = np.mod(u - lo, 2 * span)
    return lo + np.where(m < span, m, 2 * span - m)


def _free_path(b: _Body, lay: _Layout, ts: np.ndarray) -> np.ndarray:
    """Approximate centre path (t, 2) of a body on its own: walls, gravity and floor, no other bodies."""
    left, right, top, bottom = b.extent()
    x = b.x + b.vx * ts  # (t,)
    if b.gravity:
        floor = (lay.floor if lay.floor is not None else math.inf) - bottom
        y = _ballistic(b.y, b.vy, ts, floor, stop=b.breaks)
    else:
        y = b.y + b.vy * ts
    if lay.walls is not None and b.action.motion == "bounce":
        x0, y0, x1, y1 = lay.walls
        x, y = _fold(x, x0 + left, x1 - right), _fold(y, y0 + top, y1 - bottom)
    return np.stack([x, y], axis=-1)  # (t, 2)


def _path_gap(a: _Body, b: _Body, lay: _Layout, ts: np.ndarray) -> float:
    """Smallest clearance over the clip between two bodies' free paths (< 0: they would come too close)."""
    d = np.linalg.norm(_free_path(a, lay, ts) - _free_path(b, lay, ts), axis=-1)  # (t,)
    return float(d.min()) - ((a.r + b.r) * 1.25 + 0.03)


def _bodies(scene: Scene) -> list[_Body]:
    out: list[_Body] = []
    for thing, action in scene.things():
        for _ in range(thing.count):
            out.append(_Body(id=len(out), thing=thing, action=action, r=PHYSICS.radii[thing.size]))
    return out


@dataclass
class _Run:
    bodies: list[_Body]
    layout: _Layout
    states: list[list[tuple]]  # per frame per body
    events: list[tuple[str, float, list[int]]]


def _run(scene: Scene, W: float, H: float, fps: float, num_frames: int, rng: np.random.Generator) -> _Run:
    T = (num_frames - 1) / fps
    bodies = _bodies(scene)
    lay = _make_layout(scene, W, H, T, bodies, rng)
    placed: list[_Body] = []
    ts = np.arange(num_frames) / fps  # (f,) frame times
    for b in bodies:  # keep each path away from the ones placed before it (best of a few draws)
        best: tuple[float, tuple[float, float, float, float]] | None = None
        for _ in range(30):
            _place(b, lay, rng, fps, num_frames)
            gap = min((min(_start_gap(b, o), _path_gap(b, o, lay, ts)) for o in placed), default=1.0)
            if best is None or gap > best[0]:
                best = (gap, (b.x, b.y, b.vx, b.vy))
            if gap > 0:
                break
        b.x, b.y, b.vx, b.vy = best[1]  # type: ignore[index]
        if b.action.motion != "collide":
            placed.append(b)
    colliding = [b for b in bodies if b.action.motion == "collide"]
    for i in range(0, len(colliding) - 1, 2):
        _place_collision(colliding[i], colliding[i + 1], lay, rng)
    n_sub = max(1, math.ceil((1.0 / fps) / PHYSICS.max_dt))
    dt = 1.0 / fps / n_sub
    states: list[list[tuple]] = []
    events: list[tuple[str, float, list[int]]] = []
    for i in range(num_frames):
        states.append([
            (b.x, b.y, b.vx, b.vy, b.broken_at is not None, [(p.x, p.y, p.vx, p.vy, p.r, p.flip) for p in b.pieces])
            for b in bodies
        ])
        if i < num_frames - 1:
            for k in range(n_sub):
                _step(bodies, lay, i / fps + k * dt, dt, rng, events)
    return _Run(bodies, lay, states, events)


def simulate(
    scene: Scene, width: int = 64, height: int = 64, fps: float = 16.0, num_frames: int = 33,
    seed: int = 0, caption: str = "",
) -> ClipSpec:
    """Simulate ``scene`` and return its ground truth at this render size and frame rate.

    Layouts are drawn from ``seed`` until one is clean (``clip_problems``), at most
    ``PHYSICS.layout_attempts`` times; otherwise the draw with the fewest problems is returned and
    ``spec.problems`` names them (best effort: the split samplers re-draw the scene instead).
    """
    validate_scene(scene)
    if width < 16 or height < 16 or num_frames < 1 or fps <= 0:
        raise InvalidInputError(
            f"size {width}x{height}, {num_frames} frames at {fps} fps: need width, height >= 16, frames >= 1, fps > 0"
        )
    unit = float(min(width, height))
    W, H = width / unit, height / unit
    rng = np.random.default_rng(seed)
    best: ClipSpec | None = None
    for _ in range(PHYSICS.layout_attempts):
        run = _run(scene, W, H, fps, num_frames, rng)
        spec = _to_spec(run, scene, width, height, fps, num_frames, seed, caption)
        spec.problems = clip_problems(spec)
        if best is None or len(spec.problems) < len(best.problems):
            best = spec
        if not spec.problems:
            break
    assert best is not None
    return best


def _to_spec(run: _Run, scene: Scene, width: int, height: int, fps: float, num_frames: int,
             seed: int, caption: str) -> ClipSpec:
    unit = float(min(width, height))
    lay = run.layout
    pan = lay.cam_v * unit / fps  # pixels per frame
    px = lambda x, i: (x * unit - pan * i)  # noqa: E731  world x -> screen x in frame i
    tracks: list[ObjectTrack] = []
    for b in run.bodies:
        th, a = b.thing, b.action
        motion = a.direction if a.motion == "move" else a.motion
        frames: list[ObjectFrame] = []
        for i in range(num_frames):
            x, y, vx, vy, broken, pieces = run.states[i][b.id]
            color = a.to_color if (a.event == "color_change" and b.event_frame is not None and i >= b.event_frame) else th.color
            state = "intact"
            notch = None
            pcs: list[tuple[float, float, float]] = []
            if broken:
                state = "broken"
                pcs = [(px(p[0], i), p[1] * unit, p[4] * unit) for p in pieces]
                x = float(np.mean([p[0] for p in pieces]))
                y = float(np.mean([p[1] for p in pieces]))
                vx = float(np.mean([p[2] for p in pieces]))
                vy = float(np.mean([p[3] for p in pieces]))
            elif a.event == "bite" and b.event_frame is not None and i >= b.event_frame and b.notch:
                state = "bitten"
                notch = (b.notch[0] * unit, b.notch[1] * unit, b.notch[2] * unit)
            frames.append(ObjectFrame(
                color=color, center=(px(x, i), y * unit), radius=b.r * unit, visible=1.0, state=state,
                velocity=((vx - lay.cam_v) * unit / fps, vy * unit / fps), pieces=pcs, notch=notch,
            ))
        tracks.append(ObjectTrack(
            id=b.id, shape=th.shape, size=th.size, color=th.color, motion=motion, mass=b.mass / PHYSICS.radii["medium"] ** 2,
            frames=frames, direction=a.direction, speed=a.speed, event=a.event, to_color=a.to_color,
        ))
    events = [Event(kind=k, frame=_frame_of(t, fps), objects=ids) for k, t, ids in run.events]  # type: ignore[arg-type]
    for b in run.bodies:
        if b.action.motion == "thrown":
            events.append(Event(kind="throw", frame=0, objects=[b.id]))
        if b.event_frame is not None and b.event_frame < num_frames:
            kind = "bite" if b.action.event == "bite" else "color_change"
            detail = f"{b.thing.color}->{b.action.to_color}" if kind == "color_change" else ""
            events.append(Event(kind=kind, frame=b.event_frame, objects=[b.id], detail=detail))  # type: ignore[arg-type]
    to_rect = lambda r: Rect(r[0] * unit, r[1] * unit, r[2] * unit, r[3] * unit)  # noqa: E731
    marks: list[Rect] = []
    if lay.floor is not None:
        spacing, mw = 0.2, 0.06
        lo = min(0.0, lay.cam_v * lay.T) - spacing
        hi = lay.W + max(0.0, lay.cam_v * lay.T) + spacing
        k0, k1 = math.floor(lo / spacing), math.ceil(hi / spacing)
        y0 = lay.floor + 0.3 * PHYSICS.floor_height
        marks = [to_rect((k * spacing + 0.07, y0, k * spacing + 0.07 + mw, y0 + 0.35 * PHYSICS.floor_height))
                 for k in range(k0, k1 + 1)]
    spec = ClipSpec(
        caption=caption, seed=seed, width=width, height=height, fps=fps, num_frames=num_frames,
        background=scene.background, objects=tracks, events=[],
        floor_y=lay.floor * unit if lay.floor is not None else None,
        occluder=to_rect(lay.occluder) if lay.occluder else None,
        camera_pan=pan,
        gravity=PHYSICS.gravity * unit / fps**2 if any(b.gravity for b in run.bodies) else 0.0,
        walls=to_rect(lay.walls) if lay.walls else None, floor_marks=marks, unit=unit,
    )
    events.extend(_occlusion_events(spec, _visibility(spec)))
    events = [e for e in events if 0 <= e.frame < num_frames]
    spec.events = sorted(events, key=lambda e: (e.frame, e.kind, e.objects))
    return spec


def _visibility(spec: ClipSpec) -> dict[int, np.ndarray]:
    """Fill ``visible``: the fraction of each object's area inside the frame and not behind the occluder.

    Returns per object id the fraction inside the frame alone, (f,).
    """
    in_view: dict[int, np.ndarray] = {}
    f = spec.num_frames
    shift = spec.camera_pan * np.arange(f)  # (f,)
    for o in spec.objects:
        centers = np.array([fr.center for fr in o.frames], dtype=np.float64)  # (f, 2)
        r = np.array([0.0 if fr.state == "broken" else fr.radius for fr in o.frames])
        notch = np.array([fr.notch if fr.notch else (0.0, 0.0, 0.0) for fr in o.frames])  # (f, 3)
        box = box_size(o.shape, float(o.frames[0].radius))
        _, _, xs, ys = sample_grid(centers, box, _SS_VIS)
        inside = sample_mask(o.shape, centers, r, xs, ys, notch=notch)  # (f, n, n)
        in_frame = inside & ((ys >= 0) & (ys < spec.height))[:, :, None] & ((xs >= 0) & (xs < spec.width))[:, None, :]
        seen = in_frame.copy()
        if spec.occluder is not None:
            oc = spec.occluder
            in_x = (xs >= oc.x0 - shift[:, None]) & (xs < oc.x1 - shift[:, None])  # (f, n)
            in_y = (ys >= oc.y0) & (ys < oc.y1)
            seen &= ~(in_y[:, :, None] & in_x[:, None, :])
        total = inside.sum(axis=(1, 2))
        vis = np.where(total > 0, seen.sum(axis=(1, 2)) / np.maximum(total, 1), 0.0)
        in_view[o.id] = np.where(total > 0, in_frame.sum(axis=(1, 2)) / np.maximum(total, 1), 0.0)
        for i, fr in enumerate(o.frames):
            if fr.state == "broken":
                fr.visible = _pieces_visible(fr, spec.width, spec.height)
            else:
                fr.visible = float(vis[i])
    return in_view


def _pieces_visible(fr: ObjectFrame, width: int, height: int) -> float:
    """Broken objects: the fraction of pieces whose centre lies in the frame."""
    inside = [0 <= x < width and 0 <= y < height for x, y, _ in fr.pieces]
    return float(np.mean(inside)) if inside else 0.0


def _occlusion_events(spec: ClipSpec, in_view: dict[int, np.ndarray]) -> list[Event]:
    """Start / end of full occlusion: hidden (visible 0) while inside the frame."""
    if spec.occluder is None:
        return []
    out: list[Event] = []
    for o in spec.objects:
        if o.motion != "pass_behind":
            continue
        hidden = [fr.visible <= 1e-6 and in_view[o.id][i] > 0.5 for i, fr in enumerate(o.frames)]
        for i in range(1, len(hidden)):
            if hidden[i] and not hidden[i - 1]:
                out.append(Event(kind="occlusion_start", frame=i, objects=[o.id]))
            if hidden[i - 1] and not hidden[i]:
                out.append(Event(kind="occlusion_end", frame=i, objects=[o.id]))
    return out
