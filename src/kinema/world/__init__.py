"""Kinema World: the procedural 2D physical world the default model is trained on and evaluated against.

    scene = parse_caption("two red balls fall on a dark background")   # or sample_scene(rng, split)
    spec, frames = make_clip(scene, width=64, height=64, fps=16, num_frames=33, seed=0)

``spec`` (a ``ClipSpec``) is the per-object per-frame ground truth; ``frames`` is uint8 (f, h, w, 3).
See docs/world.md.
"""

from __future__ import annotations

import numpy as np

from kinema.world.captions import describe
from kinema.world.parse import parse_caption, unknown_words
from kinema.world.render import render
from kinema.world.scene import Action, Clause, Scene, Thing, validate_scene
from kinema.world.simulate import PHYSICS, simulate
from kinema.world.spec import ClipSpec, Event, ObjectFrame, ObjectTrack, Rect
from kinema.world.splits import HELDOUT_RULES, SPLITS, example_rng, heldout_matches, is_ood, sample_scene


def make_clip(
    scene: Scene, width: int = 64, height: int = 64, fps: float = 16.0, num_frames: int = 33,
    seed: int = 0, caption: str | None = None,
) -> tuple[ClipSpec, np.ndarray]:
    """Simulate and render ``scene``: (spec, uint8 frames (f, h, w, 3)).

    ``caption`` defaults to a phrasing of ``scene`` drawn from ``seed``.
    """
    if caption is None:
        caption = describe(scene, np.random.default_rng(seed))
    spec = simulate(scene, width=width, height=height, fps=fps, num_frames=num_frames, seed=seed, caption=caption)
    return spec, render(spec)


def sample_example(
    split: str, seed: int, index: int, width: int = 64, height: int = 64, fps: float = 16.0, num_frames: int = 33,
) -> tuple[ClipSpec, np.ndarray]:
    """Example ``index`` of ``split`` under base ``seed``: a scene, a caption phrasing and its clip."""
    rng = example_rng(split, seed, index)
    scene = sample_scene(rng, split)
    caption = describe(scene, rng)
    clip_seed = int(rng.integers(2**31 - 1))
    spec, frames = make_clip(scene, width, height, fps, num_frames, seed=clip_seed, caption=caption)
    spec.split = split
    return spec, frames


__all__ = [
    "Action", "Clause", "ClipSpec", "Event", "HELDOUT_RULES", "ObjectFrame", "ObjectTrack", "PHYSICS", "Rect",
    "SPLITS", "Scene", "Thing", "describe", "example_rng", "heldout_matches", "is_ood", "make_clip", "parse_caption",
    "render", "sample_example", "sample_scene", "simulate", "unknown_words", "validate_scene",
]
