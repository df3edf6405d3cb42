"""Kinema World: the procedural 2D physical world the default model is trained on and evaluated against.

    scene = parse_caption("two red balls fall on a dark background")   # or sample_scene(rng, split)
    spec, frames = make_clip(scene, width=64, height=64, fps=16, num_frames=33, seed=0)

``spec`` (a ``ClipSpec``) is the per-object per-frame ground truth; ``frames`` is uint8 (f, h, w, 3).
``sample_example(split, seed, index)`` draws example ``index`` of a split; it is always clean
(``is_clean(spec)``: the video shows what the caption says).
See docs/world.md.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from kinema.errors import KinemaError
from kinema.world.captions import describe
from kinema.world.clean import clip_problems, is_clean
from kinema.world.parse import parse_caption, unknown_words
from kinema.world.render import render
from kinema.world.scene import Action, Clause, Scene, Thing, validate_scene
from kinema.world.simulate import PHYSICS, simulate
from kinema.world.spec import ClipSpec, Event, ObjectFrame, ObjectTrack, Rect
from kinema.world.splits import HELDOUT_RULES, SPLITS, example_rng, heldout_matches, is_ood, sample_scene

MAX_SCENE_DRAWS: Final[int] = 100  # scene draws per split example before sample_spec gives up


def make_clip(
    scene: Scene, width: int = 64, height: int = 64, fps: float = 16.0, num_frames: int = 33,
    seed: int = 0, caption: str | None = None,
) -> tuple[ClipSpec, np.ndarray]:
    """Simulate and render ``scene``: (spec, uint8 frames (f, h, w, 3)).

    ``caption`` defaults to a phrasing of ``scene`` drawn from ``seed``. Best effort: when no layout
    drawn from ``seed`` is clean, the best one is rendered and ``spec.problems`` says what the video
    does not show (e.g. two objects overlapping, a promised bounce missing); try another seed.
    """
    if caption is None:
        caption = describe(scene, np.random.default_rng(seed))
    spec = simulate(scene, width=width, height=height, fps=fps, num_frames=num_frames, seed=seed, caption=caption)
    return spec, render(spec)


def sample_spec(
    split: str, seed: int, index: int, width: int = 64, height: int = 64, fps: float = 16.0, num_frames: int = 33,
) -> ClipSpec:
    """Ground truth of example ``index`` of ``split`` under base ``seed``; always a clean clip.

    Draw k = 0, 1, ... uses ``example_rng(split, seed, index, k)`` for the scene, its caption and the
    layout seed; the first draw whose clip is clean (``clip_problems`` empty) is the example. So the
    example is a pure function of (split, seed, index) and the render settings. Raises
    ``KinemaError`` when ``MAX_SCENE_DRAWS`` draws give no clean clip (e.g. a clip too short for
    any promised event to happen in it).
    """
    last: list[str] = []
    for attempt in range(MAX_SCENE_DRAWS):
        rng = example_rng(split, seed, index, attempt)
        scene = sample_scene(rng, split)
        caption = describe(scene, rng)
        clip_seed = int(rng.integers(2**31 - 1))
        spec = simulate(scene, width, height, fps, num_frames, seed=clip_seed, caption=caption)
        if not spec.problems:
            spec.split = split
            return spec
        last = spec.problems
    raise KinemaError(
        f"no clean clip for example {index} of split {split!r} (seed {seed}) at {width}x{height}, {num_frames} frames "
        f"at {fps:g} fps in {MAX_SCENE_DRAWS} scene draws; last problems: {last}. Clips of at least 1 s "
        f"(e.g. 17 frames at 16 fps) leave room for every event"
    )


def sample_example(
    split: str, seed: int, index: int, width: int = 64, height: int = 64, fps: float = 16.0, num_frames: int = 33,
) -> tuple[ClipSpec, np.ndarray]:
    """Example ``index`` of ``split`` under base ``seed``: its clean ground truth and uint8 frames (f, h, w, 3)."""
    spec = sample_spec(split, seed, index, width, height, fps, num_frames)
    return spec, render(spec)


__all__ = [
    "MAX_SCENE_DRAWS", "Action", "Clause", "ClipSpec", "Event", "HELDOUT_RULES", "ObjectFrame", "ObjectTrack", "PHYSICS", "Rect",
    "SPLITS", "Scene", "Thing", "describe", "example_rng", "heldout_matches", "is_ood", "make_clip", "parse_caption",
    "render", "sample_example", "sample_scene", "sample_spec", "simulate", "unknown_words", "validate_scene",
    "clip_problems", "is_clean",
]
