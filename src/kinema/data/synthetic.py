"""A tiny synthetic dataset of moving coloured squares (real MP4/PNG files + a manifest).

Used by the tests and by smoke runs of the training commands (``docs/training.md``); it needs no
downloads. Captions name the colour and direction ("a red square moves right").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from kinema.data.manifest import ManifestEntry, write_manifest

_COLORS: dict[str, tuple[int, int, int]] = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 200, 30)}
_MOVES: dict[str, tuple[int, int]] = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}


def render_clip(color: str, move: str, frames: int, height: int, width: int) -> np.ndarray:
    """``(frames, height, width, 3)`` uint8: a square of ``color`` on light gray moving ``move``."""
    out = np.full((frames, height, width, 3), 200, dtype=np.uint8)
    side = max(2, min(height, width) // 4)
    dx, dy = _MOVES[move]
    for i in range(frames):
        x = (width - side) // 2 + dx * i * max(1, width // (2 * frames))
        y = (height - side) // 2 + dy * i * max(1, height // (2 * frames))
        x, y = int(np.clip(x, 0, width - side)), int(np.clip(y, 0, height - side))
        out[i, y : y + side, x : x + side] = _COLORS[color]
    return out


def write_mp4(frames: np.ndarray, path: str | Path, fps: int = 8) -> Path:
    """Encode ``(f, h, w, 3)`` uint8 as H.264 yuv420p (h, w even)."""
    path = Path(path)
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_synthetic_dataset(
    folder: str | Path,
    *,
    videos: int = 8,
    images: int = 4,
    frames: int = 12,
    height: int = 24,
    width: int = 32,
    fps: int = 8,
    suffix: str = ".csv",
) -> Path:
    """Write ``videos`` MP4s and ``images`` PNGs plus ``manifest{suffix}``; returns the manifest path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    colors, moves = list(_COLORS), list(_MOVES)
    entries = []
    for i in range(videos):
        color, move = colors[i % len(colors)], moves[(i // len(colors)) % len(moves)]
        path = write_mp4(render_clip(color, move, frames, height, width), folder / f"clip_{i:03d}.mp4", fps)
        entries.append(ManifestEntry(path=path, caption=f"a {color} square moves {move}"))
    for i in range(images):
        color = colors[i % len(colors)]
        path = folder / f"image_{i:03d}.png"
        Image.fromarray(render_clip(color, "right", 1, height, width)[0]).save(path)
        entries.append(ManifestEntry(path=path, caption=f"a {color} square"))
    return write_manifest(entries, folder / f"manifest{suffix}")
