"""Machine-readable ground truth of one Kinema World clip.

Every rendered clip comes with a ``ClipSpec``: the caption, the render settings, per object per
frame its colour, shape, size, centre, visibility and state, and the events with frame numbers.
The evaluation suite checks generated videos against it.

Coordinates are pixels of the rendered frame: ``x`` to the viewer's right, ``y`` down (row index),
origin at the top-left corner of the top-left pixel. Frame indices start at 0.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

ObjectStateName = Literal["intact", "broken", "bitten"]
EventKind = Literal[
    "wall_bounce",  # an object bounced off a side wall or the ceiling
    "floor_bounce",  # an object bounced on the floor
    "collision",  # two objects collided (objects = the pair)
    "occlusion_start",  # an object became fully hidden behind the occluder
    "occlusion_end",  # it became visible again
    "break",  # an object broke into pieces (state -> "broken")
    "color_change",  # an object changed colour (detail = "red->blue")
    "bite",  # a bite was taken out of an object (state -> "bitten")
    "throw",  # an object was thrown (frame 0, parabola)
]


@dataclass
class ObjectFrame:
    """One object in one frame."""

    color: str  # palette word, may change over time ("color_change")
    center: tuple[float, float]  # (x, y) pixels
    radius: float  # half the object's extent in pixels (circle radius / half side)
    visible: float  # fraction of the object's area visible in the frame, 0..1
    state: ObjectStateName = "intact"
    velocity: tuple[float, float] = (0.0, 0.0)  # pixels per frame, (dx, dy)
    # After a "break": the pieces as (x, y, r) pixels (centre, half extent); ``center`` is their mean.
    pieces: list[tuple[float, float, float]] = field(default_factory=list)
    # After a "bite": the notch, a disc (dx, dy, r) in pixels relative to ``center``, cut out of the shape.
    notch: tuple[float, float, float] | None = None


@dataclass
class ObjectTrack:
    """One object over the whole clip. ``frames[i]`` is its state in frame ``i``."""

    id: int
    shape: str  # "ball" | "square" | "triangle"
    size: str  # "small" | "medium" | "large"
    color: str  # colour in frame 0
    motion: str  # what the caption says it does: "still", "left", "right", "up", "down", "bounce", "fall", "thrown", ...
    mass: float = 1.0
    frames: list[ObjectFrame] = field(default_factory=list)
    direction: str = ""  # "left" | "right" | "up" | "down" | "" (motion "thrown", "pass_behind", "left", ...)
    speed: str = ""  # what the caption says: "slow" | "" (normal) | "fast" | "very_fast"
    event: str = ""  # the caption's state change: "" | "break" | "bite" | "color_change"
    to_color: str = ""  # colour after a "color_change"


@dataclass
class Event:
    kind: EventKind
    frame: int
    objects: list[int]  # ids of the objects involved
    detail: str = ""


@dataclass
class Rect:
    """Axis-aligned rectangle in pixels (x0, y0) top-left, (x1, y1) bottom-right, exclusive."""

    x0: float
    y0: float
    x1: float
    y1: float


@dataclass
class ClipSpec:
    caption: str
    seed: int
    width: int
    height: int
    fps: float
    num_frames: int
    background: str = "light"  # "light" | "dark"
    objects: list[ObjectTrack] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    floor_y: float | None = None  # y of the visible floor's top edge, None if no floor is drawn
    occluder: Rect | None = None  # in frame-0 screen coordinates
    camera_pan: float = 0.0  # pixels per frame the camera moves to the right (negative: left)
    gravity: float = 0.0  # pixels per frame^2, positive = down
    split: str = ""  # "train" | "test" | "heldout" | "ood" when the spec came from a split
    # Everything below is in frame-0 screen coordinates and moves with the world (x - camera_pan * i).
    walls: Rect | None = None  # inner edge of the walls objects bounce off; walls fill the frame outside it
    floor_marks: list[Rect] = field(default_factory=list)  # marks drawn on the floor (they show a pan)
    unit: float = 0.0  # pixels per world unit (min(width, height)); 0 when unknown
    # Why the video may not show what the caption says (kinema.world.clean.clip_problems); [] = clean.
    # Clips of the dataset splits are always clean; make_clip for a user's caption is best effort.
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=None, separators=(",", ":"))
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, data: dict) -> ClipSpec:
        objects = [
            ObjectTrack(
                **{k: v for k, v in o.items() if k != "frames"},
                frames=[
                    ObjectFrame(
                        color=f["color"],
                        center=(float(f["center"][0]), float(f["center"][1])),
                        radius=float(f["radius"]),
                        visible=float(f["visible"]),
                        state=f["state"],
                        velocity=(float(f["velocity"][0]), float(f["velocity"][1])),
                        pieces=[(float(a), float(b), float(c)) for a, b, c in f.get("pieces", [])],
                        notch=tuple(float(v) for v in f["notch"]) if f.get("notch") else None,  # type: ignore[arg-type]
                    )
                    for f in o["frames"]
                ],
            )
            for o in data["objects"]
        ]
        events = [Event(**e) for e in data["events"]]
        occ = data.get("occluder")
        walls = data.get("walls")
        marks = [Rect(**m) for m in data.get("floor_marks", [])]
        special = ("objects", "events", "occluder", "walls", "floor_marks")
        rest = {k: v for k, v in data.items() if k not in special}
        return cls(
            **rest,
            objects=objects,
            events=events,
            occluder=Rect(**occ) if occ else None,
            walls=Rect(**walls) if walls else None,
            floor_marks=marks,
        )

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> ClipSpec:
        p = Path(text_or_path) if not str(text_or_path).lstrip().startswith("{") else None
        text = p.read_text() if p is not None else str(text_or_path)
        return cls.from_dict(json.loads(text))
