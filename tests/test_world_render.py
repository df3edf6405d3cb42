"""Kinema World renderer: any size / aspect / fps, flat palette colours, separable objects."""

from __future__ import annotations

import numpy as np
import pytest

from kinema.world import Action, Clause, ClipSpec, Scene, Thing, make_clip, render, sample_example
from kinema.world.palette import BACKGROUNDS, COLORS, GRAYS

ALLOWED = {tuple(c) for c in (*COLORS.values(), *BACKGROUNDS.values(), *GRAYS.values())}


def _flat_colours(frames: np.ndarray) -> set[tuple[int, int, int]]:
    """Colours of pixels whose 3x3 neighbourhood is one colour (interiors, not anti-aliased edges)."""
    f = frames.astype(np.int32)
    key = (f[..., 0] << 16) | (f[..., 1] << 8) | f[..., 2]  # (f, h, w)
    c = key[:, 1:-1, 1:-1]
    flat = np.ones_like(c, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            flat &= key[:, 1 + dy:key.shape[1] - 1 + dy, 1 + dx:key.shape[2] - 1 + dx] == c
    vals = np.unique(c[flat])
    return {(int(v >> 16), int((v >> 8) & 255), int(v & 255)) for v in vals}


@pytest.mark.parametrize("size", [(64, 64), (96, 64), (64, 96), (128, 128)])
@pytest.mark.parametrize("fps,frames", [(16.0, 33), (8.0, 9), (24.0, 17)])
def test_any_size_and_fps(size: tuple[int, int], fps: float, frames: int) -> None:
    w, h = size
    spec, video = sample_example("train", 0, 5, width=w, height=h, fps=fps, num_frames=frames)
    assert video.shape == (frames, h, w, 3) and video.dtype == np.uint8
    assert spec.width == w and spec.height == h and spec.num_frames == frames
    assert len(spec.objects[0].frames) == frames


@pytest.mark.parametrize("split", ["train", "heldout", "ood"])
def test_flat_regions_use_only_palette_colours(split: str) -> None:
    for i in range(8):
        _, video = sample_example(split, 1, i)
        colours = _flat_colours(video)
        assert colours <= ALLOWED, colours - ALLOWED


def test_same_scene_at_two_sizes_is_the_same_picture() -> None:
    scene = Scene((Clause((Thing("ball", "red"),), Action("move", "right")),))
    s64, _ = make_clip(scene, 64, 64, seed=2)
    s128, _ = make_clip(scene, 128, 128, seed=2)
    a = np.array([f.center for f in s64.objects[0].frames])
    b = np.array([f.center for f in s128.objects[0].frames])
    assert np.allclose(2 * a, b, atol=1e-6)
    # a wider frame keeps the object size in pixels (unit = min(width, height))
    s_wide, _ = make_clip(scene, 96, 64, seed=2)
    assert s_wide.objects[0].frames[0].radius == s64.objects[0].frames[0].radius


def test_sizes_distinct_and_trackable() -> None:
    areas = {}
    for size in ("small", "medium", "large"):
        scene = Scene((Clause((Thing("ball", "blue", size),), Action("still")),))
        _, video = make_clip(scene, seed=0)
        mask = np.abs(video[0].astype(int) - COLORS["blue"]).sum(-1) < 100
        areas[size] = int(mask.sum())
        ys, xs = np.nonzero(mask)
        assert xs.max() - xs.min() + 1 >= 6 and ys.max() - ys.min() + 1 >= 6
    assert areas["small"] * 1.6 < areas["medium"] and areas["medium"] * 1.6 < areas["large"]


def test_centre_matches_pixel_centroid() -> None:
    for shape in ("ball", "square", "triangle"):
        scene = Scene((Clause((Thing(shape, "red", "large"),), Action("still")),))
        spec, video = make_clip(scene, 128, 128, seed=1)
        m = np.all(video[0] == COLORS["red"], axis=-1)
        ys, xs = np.nonzero(m)
        cx, cy = spec.objects[0].frames[0].center
        assert abs(xs.mean() + 0.5 - cx) < 0.6 and abs(ys.mean() + 0.5 - cy) < 0.6


def test_occluder_hides_object_in_pixels() -> None:
    spec, video = make_clip(Scene((Clause((Thing("square", "orange"),), Action("pass_behind", "right")),)), seed=3)
    for i, f in enumerate(spec.objects[0].frames):
        present = np.any(np.abs(video[i].astype(int) - COLORS["orange"]).sum(-1) < 30)
        assert present == (f.visible > 0.05) or 0 < f.visible <= 0.05


def test_spec_json_round_trip_rerenders_identically() -> None:
    for i in range(6):
        spec, video = sample_example("train", 2, i)
        back = ClipSpec.from_json(spec.to_json())
        assert back == spec
        assert np.array_equal(render(back), video)


def test_dark_background() -> None:
    spec, video = make_clip(Scene((Clause((Thing("ball", "white"),), Action("still")),), background="dark"), seed=0)
    assert tuple(video[0, 0, 0]) == BACKGROUNDS["dark"]
