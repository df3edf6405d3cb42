"""Shape geometry shared by the simulator (extents, areas, visibility) and the renderer (coverage).

Every shape is centred on its centroid. ``r`` is the object's radius: the circle's radius, the
square's half side, and for the upward-pointing equilateral triangle ``TRIANGLE_SCALE * r`` is its
circumradius (so its area, ~2 r^2, sits between the circle's and the square's). Shards of a broken
object are small triangles, alternately pointing up and down (``flip``).

Coverage is computed by supersampling a per-frame box of pixels: ``sample_mask`` returns the
boolean mask on an ``(f, B*S, B*S)`` grid of sample points (``S`` samples per pixel side) and
``coverage`` averages it to ``(f, B, B)`` alpha.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

TRIANGLE_SCALE: Final[float] = 1.25
_SQRT3: Final[float] = math.sqrt(3.0)


def shape_extent(shape: str, r: float, flip: bool = False) -> tuple[float, float, float, float]:
    """Offsets of the bounding box from the centre: (left, right, top, bottom), all >= 0."""
    if shape == "triangle":
        big = TRIANGLE_SCALE * r
        half_w = big * _SQRT3 / 2
        return (half_w, half_w, big / 2, big) if flip else (half_w, half_w, big, big / 2)
    return (r, r, r, r)


def shape_area(shape: str, r: float) -> float:
    if shape == "ball":
        return math.pi * r * r
    if shape == "square":
        return 4.0 * r * r
    big = TRIANGLE_SCALE * r
    return 3.0 * _SQRT3 / 4.0 * big * big


def box_size(shape: str, r_max: float) -> int:
    """Side in pixels of a box that holds the shape wherever its centre falls within a pixel."""
    left, right, top, bottom = shape_extent(shape, r_max)
    return int(math.ceil(2 * max(left, right, top, bottom))) + 2


def sample_grid(
    center: np.ndarray, box: int, ss: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Box origins and sample coordinates for frames with centres ``center`` (f, 2) in pixels.

    Returns ``ox, oy`` (f,) int box origins and ``xs, ys`` (f, box*ss) sample coordinates.
    """
    ox = np.floor(center[:, 0] - box / 2).astype(np.int64)  # (f,)
    oy = np.floor(center[:, 1] - box / 2).astype(np.int64)  # (f,)
    offs = (np.arange(box * ss, dtype=np.float32) + 0.5) / ss  # (B*S,)
    xs = ox[:, None].astype(np.float32) + offs[None, :]  # (f, B*S)
    ys = oy[:, None].astype(np.float32) + offs[None, :]  # (f, B*S)
    return ox, oy, xs, ys


def sample_mask(
    shape: str,
    center: np.ndarray,
    r: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    flip: np.ndarray | None = None,
    notch: np.ndarray | None = None,
) -> np.ndarray:
    """Inside-test of a shape on sample grids.

    center: (f, 2) pixels; r: (f,) radius (0 = absent); xs, ys: (f, n) sample coordinates;
    flip: (f,) bool, triangles point down; notch: (f, 3) (dx, dy, radius) disc removed, radius 0 = none.
    Returns (f, n_y, n_x) bool, rows along y.
    """
    dx = (xs - center[:, 0:1].astype(np.float32))[:, None, :]  # (f, 1, nx)
    dy = (ys - center[:, 1:2].astype(np.float32))[:, :, None]  # (f, ny, 1)
    rr = r.astype(np.float32)[:, None, None]  # (f, 1, 1)
    if shape == "ball":
        inside = dx * dx + dy * dy <= rr * rr  # (f, ny, nx)
    elif shape == "square":
        inside = (np.abs(dx) <= rr) & (np.abs(dy) <= rr)  # (f, ny, nx)
    elif shape == "triangle":
        big = TRIANGLE_SCALE * rr
        if flip is not None:
            dy = np.where(flip[:, None, None], -dy, dy)  # (f, ny, 1)
        inside = (dy <= big / 2) & (np.abs(dx) * _SQRT3 <= dy + big)  # (f, ny, nx)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    if notch is not None:
        n = notch.astype(np.float32)
        ndx = dx - n[:, 0, None, None]
        ndy = (ys - center[:, 1:2] - n[:, 1:2]).astype(np.float32)[:, :, None]
        inside &= ~(ndx * ndx + ndy * ndy < (n[:, 2] ** 2)[:, None, None])
    return inside & (rr > 0)


def coverage(mask: np.ndarray, ss: int) -> np.ndarray:
    """Average an (f, B*S, B*S) sample mask to (f, B, B) float32 alpha."""
    f, ny, nx = mask.shape
    m = mask.reshape(f, ny // ss, ss, nx // ss, ss)
    return m.mean(axis=(2, 4), dtype=np.float32)  # (f, B, B)


def rect_coverage(x0: np.ndarray, x1: np.ndarray, n: int) -> np.ndarray:
    """Exact box-filter coverage of intervals [x0, x1) over pixels 0..n-1: (f,) bounds -> (f, n)."""
    j = np.arange(n, dtype=np.float32)[None, :]
    lo = np.maximum(x0.astype(np.float32)[:, None], j)
    hi = np.minimum(x1.astype(np.float32)[:, None], j + 1)
    return np.clip(hi - lo, 0.0, 1.0)  # (f, n)
