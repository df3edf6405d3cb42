"""The fixed vocabulary and palette of Kinema World (../shared/WORLD.md). Keep it exactly."""

from __future__ import annotations

from typing import Final

# Object colours, sRGB, rendered flat.
COLORS: Final[dict[str, tuple[int, int, int]]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 190),
    "orange": (240, 130, 30),
    "cyan": (30, 190, 200),
    "white": (245, 245, 245),
}

# Backgrounds: "on a light background" (default) / "on a dark background".
BACKGROUNDS: Final[dict[str, tuple[int, int, int]]] = {
    "light": (200, 200, 200),
    "dark": (40, 40, 40),
}
DEFAULT_BACKGROUND: Final[str] = "light"

# Floor, walls, occluders and floor marks: gray tones that no object colour or background uses.
GRAYS: Final[dict[str, tuple[int, int, int]]] = {
    "floor": (120, 120, 120),
    "wall": (150, 150, 150),
    "occluder": (95, 95, 95),
    "mark": (170, 170, 170),
}

SHAPES: Final[tuple[str, ...]] = ("ball", "square", "triangle")
SHAPE_SYNONYMS: Final[dict[str, str]] = {
    "ball": "ball", "balls": "ball", "circle": "ball", "circles": "ball",
    "square": "square", "squares": "square", "box": "square", "boxes": "square",
    "triangle": "triangle", "triangles": "triangle",
}
SIZES: Final[tuple[str, ...]] = ("small", "medium", "large")
DEFAULT_SIZE: Final[str] = "medium"
MAX_OBJECTS: Final[int] = 4
COUNT_WORDS: Final[dict[str, int]] = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4}

# "left" and "right" are the viewer's; "up" is toward the top of the frame.
DIRECTIONS: Final[tuple[str, ...]] = ("left", "right", "up", "down")
