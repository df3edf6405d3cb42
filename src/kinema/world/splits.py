"""Splits of Kinema World, defined on scenes (what captions say), not on clips.

- ``train``: counts 1-3, speeds slow / normal / fast, sizes small / medium / large, and never a
  held-out combination (``HELDOUT_RULES``) — the sampler rejects scenes that contain one.
- ``test``: the train distribution, drawn from a different seed stream.
- ``heldout``: every scene contains at least one held-out combination (named attribute pairs and
  event templates); everything else is in the train distribution. Each single value of a held-out
  pair (purple, triangle, ...) still occurs often in train, only the combination never does.
- ``ood``: at least one value outside the train ranges: 4 objects, "very quickly" (0.9 units/s vs
  at most 0.38 * 1.1 in train), "tiny" (radius 0.045) or "huge" (0.18) objects.

``example_rng(split, seed, index, attempt)`` seeds one example, so dataset writers and streams agree
on what example ``index`` of a split is, whatever the number of workers. ``attempt`` > 0 re-draws
the example's scene when the first draw gave no clean clip (``kinema.world.sample_spec``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

import numpy as np

from kinema.errors import InvalidInputError
from kinema.world.palette import COLORS, SHAPES
from kinema.world.scene import Action, Clause, Scene, Thing, validate_scene

SPLITS: Final[tuple[str, ...]] = ("train", "test", "heldout", "ood")
_SPLIT_IDS: Final[dict[str, int]] = {"train": 0, "test": 1, "heldout": 2, "ood": 3}
TRAIN_MAX_OBJECTS: Final[int] = 3
TRAIN_SIZES: Final[tuple[str, ...]] = ("small", "medium", "large")
TRAIN_SPEEDS: Final[tuple[str, ...]] = ("slow", "", "fast")
OOD_KINDS: Final[tuple[str, ...]] = ("four_objects", "very_fast", "tiny", "huge")


@dataclass(frozen=True)
class HeldoutRule:
    """A combination kept out of training: a subject matches when every field that is set matches.

    ``color`` matches the subject's colour or the colour it changes to.
    """

    name: str
    color: str | None = None
    shape: str | None = None
    size: str | None = None
    motion: str | None = None
    event: str | None = None

    def matches(self, thing: Thing, action: Action) -> bool:
        return (
            (self.color is None or self.color in (thing.color, action.to_color))
            and (self.shape is None or self.shape == thing.shape)
            and (self.size is None or self.size == thing.size)
            and (self.motion is None or self.motion == action.motion)
            and (self.event is None or self.event == action.event)
        )


HELDOUT_RULES: Final[tuple[HeldoutRule, ...]] = (
    # attribute pairs
    HeldoutRule("purple triangle", color="purple", shape="triangle"),
    HeldoutRule("orange square", color="orange", shape="square"),
    HeldoutRule("large green", color="green", size="large"),
    # event templates
    HeldoutRule("cyan ball falls", color="cyan", shape="ball", motion="fall"),
    HeldoutRule("triangle bounces", shape="triangle", motion="bounce"),
    HeldoutRule("square breaks", shape="square", event="break"),
    HeldoutRule("red object bitten", color="red", event="bite"),
    HeldoutRule("yellow object thrown", color="yellow", motion="thrown"),
)

# Train mixture of clause kinds: (motion, event) -> weight.
CLAUSE_KINDS: Final[dict[tuple[str, str], float]] = {
    ("still", ""): 0.08, ("move", ""): 0.22, ("bounce", ""): 0.10, ("fall", ""): 0.13,
    ("thrown", ""): 0.08, ("collide", ""): 0.08, ("pass_behind", ""): 0.08, ("fall", "break"): 0.08,
    ("still", "bite"): 0.07, ("still", "color_change"): 0.05, ("move", "color_change"): 0.03,
}
_CAMERA_KINDS: Final[frozenset[tuple[str, str]]] = frozenset(
    {("still", ""), ("move", ""), ("fall", ""), ("still", "color_change"), ("still", "bite")}
)


# Clause kinds that share a scene with an object passing behind the wall.
_WITH_WALL: Final[frozenset[tuple[str, str]]] = frozenset(
    {("still", ""), ("fall", ""), ("fall", "break"), ("still", "bite"), ("still", "color_change")}
)


def heldout_matches(scene: Scene) -> list[str]:
    """Names of the held-out rules that ``scene`` contains."""
    return [r.name for r in HELDOUT_RULES if any(r.matches(t, a) for t, a in scene.things())]


def example_rng(split: str, seed: int, index: int, attempt: int = 0) -> np.random.Generator:
    """The generator of example ``index`` of ``split`` under base ``seed``.

    ``attempt`` k > 0 is the k-th re-draw of the example's scene, used when draw k - 1 gave no
    clean clip (``kinema.world.sample_spec``); attempt 0 is the example's first draw.
    """
    if split not in _SPLIT_IDS:
        raise InvalidInputError(f"split {split!r} not in {SPLITS}")
    if attempt < 0:
        raise InvalidInputError(f"attempt must be >= 0, got {attempt}")
    key = [_SPLIT_IDS[split], seed, index] + ([attempt] if attempt else [])
    return np.random.default_rng(key)


def _choice(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _thing(rng: np.random.Generator, count: int = 1) -> Thing:
    size = _choice(rng, ["small", "medium", "medium", "large"])
    return Thing(shape=_choice(rng, SHAPES), color=_choice(rng, sorted(COLORS)), size=size, count=count)


def _action(rng: np.random.Generator, motion: str, event: str, color: str) -> Action:
    direction, speed, to_color = "", "", ""
    if motion == "move":
        direction = _choice(rng, ("left", "right", "up", "down"))
    elif motion == "thrown":
        direction = _choice(rng, ("left", "right"))
    elif motion == "pass_behind":
        direction = _choice(rng, ("", "", "left", "right"))
    if motion in ("move", "bounce", "collide"):
        speed = _choice(rng, ("", "", "slow", "fast"))
    if event == "color_change":
        to_color = _choice(rng, [c for c in sorted(COLORS) if c != color])
    return Action(motion=motion, direction=direction, speed=speed, event=event, to_color=to_color)


def _merge(things: list[Thing]) -> tuple[Thing, ...]:
    """Merge identical subjects ("a red ball and a red ball" -> "two red balls")."""
    out: list[Thing] = []
    for t in things:
        same = next((i for i, o in enumerate(out) if replace(o, count=1) == replace(t, count=1)), None)
        if same is None:
            out.append(t)
        else:
            out[same] = replace(out[same], count=out[same].count + t.count)
    return tuple(out)


def _clause(rng: np.random.Generator, kind: tuple[str, str], room: int) -> Clause:
    """A clause of ``kind`` with at most ``room`` objects."""
    motion, event = kind
    if motion == "collide":
        n = 2
    else:
        n = 1 if room == 1 or rng.random() < 0.7 else int(rng.integers(2, room + 1))
    if n > 1 and rng.random() < 0.4:
        things: tuple[Thing, ...] = (_thing(rng, count=n),)
    else:
        things = _merge([_thing(rng) for _ in range(n)])
    if event == "color_change":  # "from X to Y" reads best with one colour
        things = _merge([replace(t, color=things[0].color) for t in things])
    return Clause(things, _action(rng, motion, event, things[0].color))


def _kinds(rng: np.random.Generator, allowed: frozenset[tuple[str, str]] | None) -> tuple[str, str]:
    keys = [k for k in CLAUSE_KINDS if allowed is None or k in allowed]
    p = np.array([CLAUSE_KINDS[k] for k in keys])
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _in_distribution(rng: np.random.Generator, max_objects: int = TRAIN_MAX_OBJECTS) -> Scene:
    """A scene from the train mixture; held-out combinations are not filtered here."""
    background = "dark" if rng.random() < 0.4 else "light"
    camera = _choice(rng, ("left", "right")) if rng.random() < 0.12 else ""
    allowed = _CAMERA_KINDS if camera else None
    n_clauses = 1 if rng.random() < 0.7 else 2
    clauses: list[Clause] = []
    room = max_objects
    for _ in range(n_clauses):
        if room < 1:
            break
        kind = _kinds(rng, allowed)
        if kind[0] == "collide" and room < 2:
            kind = ("move", "")
        if clauses and (kind[0] == "pass_behind" or clauses[0].action.motion == "pass_behind"):
            kind = _kinds(rng, _WITH_WALL)  # only what stays clear of the wall's column
        c = _clause(rng, kind, min(room, 2) if kind[0] == "pass_behind" else room)
        clauses.append(c)
        room -= c.count
    return validate_scene(Scene(tuple(clauses), background=background, camera=camera))


def _heldout(rng: np.random.Generator) -> Scene:
    rule = HELDOUT_RULES[int(rng.integers(len(HELDOUT_RULES)))]
    base = _in_distribution(rng, max_objects=TRAIN_MAX_OBJECTS - 1)
    kind = (rule.motion or "", rule.event or "")
    if rule.event == "break":
        kind = ("fall", "break")
    elif rule.event in ("bite",):
        kind = ("still", "bite")
    elif not kind[0]:
        kind = _kinds(rng, _CAMERA_KINDS if base.camera else frozenset(k for k in CLAUSE_KINDS if k[0] != "collide"))
    t = _thing(rng)
    t = Thing(shape=rule.shape or t.shape, color=rule.color or t.color, size=rule.size or t.size)
    action = _action(rng, kind[0], kind[1], t.color)
    if rule.color and kind[1] == "color_change" and rng.random() < 0.5:  # held-out colour reached by a change
        action = replace(action, to_color=rule.color)
        t = replace(t, color=_choice(rng, [c for c in sorted(COLORS) if c != rule.color]))
    camera = base.camera if kind in _CAMERA_KINDS else ""
    clauses = (Clause((t,), action),)
    if rng.random() < 0.35 and kind[0] != "pass_behind" and base.clauses[0].action.motion not in ("collide", "pass_behind"):
        clauses = clauses + base.clauses[:1] if rng.random() < 0.5 else base.clauses[:1] + clauses
    scene = Scene(clauses, background=base.background, camera=camera if all(
        (c.action.motion, c.action.event) in _CAMERA_KINDS for c in clauses) else "")
    return validate_scene(scene)


def _ood(rng: np.random.Generator) -> Scene:
    kind = _choice(rng, OOD_KINDS)
    if kind == "four_objects":
        scene = _in_distribution(rng, max_objects=4)
        while scene.count < 4:
            scene = replace(scene, clauses=scene.clauses + (_clause(rng, ("still", ""), 4 - scene.count),))
            scene = Scene(scene.clauses, scene.background, "" if any(
                (c.action.motion, c.action.event) not in _CAMERA_KINDS for c in scene.clauses) else scene.camera)
        return validate_scene(scene)
    scene = _in_distribution(rng)
    i = int(rng.integers(len(scene.clauses)))
    c = scene.clauses[i]
    if kind == "very_fast":
        if c.action.motion in ("move", "bounce", "collide"):
            a = replace(c.action, speed="very_fast")
        else:
            a = replace(_action(rng, "move", "", c.subjects[0].color), speed="very_fast")
        c = Clause(c.subjects, a)
    else:
        c = Clause((replace(c.subjects[0], size=kind),) + c.subjects[1:], c.action)
    return validate_scene(replace(scene, clauses=scene.clauses[:i] + (c,) + scene.clauses[i + 1:]))


def is_ood(scene: Scene) -> bool:
    """Whether a scene has a value outside the train ranges."""
    return scene.count > TRAIN_MAX_OBJECTS or any(
        t.size not in TRAIN_SIZES or a.speed not in TRAIN_SPEEDS for t, a in scene.things()
    )


def sample_scene(rng: np.random.Generator, split: str = "train") -> Scene:
    """Draw one scene of ``split`` ("train", "test", "heldout", "ood")."""
    if split not in SPLITS:
        raise InvalidInputError(f"split {split!r} not in {SPLITS}")
    for _ in range(1000):
        if split in ("train", "test"):
            scene = _in_distribution(rng)
            ok = not heldout_matches(scene)
        elif split == "heldout":
            scene = _heldout(rng)
            ok = bool(heldout_matches(scene)) and not is_ood(scene)
        else:
            scene = _ood(rng)
            ok = is_ood(scene) and not heldout_matches(scene)
        if ok:
            return scene
    raise RuntimeError(f"could not sample a {split!r} scene in 1000 draws")  # unreachable in practice
