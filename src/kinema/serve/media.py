"""Files of a video job: checking uploads, and writing the three downloadable variants.

Layout under the data folder::

    uploads/{id}/input.{png,jpg,webp,mp4,webm,gif}   what the client sent (removed when the job ends)
    videos/{id}/video.mp4        H.264 (yuv420p, faststart)              variant=video
    videos/{id}/thumbnail.webp   the middle frame                        variant=thumbnail
    videos/{id}/spritesheet.jpg  up to 10 evenly spaced frames, 5 a row  variant=spritesheet

Every file is written to a temporary name in the same folder and renamed into place, so a crash
never leaves a half-written file under a final name. Uploads are identified by their first bytes
(not by the name or content type the client claims) and checked before a job is queued.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinema.errors import InvalidInputError
from kinema.serve.config import ServerConfig
from kinema.serve.store import Store, is_video_id

VARIANTS: dict[str, tuple[str, str]] = {  # variant -> (file name, media type)
    "video": ("video.mp4", "video/mp4"),
    "thumbnail": ("thumbnail.webp", "image/webp"),
    "spritesheet": ("spritesheet.jpg", "image/jpeg"),
}
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".webp")
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".webm", ".gif")
SPRITE_FRAMES = 10
SPRITE_COLUMNS = 5


def sniff(head: bytes) -> str | None:
    """The file type from its first bytes: ``.png``, ``.jpg``, ``.webp``, ``.mp4`` (MP4/MOV), ``.webm`` (WebM/MKV), ``.gif``."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if head.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    if head[4:8] == b"ftyp":
        return ".mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return ".webm"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return ".gif"
    return None


def write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclass(frozen=True)
class MediaInfo:
    """What an upload holds: ``kind`` ``image`` or ``video``, its size, and (videos) frame rate and frame estimate."""

    kind: str
    suffix: str
    width: int
    height: int
    fps: float = 0.0
    seconds: float = 0.0


def check_image(path: Path, max_pixels: int) -> MediaInfo:
    """Open an uploaded image's header and verify it; raises InvalidInputError naming the problem."""
    from PIL import Image, UnidentifiedImageError

    suffix = path.suffix
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise InvalidInputError(f"the image is {width}x{height}; at most {max_pixels} pixels are accepted")
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if isinstance(e, InvalidInputError):
            raise
        raise InvalidInputError(f"the image could not be read ({type(e).__name__}); send a PNG, JPEG or WebP file") from e
    return MediaInfo("image", suffix, width, height)


def probe_video(path: Path, max_side: int) -> MediaInfo:
    """Read an uploaded video's header (no decoding); raises InvalidInputError naming the problem."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InvalidInputError("the uploaded file has no video stream")
            stream = container.streams.video[0]
            width, height = int(stream.codec_context.width), int(stream.codec_context.height)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
            if not seconds and container.duration:
                seconds = container.duration / 1_000_000
    except InvalidInputError:
        raise
    except Exception as e:  # PyAV raises many error types for corrupt input
        raise InvalidInputError(f"the video could not be read ({type(e).__name__}); send an MP4, MOV, WebM or GIF file") from e
    if width <= 0 or height <= 0 or width > max_side or height > max_side:
        raise InvalidInputError(f"the video is {width}x{height}; width and height must be between 1 and {max_side}")
    return MediaInfo("video", path.suffix, width, height, fps, seconds)


# ------------------------------------------------------------------------------------ outputs
def thumbnail_webp(frames: np.ndarray) -> bytes:
    """The middle frame of ``frames`` ``(f, h, w, 3)`` uint8 as WebP."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frames[len(frames) // 2]).save(buf, format="WEBP", quality=90)
    return buf.getvalue()


def spritesheet_jpeg(frames: np.ndarray, count: int = SPRITE_FRAMES, columns: int = SPRITE_COLUMNS) -> bytes:
    """Up to ``count`` evenly spaced frames of ``(f, h, w, 3)`` in rows of ``columns``, as JPEG."""
    from PIL import Image

    n = min(count, len(frames))
    idx = np.linspace(0, len(frames) - 1, n).round().astype(int)
    cols = min(columns, n)
    rows = -(-n // cols)
    _, h, w, _ = frames.shape
    sheet = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)  # (rows*h, cols*w, 3)
    for i, j in enumerate(idx):
        r, c = divmod(i, cols)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = frames[j]
    buf = io.BytesIO()
    Image.fromarray(sheet).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def write_previews(frames: np.ndarray, folder: Path) -> None:
    """Write ``thumbnail.webp`` and ``spritesheet.jpg`` for ``frames`` into ``folder`` (atomically)."""
    write_atomic(folder / VARIANTS["thumbnail"][0], thumbnail_webp(frames))
    write_atomic(folder / VARIANTS["spritesheet"][0], spritesheet_jpeg(frames))


# ------------------------------------------------------------------------------------ retention
ORPHAN_AGE_S = 600.0  # a folder without a job record is removed once it is this old


def remove_job_files(cfg: ServerConfig, job_id: str, *, outputs: bool = True, uploads: bool = True) -> None:
    """Remove ``videos/{id}`` and/or ``uploads/{id}``; refuses anything that is not a video id."""
    if not is_video_id(job_id):
        raise InvalidInputError(f"not a video id: {job_id[:64]!r}")
    if outputs:
        shutil.rmtree(cfg.videos_dir / job_id, ignore_errors=True)
    if uploads:
        shutil.rmtree(cfg.uploads_dir / job_id, ignore_errors=True)


def cleanup(cfg: ServerConfig, store: Store, now: float | None = None) -> dict[str, int]:
    """The retention policy, run at start-up and every ``cleanup_interval_s``.

    1. Files of finished jobs past ``expires_at`` (``retention_s`` after the job ended) are deleted;
       the record stays (its content answers 404 ``video_expired``).
    2. Records whose files expired more than ``record_retention_s`` ago are deleted.
    3. Folders under ``videos/`` and ``uploads/`` with no job record, older than ``ORPHAN_AGE_S``, are deleted.
    """
    now = time.time() if now is None else now
    expired = store.due_for_expiry(now)
    for vid in expired:
        remove_job_files(cfg, vid)
        store.mark_files_expired(vid)
    purged = store.purge_records(now - cfg.record_retention_s) if cfg.record_retention_s else []
    known = store.known_ids()
    orphans = 0
    for root in (cfg.videos_dir, cfg.uploads_dir):
        if not root.is_dir():
            continue
        for entry in root.iterdir():
            if entry.name in known:
                continue
            try:
                old = now - entry.stat().st_mtime > ORPHAN_AGE_S
            except FileNotFoundError:
                continue
            if not old:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            orphans += 1
    return {"expired": len(expired), "purged": len(purged), "orphans": orphans}
