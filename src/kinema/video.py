"""Video container: uint8 frames at the edges, PyAV for reading and writing.

``Video.frames`` is ``(f, h, w, 3)`` uint8 RGB. Inside models videos are float tensors
``(b, 3, f, h, w)`` in [-1, 1]; ``to_tensor`` / ``from_tensor`` convert.

Writers (by suffix): ``.mp4`` H.264 yuv420p with ``+faststart``; ``.webm`` VP9; ``.gif`` (PyAV's
gif encoder with a per-clip palette); ``.png`` one image, or ``name_0000.png``... when ``f > 1``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from kinema.errors import InvalidInputError, VideoIOError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".mov", ".mkv", ".avi")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
WRITE_SUFFIXES = (".mp4", ".webm", ".gif", ".png")


@dataclass
class Video:
    """A clip of RGB frames. ``frames``: uint8 ``(f, h, w, 3)``; ``fps`` frames per second."""

    frames: np.ndarray
    fps: float
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3:
            raise InvalidInputError(f"Video frames must have shape (f, h, w, 3), got {tuple(self.frames.shape)}")
        if self.frames.dtype != np.uint8:
            raise InvalidInputError(f"Video frames must be uint8, got {self.frames.dtype}")
        if self.frames.shape[0] < 1:
            raise InvalidInputError("Video must have at least one frame, got 0")
        if not self.fps > 0:
            raise InvalidInputError(f"fps must be > 0, got {self.fps}")

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps

    def to_tensor(self) -> torch.Tensor:
        """Frames as a float tensor ``(1, 3, f, h, w)`` in [-1, 1]."""
        x = torch.from_numpy(np.ascontiguousarray(self.frames)).float()  # (f, h, w, 3)
        return (x.permute(3, 0, 1, 2).unsqueeze(0) / 127.5) - 1.0

    @classmethod
    def from_tensor(cls, x: torch.Tensor, fps: float, metadata: dict[str, str] | None = None) -> Video:
        """Build from ``(1, 3, f, h, w)`` or ``(3, f, h, w)`` in [-1, 1] (values are clamped)."""
        if x.ndim == 5:
            if x.shape[0] != 1:
                raise InvalidInputError(f"from_tensor takes one video, got batch {x.shape[0]}")
            x = x[0]
        if x.ndim != 4 or x.shape[0] != 3:
            raise InvalidInputError(f"expected (3, f, h, w) tensor, got {tuple(x.shape)}")
        u8 = ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)  # (3, f, h, w)
        frames = u8.permute(1, 2, 3, 0).contiguous().cpu().numpy()  # (f, h, w, 3)
        return cls(frames=frames, fps=fps, metadata=dict(metadata or {}))

    def save(self, path: str | os.PathLike[str], *, crf: int = 18, preset: str = "veryfast") -> Path:
        """Write by suffix (.mp4, .webm, .gif, .png). Written to a temp file, then renamed."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in WRITE_SUFFIXES:
            raise InvalidInputError(
                f"cannot write '{path.name}': unknown output type '{suffix}'; use one of {', '.join(WRITE_SUFFIXES)}"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".png":
            return _write_png(self, path)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            if suffix == ".mp4":
                _write_av(self, tmp, "mp4", "libx264", "yuv420p", {"crf": str(crf), "preset": preset}, faststart=True)
            elif suffix == ".webm":
                _write_av(self, tmp, "webm", "libvpx-vp9", "yuv420p", {"crf": str(crf + 12), "b": "0", "deadline": "realtime", "cpu-used": "8"})
            else:
                _write_gif(self, tmp)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual mode
            os.replace(tmp, path)
        except Exception as e:
            tmp.unlink(missing_ok=True)
            if isinstance(e, (InvalidInputError, VideoIOError)):
                raise
            raise VideoIOError(f"could not write '{path}': {e}") from e
        return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _even_size(video: Video, codec: str) -> None:
    if codec in ("libx264", "libvpx-vp9") and (video.width % 2 or video.height % 2):
        raise InvalidInputError(
            f"{codec} with yuv420p needs even width and height, got {video.width}x{video.height}"
        )


def _write_av(
    video: Video,
    path: Path,
    fmt: str,
    codec: str,
    pix_fmt: str,
    options: dict[str, str],
    faststart: bool = False,
) -> None:
    import av

    _even_size(video, codec)
    # use_metadata_tags keeps custom keys (kinema:params) in the MP4's metadata.
    container_options = {"movflags": "+faststart+use_metadata_tags"} if faststart else {}
    rate = Fraction(video.fps).limit_denominator(1001)
    with av.open(str(path), mode="w", format=fmt, options=container_options) as out:
        for key, value in video.metadata.items():
            out.metadata[key] = value
        stream = out.add_stream(codec, rate=rate)
        stream.width = video.width
        stream.height = video.height
        stream.pix_fmt = pix_fmt
        stream.options = options
        if codec == "libx264":
            stream.codec_context.options = {**options, "threads": "1"}
        for frame in video.frames:
            av_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in stream.encode(av_frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _write_gif(video: Video, path: Path) -> None:
    from PIL import Image

    # Median cut keeps colours a few levels apart (the invisible watermark survives; exact for
    # frames of <= 256 colours); fast octree merges them. 22 ms vs 6 ms for 33 frames of 64x64.
    images = [Image.fromarray(f).quantize(colors=256, method=Image.Quantize.MEDIANCUT) for f in video.frames]
    duration_ms = max(int(round(1000.0 / video.fps)), 20)
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0, optimize=False)


def _write_png(video: Video, path: Path) -> Path:
    from PIL import Image

    if video.num_frames == 1:
        tmp = path.with_name(f".{path.name}.tmp")
        Image.fromarray(video.frames[0]).save(tmp, format="PNG")
        os.replace(tmp, path)
        return path
    for i, frame in enumerate(video.frames):
        Image.fromarray(frame).save(path.with_name(f"{path.stem}_{i:04d}.png"), format="PNG")
    return path.with_name(f"{path.stem}_0000.png")


def read_video(path: str | os.PathLike[str], *, max_frames: int | None = None) -> Video:
    """Decode a video or still image into a ``Video``. Raises ``VideoIOError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise VideoIOError(f"no such video or image file: '{path}'")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return _read_image(path)
    try:
        import av

        frames: list[np.ndarray] = []
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoIOError(f"'{path}' has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            metadata = {str(k): str(v) for k, v in container.metadata.items()}
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
            if suffix == ".gif" and frames and not fps:
                fps = 10.0
    except VideoIOError:
        raise
    except Exception as e:  # PyAV raises many error types for corrupt input
        raise VideoIOError(f"could not decode '{path}': {e}") from e
    if not frames:
        raise VideoIOError(f"'{path}' contains no decodable frames")
    if fps <= 0:
        log.warning("'%s' has no frame rate; assuming 16 fps", path)
        fps = 16.0
    return Video(frames=np.stack(frames), fps=fps, metadata=metadata)


def _read_image(path: Path) -> Video:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise VideoIOError(f"could not read image '{path}': {e}") from e
    return Video(frames=rgb[None].copy(), fps=1.0)
