"""What a clip is expected to show: from its caption alone, or from its ground-truth rollout.

Text-only generations are checked against what the caption implies (``from_scene`` /
``from_caption``): counts, colours, shapes, sizes, motions and directions, speed words, gravity,
occlusion, state changes and camera pans. Conditioned generations (image-to-video, extensions)
also carry the ground-truth ``ClipSpec`` rollout (``from_spec(spec, rollout=True)``) and are checked
against its per-frame positions and event frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kinema.world.palette import DIRECTIONS
from kinema.world.spec import ClipSpec, Event

# Motions of kinema.world.scene.MOTIONS that move an object along a said direction.
DIRECTED_MOTIONS: tuple[str, ...] = ("move", "thrown", "pass_behind")
GRAVITY_MOTIONS: tuple[str, ...] = ("fall", "thrown")


@dataclass
class ObjectExpectation:
    """One object as the caption describes it (``id`` is its index in the spec when there is one)."""

    id: int
    color: str  # colour at the start
    shape: str
    size: str
    motion: str  # kinema.world.scene.MOTIONS: still, move, bounce, fall, thrown, collide, pass_behind
    direction: str = ""  # left | right | up | down | ""
    speed: str = ""  # slow | "" | fast | very_fast
    event: str = ""  # "" | break | bite | color_change
    to_color: str = ""

    @property
    def final_color(self) -> str:
        return self.to_color or self.color


@dataclass
class Expectation:
    """Everything the metrics check a video against."""

    caption: str
    objects: list[ObjectExpectation]
    background: str = "light"
    camera: str = ""  # "" | "left" | "right"
    occluder: bool = False
    gravity: bool = False
    rollout: ClipSpec | None = None  # ground truth to compare with (conditioned generations)
    condition_frames: int = 0  # leading frames given to the model (1: image-to-video, k: extension)
    condition: object | None = None  # the given frames, uint8 (k, h, w, 3), when condition_frames > 0
    notes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.objects)

    def events(self, kind: str) -> list[Event]:
        return [e for e in self.rollout.events if e.kind == kind] if self.rollout is not None else []


def from_scene(scene: object, caption: str = "") -> Expectation:
    """Expectation of a parsed caption (``kinema.world.scene.Scene``)."""
    objects: list[ObjectExpectation] = []
    for thing, action in scene.things():  # type: ignore[attr-defined]
        for _ in range(thing.count):
            objects.append(
                ObjectExpectation(
                    id=len(objects),
                    color=thing.color,
                    shape=thing.shape,
                    size=thing.size,
                    motion=action.motion,
                    direction=action.direction,
                    speed=action.speed,
                    event=action.event,
                    to_color=action.to_color,
                )
            )
    return Expectation(
        caption=caption,
        objects=objects,
        background=scene.background,  # type: ignore[attr-defined]
        camera=scene.camera,  # type: ignore[attr-defined]
        occluder=any(o.motion == "pass_behind" for o in objects),
        gravity=any(o.motion in GRAVITY_MOTIONS for o in objects),
    )


def from_caption(caption: str) -> Expectation:
    """Parse a Kinema World caption (``kinema.world.parse``) into an expectation."""
    from kinema.world.parse import parse_caption

    return from_scene(parse_caption(caption), caption)


def from_spec(spec: ClipSpec, *, rollout: bool = False, condition_frames: int = 0) -> Expectation:
    """Expectation from a rendered clip's spec: caption-level facts, plus the rollout when ``rollout``."""
    objects = [
        ObjectExpectation(
            id=o.id,
            color=o.color,
            shape=o.shape,
            size=o.size,
            motion="move" if o.motion in DIRECTIONS else o.motion,
            direction=o.direction,
            speed=o.speed,
            event=o.event,
            to_color=o.to_color,
        )
        for o in spec.objects
    ]
    camera = "" if abs(spec.camera_pan) < 1e-6 else ("right" if spec.camera_pan > 0 else "left")
    return Expectation(
        caption=spec.caption,
        objects=objects,
        background=spec.background,
        camera=camera,
        occluder=spec.occluder is not None,
        gravity=any(o.motion in GRAVITY_MOTIONS for o in objects),
        rollout=spec if rollout else None,
        condition_frames=condition_frames,
    )
