"""Renderer: ``ClipSpec`` -> uint8 frames ``(f, h, w, 3)``, numpy only.

Everything drawn is read from the spec, so a spec alone (e.g. loaded from JSON) re-renders its
clip exactly. Layers, back to front: background, walls, floor, floor marks, objects (in id order;
broken objects as their pieces), occluder. Objects and pieces are anti-aliased by supersampling
(``SUPERSAMPLE`` x ``SUPERSAMPLE`` samples per pixel); rectangles (walls, floor, marks, occluder)
use exact box-filter coverage. Interiors are exactly the palette / gray colours.

Objects are drawn into an image padded by one object box on each side, so boxes that leave the
frame need no clipping: a gather / blend / scatter per object covers all frames at once.
"""

from __future__ import annotations

import numpy as np

from kinema.world.geometry import box_size, coverage, rect_coverage, sample_grid, sample_mask
from kinema.world.palette import BACKGROUNDS, COLORS, GRAYS
from kinema.world.spec import ClipSpec, ObjectTrack, Rect

SUPERSAMPLE = 4


def _blend_rows_cols(img: np.ndarray, cov_y: np.ndarray, cov_x: np.ndarray, color: tuple[int, int, int],
                     pad: int, h: int, w: int) -> None:
    """Composite a separable alpha cov_y (f|1, h) x cov_x (f|1, w) of one colour into the visible area."""
    rows = np.nonzero(cov_y.max(axis=0) > 0)[0]
    if rows.size == 0:
        return
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    alpha = cov_y[:, r0:r1, None] * cov_x[:, None, :]  # (f, hr, w)
    region = img[:, pad + r0:pad + r1, pad:pad + w]  # (f, hr, w, 3) view
    col = np.asarray(color, dtype=np.float32)
    region += (col - region) * alpha[..., None]


def _rect_layer(img: np.ndarray, rects: list[Rect], shift: np.ndarray, color: tuple[int, int, int],
                pad: int, h: int, w: int) -> None:
    """Draw same-coloured, non-overlapping rectangles sharing one row band, moving by ``-shift`` per frame."""
    if not rects:
        return
    cov_y = rect_coverage(np.array([rects[0].y0]), np.array([rects[0].y1]), h)  # (1, h)
    cov_x = np.zeros((shift.shape[0], w), dtype=np.float32)
    for r in rects:
        cov_x += rect_coverage(r.x0 - shift, r.x1 - shift, w)  # (f, w)
    _blend_rows_cols(img, cov_y, np.minimum(cov_x, 1.0), color, pad, h, w)


def _shape_layer(img: np.ndarray, shape: str, centers: np.ndarray, radius: np.ndarray, colors: np.ndarray,
                 pad: int, flip: np.ndarray | None = None, notch: np.ndarray | None = None) -> None:
    """Draw one shape per frame: centers (f, 2), radius (f,) (0 = absent), colors (f, 3)."""
    if not np.any(radius > 0):
        return
    f, hp, wp = img.shape[0], img.shape[1], img.shape[2]
    box = box_size(shape, float(radius.max()))
    ox, oy, xs, ys = sample_grid(centers, box, SUPERSAMPLE)
    alpha = coverage(sample_mask(shape, centers, radius, xs, ys, flip=flip, notch=notch), SUPERSAMPLE)  # (f, B, B)
    oxp, oyp = ox + pad, oy + pad
    inside = (oxp >= 0) & (oxp <= wp - box) & (oyp >= 0) & (oyp <= hp - box)  # else wholly off-frame
    alpha *= inside[:, None, None]
    oxp, oyp = np.clip(oxp, 0, wp - box), np.clip(oyp, 0, hp - box)
    ar = np.arange(box)
    fi = np.arange(f)[:, None, None]
    rows = oyp[:, None, None] + ar[None, :, None]  # (f, B, 1)
    cols = oxp[:, None, None] + ar[None, None, :]  # (f, 1, B)
    region = img[fi, rows, cols]  # (f, B, B, 3)
    img[fi, rows, cols] = region + (colors[:, None, None, :] - region) * alpha[..., None]


def _draw_object(img: np.ndarray, o: ObjectTrack, pad: int) -> None:
    frames = o.frames
    colors = np.array([COLORS[fr.color] for fr in frames], dtype=np.float32)  # (f, 3)
    centers = np.array([fr.center for fr in frames], dtype=np.float64)  # (f, 2)
    radius = np.array([0.0 if fr.state == "broken" else fr.radius for fr in frames])  # (f,)
    notch = np.array([fr.notch if fr.notch else (0.0, 0.0, 0.0) for fr in frames])  # (f, 3)
    _shape_layer(img, o.shape, centers, radius, colors, pad, notch=notch if np.any(notch[:, 2] > 0) else None)
    n_pieces = max(len(fr.pieces) for fr in frames)
    for k in range(n_pieces):
        pc = np.array([fr.pieces[k] if len(fr.pieces) > k else (0.0, 0.0, 0.0) for fr in frames])  # (f, 3)
        flip = np.full(len(frames), bool(k % 2))
        _shape_layer(img, "triangle", pc[:, :2], pc[:, 2], colors, pad, flip=flip)


def render(spec: ClipSpec) -> np.ndarray:
    """Render a clip from its spec: uint8 ``(f, h, w, 3)``."""
    f, h, w = spec.num_frames, spec.height, spec.width
    r_max = max((fr.radius for o in spec.objects for fr in o.frames), default=1.0)
    pad = box_size("triangle", r_max) + 2
    img = np.empty((f, h + 2 * pad, w + 2 * pad, 3), dtype=np.float32)
    img[...] = np.asarray(BACKGROUNDS[spec.background], dtype=np.float32)
    shift = spec.camera_pan * np.arange(f, dtype=np.float32)  # (f,) screen shift of the world
    if spec.walls is not None:
        wr = spec.walls
        inner = rect_coverage(np.array([wr.y0]), np.array([wr.y1]), h)[0][None, :, None] * \
            rect_coverage(wr.x0 - shift, wr.x1 - shift, w)[:, None, :]  # (f, h, w)
        vis = img[:, pad:pad + h, pad:pad + w]
        vis += (np.asarray(GRAYS["wall"], dtype=np.float32) - vis) * (1.0 - inner)[..., None]
    if spec.floor_y is not None:
        band = Rect(-1e6, spec.floor_y, 1e6, float(h))
        _rect_layer(img, [band], np.zeros(f, dtype=np.float32), GRAYS["floor"], pad, h, w)
        _rect_layer(img, spec.floor_marks, shift, GRAYS["mark"], pad, h, w)
    for o in spec.objects:
        _draw_object(img, o, pad)
    if spec.occluder is not None:
        _rect_layer(img, [spec.occluder], shift, GRAYS["occluder"], pad, h, w)
    out = img[:, pad:pad + h, pad:pad + w]
    return np.rint(out).astype(np.uint8)  # (f, h, w, 3)
