"""Prompting with images and videos: every mode is "these latent frames are given".

The DiT sees ``[x_t, cond * m, m]`` (see ``kinema.dit.model``), and was trained with random masks
(first frame, first k, last k, first + last, none). Each mode builds such a mask from encoded frames:

| mode              | given latent frames                                   | output                              |
|-------------------|-------------------------------------------------------|-------------------------------------|
| ``i2v``           | frame 0 = the image                                   | a clip starting at the image        |
| ``extend``        | first m+1 = the input's last 1+mT frames              | input + new frames (chained windows) |
| ``extend_backward`` | last m = the input's frames 1..mT                   | new frames + input (chained windows) |
| ``loop``          | a clip, then a transition from its end to its start   | a clip whose last frame leads to its first |
| ``connect``       | first m+1 from video 1's end, last m from video 2's start | video 1 + transition + video 2  |
| ``edit``          | none; sampling starts from the noised input (SDEdit)  | the input re-imagined at ``strength`` |

Causal-VAE detail: latent 0 of a clip encodes its first pixel frame alone (an "image latent"); later
latents each cover ``T`` frames with causal context. Context placed at the *start* of a window is
therefore encoded as its own clip (its latent 0 is an image latent, as in training), and context
placed at the *end* uses latents 1..m of an encoded clip (mid-clip latents, as in training), whose
first pixel frame is then taken from the input itself.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from kinema.errors import InvalidInputError
from kinema.video import Video, read_video

if TYPE_CHECKING:
    from kinema.pipeline import KinemaPipeline, SampleSettings

log = logging.getLogger(__name__)

Mode = Literal["t2v", "i2v", "extend", "extend_backward", "loop", "connect", "edit"]
MODES: tuple[str, ...] = ("t2v", "i2v", "extend", "extend_backward", "loop", "connect", "edit")
MediaInput = Video | np.ndarray | str | Path


@dataclass
class LatentCondition:
    """Clean latents at given positions: ``latents`` ``(1, c, f, h, w)`` (zeros elsewhere), ``mask`` ``(1, f)``."""

    latents: torch.Tensor
    mask: torch.Tensor


# ------------------------------------------------------------------------------------------ inputs
def as_video(media: MediaInput, what: str, fps: float) -> Video:
    """Read a path / wrap an array ``(h, w, 3)`` or ``(f, h, w, 3)`` uint8 into a ``Video``."""
    if isinstance(media, Video):
        return media
    if isinstance(media, (str, Path)):
        return read_video(media)
    if isinstance(media, np.ndarray):
        if media.dtype != np.uint8 or media.ndim not in (3, 4) or media.shape[-1] != 3:
            raise InvalidInputError(f"{what} must be uint8 RGB (h, w, 3) or (f, h, w, 3), got {media.dtype} {tuple(media.shape)}")
        return Video(media[None] if media.ndim == 3 else media, fps=fps)
    raise InvalidInputError(f"{what} must be a Video, a uint8 array or a file path, got {type(media).__name__}")


def fit_frames(frames: np.ndarray, width: int, height: int, what: str) -> np.ndarray:
    """Resize ``(f, h, w, 3)`` uint8 to ``(f, height, width, 3)``: centre-crop to the aspect, then resize."""
    f, h, w, _ = frames.shape
    if (w, h) == (width, height):
        return frames
    from PIL import Image

    target = width / height
    if abs(w / h - target) > 1e-3:
        if w / h > target:  # too wide: crop columns
            cw = max(1, round(h * target))
            x0 = (w - cw) // 2
            frames = frames[:, :, x0 : x0 + cw]
        else:  # too tall: crop rows
            ch = max(1, round(w / target))
            y0 = (h - ch) // 2
            frames = frames[:, y0 : y0 + ch]
    log.warning("%s is %dx%d; centre-cropped to %dx%d's aspect and resized", what, w, h, width, height)
    out = [np.asarray(Image.fromarray(fr).resize((width, height), Image.Resampling.BOX if fr.shape[1] >= width else Image.Resampling.BICUBIC)) for fr in frames]
    return np.stack(out)


def fit_fps(video: Video, fps: float, what: str) -> np.ndarray:
    """Resample a clip's frames to ``fps`` by nearest frame in time."""
    if abs(video.fps - fps) < 1e-3 or video.num_frames == 1:
        return video.frames
    n = max(1, int(round(video.num_frames * fps / video.fps)))
    idx = np.minimum((np.arange(n) * video.fps / fps).round().astype(int), video.num_frames - 1)
    log.warning("%s is %g fps; resampled to %g fps (%d -> %d frames)", what, video.fps, fps, video.num_frames, n)
    return video.frames[idx]


