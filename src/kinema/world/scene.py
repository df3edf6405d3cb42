"""What a Kinema World caption means: a small, hashable scene description.

A ``Scene`` is the semantics of one caption, nothing more: the simulator (``simulate.py``) fills in
everything a caption leaves open (positions, exact speeds, event times) from a seed. Captions are
generated from scenes (``captions.py``) and parsed back into scenes (``parse.py``); the round trip
is exact, so ``parse_caption(describe(scene, rng)) == scene``.

A scene is one or more clauses ("two red balls and a blue square fall", "a green box moves left"),
each a list of subjects sharing one action, plus a background and an optional camera pan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from kinema.errors import InvalidInputError
from kinema.world.palette import BACKGROUNDS, COLORS, MAX_OBJECTS, SHAPES

MotionName = Literal["still", "move", "bounce", "fall", "thrown", "collide", "pass_behind"]
EventName = Literal["", "break", "bite", "color_change"]

MOTIONS: Final[tuple[str, ...]] = ("still", "move", "bounce", "fall", "thrown", "collide", "pass_behind")
EVENTS: Final[tuple[str, ...]] = ("", "break", "bite", "color_change")

# Sizes: the three of WORLD.md, plus "tiny" and "huge", used only by the out-of-distribution split.
ALL_SIZES: Final[tuple[str, ...]] = ("tiny", "small", "medium", "large", "huge")
# Speeds: "" is the unsaid normal speed; "very_fast" is used only by the out-of-distribution split.
SPEEDS: Final[tuple[str, ...]] = ("slow", "", "fast", "very_fast")
CAMERA_PANS: Final[tuple[str, ...]] = ("", "left", "right")

# Which motions accept which directions ("" = unsaid) and whether a speed word applies.
MOTION_DIRECTIONS: Final[dict[str, tuple[str, ...]]] = {
    "still": ("",),
    "move": ("left", "right", "up", "down"),
    "bounce": ("",),
    "fall": ("",),
    "thrown": ("left", "right"),
    "collide": ("",),
    "pass_behind": ("", "left", "right"),
}
MOTION_TAKES_SPEED: Final[dict[str, bool]] = {
    "still": False, "move": True, "bounce": True, "fall": False,
    "thrown": False, "collide": True, "pass_behind": False,
}
# Which events combine with which motions.
EVENT_MOTIONS: Final[dict[str, tuple[str, ...]]] = {
    "": MOTIONS,
    "break": ("fall",),
    "bite": ("still",),
    "color_change": ("still", "move"),
}


@dataclass(frozen=True)
class Thing:
    """``count`` identical objects named together, e.g. "two small red balls"."""

    shape: str
    color: str
    size: str = "medium"
    count: int = 1


@dataclass(frozen=True)
class Action:
    """What the subjects of a clause do."""

    motion: str = "still"
    direction: str = ""  # see MOTION_DIRECTIONS
    speed: str = ""  # "slow" | "" (normal) | "fast" | "very_fast"
    event: str = ""  # "" | "break" | "bite" | "color_change"
    to_color: str = ""  # the new colour of a "color_change"


@dataclass(frozen=True)
class Clause:
    subjects: tuple[Thing, ...]
    action: Action

    @property
    def count(self) -> int:
        return sum(t.count for t in self.subjects)


@dataclass(frozen=True)
class Scene:
    clauses: tuple[Clause, ...]
    background: str = "light"
    camera: str = ""  # "" (still camera) | "left" | "right"

    @property
    def count(self) -> int:
        return sum(c.count for c in self.clauses)

    def things(self) -> list[tuple[Thing, Action]]:
        """Every subject with its action, in caption order."""
        return [(t, c.action) for c in self.clauses for t in c.subjects]

    @property
    def has_floor(self) -> bool:
        """A floor (with marks) is drawn for gravity and for camera pans (it shows the pan)."""
        return bool(self.camera) or any(a.motion in ("fall", "thrown") for _, a in self.things())

    @property
    def has_walls(self) -> bool:
        return any(a.motion == "bounce" for _, a in self.things())

    @property
    def has_occluder(self) -> bool:
        return any(a.motion == "pass_behind" for _, a in self.things())


def validate_scene(scene: Scene) -> Scene:
    """Check a scene is physically meaningful; raise ``InvalidInputError`` naming the problem."""
    if not scene.clauses:
        raise InvalidInputError("a scene needs at least one clause with an object, got none")
    if scene.background not in BACKGROUNDS:
        raise InvalidInputError(f"background {scene.background!r} not in {sorted(BACKGROUNDS)}")
    if scene.camera not in CAMERA_PANS:
        raise InvalidInputError(f"camera pan {scene.camera!r} not in {CAMERA_PANS}")
    if not 1 <= scene.count <= MAX_OBJECTS:
        raise InvalidInputError(f"a scene holds 1..{MAX_OBJECTS} objects, got {scene.count}")
    for clause in scene.clauses:
        a = clause.action
        if a.motion not in MOTIONS:
            raise InvalidInputError(f"motion {a.motion!r} not in {MOTIONS}")
        if a.direction not in MOTION_DIRECTIONS[a.motion]:
            raise InvalidInputError(
                f"direction {a.direction!r} does not apply to {a.motion!r}; allowed {MOTION_DIRECTIONS[a.motion]}"
            )
        if a.speed not in SPEEDS:
            raise InvalidInputError(f"speed {a.speed!r} not in {SPEEDS}")
        if a.speed and not MOTION_TAKES_SPEED[a.motion]:
            raise InvalidInputError(f"a speed ({a.speed!r}) does not apply to motion {a.motion!r}")
        if a.event not in EVENTS or a.motion not in EVENT_MOTIONS[a.event]:
            raise InvalidInputError(
                f"event {a.event!r} with motion {a.motion!r} is not in the world; "
                f"allowed motions for it: {EVENT_MOTIONS.get(a.event, ())}"
            )
        if (a.event == "color_change") != bool(a.to_color):
            raise InvalidInputError(f"to_color {a.to_color!r} is set iff the event is color_change, got {a.event!r}")
        if a.to_color and a.to_color not in COLORS:
            raise InvalidInputError(f"colour {a.to_color!r} not in {sorted(COLORS)}")
        if a.motion == "collide" and clause.count != 2:
            raise InvalidInputError(f"'collide' takes exactly two objects, got {clause.count}")
        for t in clause.subjects:
            if t.shape not in SHAPES:
                raise InvalidInputError(f"shape {t.shape!r} not in {SHAPES}")
            if t.color not in COLORS:
                raise InvalidInputError(f"colour {t.color!r} not in {sorted(COLORS)}")
            if t.size not in ALL_SIZES:
                raise InvalidInputError(f"size {t.size!r} not in {ALL_SIZES}")
            if t.count < 1:
                raise InvalidInputError(f"count must be >= 1, got {t.count}")
            if a.to_color and a.to_color == t.color:
                raise InvalidInputError(f"colour change from {t.color!r} to itself")
    return scene
