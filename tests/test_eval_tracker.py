"""Tracker: connected components, colours/shapes/sizes from pixels, identities over time."""

from __future__ import annotations

import time

import numpy as np
import pytest

from kinema.eval.runner import mp4_round_trip
from kinema.eval.segment import detect, label_components
from kinema.eval.tracker import track
from kinema.world.palette import BACKGROUNDS, COLORS


def _bfs_count(mask: np.ndarray) -> int:
    """Reference: 4-connected components of one 2-D mask by breadth-first search."""
    h, w = mask.shape
    seen = np.zeros_like(mask)
    n = 0
    for y in range(h):
        for x in range(w):
            if mask[y, x] and not seen[y, x]:
                n += 1
                stack = [(y, x)]
                seen[y, x] = True
                while stack:
                    a, b = stack.pop()
                    for p, q in ((a + 1, b), (a - 1, b), (a, b + 1), (a, b - 1)):
                        if 0 <= p < h and 0 <= q < w and mask[p, q] and not seen[p, q]:
                            seen[p, q] = True
                            stack.append((p, q))
    return n


def _draw(frames: np.ndarray, t: int, shape: str, color: str, cx: float, cy: float, r: float, ss: int = 4) -> None:
    """Anti-aliased flat shape (supersampled), the way Kinema World draws objects."""
    h, w = frames.shape[1:3]
    off = (np.arange(ss) + 0.5) / ss
    ys = (np.arange(h)[:, None] + off[None, :]).reshape(-1)  # (h*ss,)
    xs = (np.arange(w)[:, None] + off[None, :]).reshape(-1)
    dx, dy = xs[None, :] - cx, ys[:, None] - cy
    if shape == "ball":
        inside = dx**2 + dy**2 <= r * r
    elif shape == "square":
        inside = (np.abs(dx) <= r) & (np.abs(dy) <= r)
    else:
        big = 1.25 * r
        inside = (dy <= big / 2) & (np.abs(dx) * np.sqrt(3) <= dy + big)
    a = inside.reshape(h, ss, w, ss).mean(axis=(1, 3))[..., None]  # (h, w, 1)
    frames[t] = np.round(frames[t] * (1 - a) + np.array(COLORS[color]) * a).astype(np.uint8)


def _blank(f: int, bg: str = "light", size: int = 64) -> np.ndarray:
    return np.tile(np.array(BACKGROUNDS[bg], dtype=np.uint8), (f, size, size, 1))


def test_components_match_breadth_first_search_and_are_fast() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((33, 64, 64)) < 0.35
    labels, n = label_components(mask)
    assert n == sum(_bfs_count(m) for m in mask)
    assert labels.max() == n and (labels[~mask] == 0).all() and (labels[mask] > 0).all()
    spiral = np.zeros((33, 64, 64), dtype=bool)  # long thin snakes need many propagation steps
    spiral[:, ::2, :] = True
    spiral[:, :, 0] = True
    spiral[:, 1::4, -1] = True
    t0 = time.perf_counter()
    _, n2 = label_components(spiral)
    elapsed = time.perf_counter() - t0
    assert n2 == 33
    assert elapsed < 0.25, f"labelling 33 frames of 64x64 took {elapsed:.3f} s"


@pytest.mark.parametrize("bg", ["light", "dark"])
@pytest.mark.parametrize("mp4", [False, True])
def test_colours_shapes_and_sizes_from_pixels(bg: str, mp4: bool) -> None:
    frames = _blank(2, bg)
    objects = [("ball", "red", 12, 12, 5.44), ("square", "cyan", 36, 12, 3.84), ("triangle", "purple", 54, 14, 5.44),
               ("ball", "white", 12, 40, 7.68), ("square", "yellow", 34, 40, 5.44), ("triangle", "orange", 52, 44, 7.68),
               ("ball", "green", 12, 58, 3.84), ("square", "blue", 32, 57, 3.84)]
    for t in range(2):
        for shape, color, x, y, r in objects:
            _draw(frames, t, shape, color, x, y, r)
    if mp4:
        frames = mp4_round_trip(frames, 16.0, 23)
    dets = detect(frames)[0]
    assert len(dets) == len(objects)
    for shape, color, x, y, r in objects:
        d = min(dets, key=lambda d: np.hypot(d.center[0] - x, d.center[1] - y))
        assert np.hypot(d.center[0] - x, d.center[1] - y) < 0.8
        assert (d.color, d.shape) == (color, shape)
        assert abs(d.radius(shape) / r - 1) < 0.12


def test_touching_objects_of_two_colours_are_split() -> None:
    frames = _blank(1)
    _draw(frames, 0, "square", "red", 24, 32, 6)
    _draw(frames, 0, "square", "blue", 36, 32, 6)  # shares an edge with the red one
    dets = detect(frames)[0]
    assert sorted(d.color for d in dets) == ["blue", "red"]


def test_identities_survive_crossing_and_occlusion_gap() -> None:
    f = 24
    frames = _blank(f)
    for t in range(f):
        _draw(frames, t, "ball", "red", 8 + 2 * t, 20, 4)  # moves right
        _draw(frames, t, "square", "green", 40, 36, 5)  # still
        if not 10 <= t < 13:  # hidden for three frames
            _draw(frames, t, "triangle", "blue", 58 - 1.5 * t, 58 - 0.2 * t, 4)
    res = track(frames)
    assert len(res.tracks) == 3
    by_color = {tr.majority_color(): tr for tr in res.tracks}
    assert set(by_color) == {"red", "green", "blue"}
    assert len(by_color["red"].obs) == f and len(by_color["green"].obs) == f
    blue = by_color["blue"]
    assert blue.first == 0 and blue.last == f - 1 and len(blue.obs) == f - 3  # one identity through the gap
    assert by_color["red"].majority_shape() == "ball" and blue.majority_shape() == "triangle"


def test_pieces_of_a_broken_object_stay_one_track_but_a_teleport_does_not() -> None:
    f = 12
    frames = _blank(f)
    for t in range(f):
        if t < 6:
            _draw(frames, t, "square", "orange", 30, 30, 6)
        else:
            for k, dx in enumerate((-6, 0, 6)):
                _draw(frames, t, "triangle", "orange", 30 + dx * (1 + 0.2 * (t - 6)), 32 + k % 2, 2.5)
    res = track(frames)
    assert len(res.tracks) == 1 and max(res.tracks[0].pieces(t) for t in range(6, f)) == 3
    jump = _blank(f)
    for t in range(f):
        _draw(jump, t, "ball", "purple", 12 if t < 6 else 44, 30, 5)
    res = track(jump)
    assert len(res.tracks) == 2