def prepare(media: MediaInput, what: str, width: int, height: int, fps: float) -> np.ndarray:
    """Input media as uint8 ``(f, height, width, 3)`` at ``fps``."""
    video = as_video(media, what, fps)
    return fit_frames(fit_fps(video, fps, what), width, height, what)


# ------------------------------------------------------------------------------------------ latents
@torch.no_grad()
def encode(pipe: KinemaPipeline, frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(n, h, w, 3)`` with ``n = 1 + kT`` -> normalised latents ``(1, c, 1 + k, h', w')`` (posterior mode)."""
    x = Video(frames, fps=1.0).to_tensor()  # (1, 3, n, h, w)
    return pipe.vae.normalize(pipe.vae.encode(x).mode())


@torch.no_grad()
def decode(pipe: KinemaPipeline, latents: torch.Tensor) -> np.ndarray:
    """Normalised latents ``(1, c, f', h', w')`` -> uint8 frames ``(f, h, w, 3)``."""
    return Video.from_tensor(pipe.vae.decode(pipe.vae.denormalize(latents)), fps=1.0).frames


def context_latents(pipe: KinemaPipeline, available_frames: int, window: int, requested: int | None) -> int:
    """How many context latents ``m`` (>= 1) fit: the context must leave room to generate."""
    t = pipe.temporal_factor
    most = min((available_frames - 1) // t, window - 2)
    if most < 1:
        raise InvalidInputError(
            f"the input video has {available_frames} frames; at least {1 + t} are needed as context "
            f"(1 + {t}) for a model with temporal factor {t}"
        )
    return max(1, min(requested if requested is not None else 2, most))


def condition(shape: tuple[int, int, int, int], given: dict[int, torch.Tensor]) -> LatentCondition:
    """A ``LatentCondition`` of latent ``shape`` ``(c, f, h, w)`` with ``given[position] = (1, c, 1, h, w)`` latents."""
    c, f, h, w = shape
    latents = torch.zeros(1, c, f, h, w)
    mask = torch.zeros(1, f)
    for pos, z in given.items():
        latents[:, :, pos] = z[:, :, 0]
        mask[0, pos] = 1.0
    return LatentCondition(latents, mask)


def crossfade(frames: np.ndarray, window: np.ndarray, rising: bool) -> np.ndarray:
    """Cross-fade uint8 ``frames`` ``(k, h, w, 3)`` into the model's decoding ``window`` of them (same shape).

    ``rising``: the window's weight rises ``1/(k+1) .. k/(k+1)`` along the frames (a seam after them);
    otherwise it falls ``k/(k+1) .. 1/(k+1)`` (a seam before them). The given frames carry the
    source's look and the generated ones the VAE's; without the fade that change of look is the
    seam (measured: a clean render followed by its own VAE reconstruction already has 3.6x the
    median frame-to-frame difference at the cut).
    """
    k = frames.shape[0]
    if window.shape != frames.shape:
        raise ValueError(f"crossfade shapes differ: {frames.shape} vs {window.shape}")
    w = np.arange(1, k + 1, dtype=np.float32) / (k + 1)  # (k,)
    w = (w if rising else w[::-1])[:, None, None, None]
    mixed = (1.0 - w) * frames.astype(np.float32) + w * window.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ modes
def run_i2v(pipe: KinemaPipeline, s: SampleSettings, image: np.ndarray) -> np.ndarray:
    """Image-to-video: latent frame 0 is the encoded image."""
    shape = pipe.latent_shape(s)
    cond = condition(shape, {0: encode(pipe, image[:1])})
    return decode(pipe, pipe.sample_latents(s, shape, cond=cond))


def run_extend(
    pipe: KinemaPipeline, s: SampleSettings, video: np.ndarray, new_frames: int, backward: bool, context: int | None, blend: bool = True,
) -> np.ndarray:
    """Extend ``video`` by ``new_frames`` frames forward (or backward) with chained overlapping windows.

    ``blend``: cross-fade the context frames next to each seam into the window's decoding of them
    (:func:`crossfade`), so the look changes gradually instead of at the seam.
    """
    t = pipe.temporal_factor
    max_latents = 1 + (pipe.config.max_frames - 1) // t
    out = video
    made, window_index = 0, 0
    while made < new_frames:
        m = context_latents(pipe, out.shape[0], max_latents, context)
        need = math.ceil((new_frames - made) / t)
        f_lat = min(max_latents, (m + 1 if not backward else m) + need + (0 if not backward else 1))
        shape = (pipe.vae.config.latent_channels, f_lat, s.height // pipe.vae.config.spatial_factor, s.width // pipe.vae.config.spatial_factor)
        settings = s.with_seed(s.seed + window_index)
        if not backward:
            ctx = encode(pipe, out[-(1 + m * t) :])  # (1, c, m + 1, h, w)
            cond = condition(shape, {i: ctx[:, :, i : i + 1] for i in range(m + 1)})
            frames = decode(pipe, pipe.sample_latents(settings, shape, cond=cond))
            new = frames[1 + m * t :]
            take = new[: new_frames - made]
            if blend:
                out = np.concatenate([out[: -m * t], crossfade(out[-m * t :], frames[1 : 1 + m * t], rising=True)])
            out = np.concatenate([out, take])
        else:
            ctx = encode(pipe, out[: 1 + m * t])  # (1, c, m + 1, h, w): use latents 1..m at the end
            cond = condition(shape, {f_lat - m + i: ctx[:, :, 1 + i : 2 + i] for i in range(m)})
            frames = decode(pipe, pipe.sample_latents(settings, shape, cond=cond))
            new = frames[: frames.shape[0] - m * t - 1]  # strictly before the input's first frame
            take = new[max(0, new.shape[0] - (new_frames - made)) :]
            if blend:  # window frames [-(m t + 1), -1) are its decoding of the input's frames [0, m t)
                out = np.concatenate([crossfade(out[: m * t], frames[-(m * t + 1) : -1], rising=False), out[m * t :]])
            out = np.concatenate([take, out])
        if take.shape[0] == 0:
            raise InvalidInputError(f"cannot extend: the model's longest window ({pipe.config.max_frames} frames) leaves no room after the context")
        made += take.shape[0]
        window_index += 1
    return out


def run_loop(pipe: KinemaPipeline, s: SampleSettings, image: np.ndarray | None, context: int | None, blend: bool = True) -> np.ndarray:
    """A clip whose last frame flows into its first: clip A, then a transition from A's end to A's start.

    ``blend``: A's last and first ``m T`` frames are cross-faded into the transition's decoding of
    them (:func:`crossfade`), so both joins stay within one decoding.
    """
    t = pipe.temporal_factor
    shape = pipe.latent_shape(s)
    first = condition(shape, {0: encode(pipe, image[:1])}) if image is not None else None
    a_lat = pipe.sample_latents(s, shape, cond=first)  # (1, c, F, h, w)
    a = decode(pipe, a_lat)
    f_lat = shape[1]
    m = context_latents(pipe, a.shape[0], f_lat, context)
    m = max(1, min(m, (f_lat - 2) // 2))
    if 2 * m + 1 > f_lat:
        raise InvalidInputError(f"a loop needs at least {1 + 2 * t + 1} frames ({2 * m + 2} latent frames); got {s.frames}")
    head = encode(pipe, a[-(1 + m * t) :])  # (1, c, m + 1, h, w)
    given = {i: head[:, :, i : i + 1] for i in range(m + 1)}
    given.update({f_lat - m + i: a_lat[:, :, 1 + i : 2 + i] for i in range(m)})
    b = decode(pipe, pipe.sample_latents(s.with_seed(s.seed + 1), shape, cond=condition(shape, given)))
    middle = b[1 + m * t : b.shape[0] - m * t - 1]  # between A's last frame and A's first frame
    if blend and a.shape[0] > 2 * m * t:
        a = a.copy()
        a[-m * t :] = crossfade(a[-m * t :], b[1 : 1 + m * t], rising=True)  # b's head decodes A's last frames
        a[: m * t] = crossfade(a[: m * t], b[b.shape[0] - m * t - 1 : -1], rising=False)  # b's tail decodes A's first frames
    return np.concatenate([a, middle])


def run_connect(
    pipe: KinemaPipeline, s: SampleSettings, first: np.ndarray, second: np.ndarray, gap_frames: int, context: int | None, blend: bool = True,
) -> np.ndarray:
    """Video 1 + a generated transition + video 2 (``blend``: cross-fade both joins, as in :func:`run_extend`)."""
    t = pipe.temporal_factor
    max_latents = 1 + (pipe.config.max_frames - 1) // t
    m1 = context_latents(pipe, first.shape[0], max_latents, context)
    m2 = context_latents(pipe, second.shape[0], max_latents, context)
    gap = max(1, math.ceil((gap_frames + 1) / t))
    f_lat = m1 + 1 + gap + m2
    if f_lat > max_latents:
        raise InvalidInputError(
            f"connecting with {gap_frames} new frames needs {1 + (f_lat - 1) * t} frames with context; the model makes at most {pipe.config.max_frames}"
        )
    shape = (pipe.vae.config.latent_channels, f_lat, s.height // pipe.vae.config.spatial_factor, s.width // pipe.vae.config.spatial_factor)
    head = encode(pipe, first[-(1 + m1 * t) :])
    tail = encode(pipe, second[: 1 + m2 * t])
    given = {i: head[:, :, i : i + 1] for i in range(m1 + 1)}
    given.update({f_lat - m2 + i: tail[:, :, 1 + i : 2 + i] for i in range(m2)})
    frames = decode(pipe, pipe.sample_latents(s, shape, cond=condition(shape, given)))
    middle = frames[1 + m1 * t : frames.shape[0] - m2 * t - 1]
    if blend:
        first = np.concatenate([first[: -m1 * t], crossfade(first[-m1 * t :], frames[1 : 1 + m1 * t], rising=True)])
        second = np.concatenate([crossfade(second[: m2 * t], frames[frames.shape[0] - m2 * t - 1 : -1], rising=False), second[m2 * t :]])
    return np.concatenate([first, middle, second])


def run_edit(pipe: KinemaPipeline, s: SampleSettings, video: np.ndarray, strength: float) -> np.ndarray:
    """SDEdit: noise the encoded input to flow time ``strength`` and denoise it with the new prompt."""
    t = pipe.temporal_factor
    n = min(video.shape[0], pipe.config.max_frames)
    n = 1 + ((n - 1) // t) * t
    if n != video.shape[0]:
        log.warning("edit input has %d frames; using the first %d (1 + k*%d, at most %d)", video.shape[0], n, t, pipe.config.max_frames)
    start = encode(pipe, video[:n])
    shape = tuple(start.shape[1:])  # (c, f, h, w)
    return decode(pipe, pipe.sample_latents(s, shape, start=start, strength=strength))  # type: ignore[arg-type]
