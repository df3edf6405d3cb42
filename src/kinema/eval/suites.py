"""Named evaluation suites, as data: which metrics, on which clips, in which mode.

``mode``: ``t2v`` generates from the caption alone and checks what the caption implies;
``i2v`` gives the model the clip's first frame and also checks against the ground-truth rollout;
``extend`` gives the first ``condition_frames`` frames and checks the rest and the seam.
``motions`` / ``events`` keep only clips with an object doing one of these (empty: every clip).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from kinema.errors import InvalidInputError
from kinema.world.spec import ClipSpec

CORE: Final[tuple[str, ...]] = ("count", "attributes", "color", "shape", "spurious", "identity", "direction", "speed",
                                 "background", "camera_pan", "flicker")
PHYSICS_METRICS: Final[tuple[str, ...]] = ("gravity", "bounce")
ALL: Final[tuple[str, ...]] = CORE + PHYSICS_METRICS + ("permanence", "state_change")


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    metrics: tuple[str, ...]
    mode: str = "t2v"  # "t2v" | "i2v" | "extend"
    motions: tuple[str, ...] = ()  # kinema.world.scene.MOTIONS; empty = any
    events: tuple[str, ...] = ()  # "break" | "bite" | "color_change"; empty = any
    condition_frames: int = 0  # frames given to the model (i2v: 1, extend: k; 0 = half the clip)

    def accepts(self, spec: ClipSpec) -> bool:
        if not self.motions and not self.events:
            return True
        moves = {("move" if o.motion in ("left", "right", "up", "down") else o.motion) for o in spec.objects}
        evs = {o.event for o in spec.objects}
        return bool(moves & set(self.motions)) or bool(evs & set(self.events))


SUITES: Final[dict[str, Suite]] = {
    "t2v": Suite("t2v", "text-to-video: every caption-level check", ALL),
    "physics": Suite("physics", "gravity, bounces and collisions", CORE + PHYSICS_METRICS,
                     motions=("fall", "thrown", "bounce", "collide")),
    "permanence": Suite("permanence", "objects passing behind a wall come out again", CORE + ("permanence",),
                        motions=("pass_behind",)),
    "state": Suite("state", "breaks, bites and colour changes that persist", CORE + ("state_change",),
                   events=("break", "bite", "color_change")),
    "i2v": Suite("i2v", "image-to-video: first-frame fidelity and the ground-truth rollout",
                 ALL + ("trajectory", "first_frame"), mode="i2v", condition_frames=1),
    "extend": Suite("extend", "video extension: kept frames, seam and the rollout",
                    ALL + ("trajectory", "seam"), mode="extend", condition_frames=0),
    "calibration": Suite("calibration", "every metric, caption-level, for calibrating on ground truth", ALL),
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise InvalidInputError(f"unknown suite {name!r}; choose one of {sorted(SUITES)}")
    return SUITES[name]
