"""Decoding media for training: probe a file, sample a clip at a target fps, resize and crop.

Videos are read with PyAV, images with Pillow. Every failure (missing, truncated or corrupt file,
no video stream, too few frames) raises :class:`kinema.errors.VideoIOError` naming the file, so the
dataset can skip it and count it.

Clip sampling: a source at ``src_fps`` sampled at ``target_fps`` takes every
``stride = src_fps / target_fps``-th frame (rounded per frame), starting at a random frame such that
the whole clip fits. ``target_fps=None`` keeps the source rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image, UnidentifiedImageError

from kinema.errors import VideoIOError

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class MediaInfo:
    """Size and duration of a media file. Images have ``frames == 1``."""

    frames: int
    fps: float
    width: int
    height: int

    @property
    def is_image(self) -> bool:
        return self.frames == 1

    def frames_at(self, target_fps: float | None) -> int:
        """How many frames a clip sampled at ``target_fps`` can have at most."""
        if self.frames <= 1 or target_fps is None or target_fps >= self.fps:
            return self.frames
        stride = self.fps / target_fps
        return int(math.floor((self.frames - 1) / stride + 1e-6)) + 1


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def probe(path: str | Path) -> MediaInfo:
    """Frames, fps and size of ``path`` without decoding pixels (counts packets when needed)."""
    path = Path(path)
    if is_image_path(path):
        try:
            with Image.open(path) as im:
                im.verify()  # checks the file structure; size is read from the header
            with Image.open(path) as im:
                width, height = im.size
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
            raise VideoIOError(f"cannot read image '{path}': {e}") from e
        return MediaInfo(frames=1, fps=1.0, width=width, height=height)
    import av  # PyAV is only needed for videos (and not at all to train on rendered Kinema World clips)

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoIOError(f"'{path}' has no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            frames = int(stream.frames or 0)
            if frames <= 0:
                frames = sum(1 for p in container.demux(stream) if p.size > 0)
    except VideoIOError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as e:
        raise VideoIOError(f"cannot read video '{path}': {e}") from e
    if frames <= 0 or width <= 0 or height <= 0:
        raise VideoIOError(f"video '{path}' is empty (frames={frames}, size={width}x{height})")
    return MediaInfo(frames=frames, fps=fps if fps > 0 else 24.0, width=width, height=height)


def clip_indices(info: MediaInfo, num_frames: int, target_fps: float | None, rng: np.random.Generator) -> list[int]:
    """Source frame indices of a random clip of ``num_frames`` frames at ``target_fps``."""
    if num_frames > info.frames_at(target_fps):
        raise VideoIOError(
            f"clip of {num_frames} frames at {target_fps} fps does not fit a source of {info.frames} frames at "
            f"{info.fps:g} fps (at most {info.frames_at(target_fps)})"
        )
    stride = 1.0 if target_fps is None or target_fps >= info.fps else info.fps / target_fps
    span = (num_frames - 1) * stride
    last_start = int(math.floor(info.frames - 1 - span + 1e-6))
    start = int(rng.integers(0, last_start + 1))
    return [min(info.frames - 1, int(round(start + i * stride))) for i in range(num_frames)]


def decode_frames(path: str | Path, indices: list[int]) -> np.ndarray:
    """Decode the frames at sorted ``indices`` of ``path``; returns ``(f, h, w, 3)`` uint8 RGB."""
    path = Path(path)
    if is_image_path(path):
        if any(i != 0 for i in indices):
            raise VideoIOError(f"image '{path}' has one frame; asked for frames {indices}")
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))  # (h, w, 3)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
            raise VideoIOError(f"cannot decode image '{path}': {e}") from e
        return np.repeat(rgb[None], len(indices), axis=0)
    import av

    wanted = sorted(set(indices))
    got: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    got[i] = frame.to_ndarray(format="rgb24")
                if i >= wanted[-1]:
                    break
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as e:
        raise VideoIOError(f"cannot decode video '{path}': {e}") from e
    if len(got) != len(wanted):
        raise VideoIOError(f"video '{path}' ended early: decoded {len(got)} of the {len(wanted)} frames needed")
    return np.stack([got[i] for i in indices])


def resize_crop(frames: np.ndarray, height: int, width: int, rng: np.random.Generator | None = None) -> torch.Tensor:
    """Resize ``(f, h, w, 3)`` uint8 to cover ``height x width`` (keeping aspect), then crop.

    The crop is centred, or at a random offset when ``rng`` is given. Returns ``(3, f, height, width)``
    float32 in [-1, 1].
    """
    x = torch.from_numpy(np.ascontiguousarray(frames)).float()  # (f, h, w, 3)
    x = rearrange(x, "f h w c -> f c h w")
    h, w = x.shape[-2:]
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top = (nh - height) // 2 if rng is None else int(rng.integers(0, nh - height + 1))
    left = (nw - width) // 2 if rng is None else int(rng.integers(0, nw - width + 1))
    x = x[:, :, top : top + height, left : left + width]
    x = (x / 127.5 - 1.0).clamp(-1.0, 1.0)
    return rearrange(x, "f c h w -> c f h w").contiguous()
