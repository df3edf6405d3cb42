"""What the web UI does when "Generate" is pressed, without Gradio: request in, files and settings out.

``generate_clip(model, request, out_dir)`` validates a ``ClipRequest`` (prompt, mode, uploads,
size, duration, sampling settings, refine), runs ``KinemaPipeline.generate`` (with the model's
refiner when asked), and writes one folder per generation::

    out_dir/<generation_id>/
      clip.webm       VP9: what the page plays (every Chromium build decodes VP9; see docs/ui.md)
      clip.mp4        H.264 yuv420p: the download, with signed C2PA content credentials
      clip.*.json     provenance sidecars (with kinema.safety: watermark payload, generation record)
      poster.png      the middle frame, for the history gallery
      settings.json   every setting needed to make the clip again (seed included)

Frames are ``(f, h, w, 3)`` uint8 (``kinema.video.Video``) throughout; no tensors here. Errors a user can fix raise ``InvalidInputError`` (or the
pipeline's own ``KinemaError``) with a message meant to be shown in the page as it is.
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kinema.errors import InvalidInputError, KinemaError, VideoIOError
from kinema.flow.samplers import StepInfo
from kinema.pipeline import KinemaPipeline
from kinema.refine import Refiner
from kinema.ui.provenance import SafetyHooks
from kinema.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Video, read_video

log = logging.getLogger(__name__)

# Mode label shown in the page -> ``KinemaPipeline.generate(mode=...)``.
MODE_LABELS: dict[str, str] = {
    "Text to video": "t2v",
    "Image to video": "i2v",
    "Extend forward": "extend",
    "Extend backward": "extend_backward",
    "Loop": "loop",
    "Connect two videos": "connect",
    "Edit a video": "edit",
}
# Uploads each mode needs (``image`` is optional for ``loop``: the loop then starts at it).
MODE_INPUTS: dict[str, tuple[str, ...]] = {
    "t2v": (),
    "i2v": ("image",),
    "extend": ("video",),
    "extend_backward": ("video",),
    "loop": (),
    "connect": ("video", "end_video"),
    "edit": ("video",),
}
UPLOAD_NAMES: dict[str, str] = {"image": "start image", "video": "input video", "end_video": "second video"}
# Modes whose ``seconds`` is the length of the *new* part (the input video is kept around it).
NEW_PART_MODES: tuple[str, ...] = ("extend", "extend_backward", "connect")
# Extension runs in chained windows: the page offers up to this many model-lengths of new frames.
EXTEND_WINDOWS = 4
PLAYER_FORMATS: tuple[str, ...] = (".webm", ".mp4")
RANDOM_SEED = -1
MAX_SEED = 2**31 - 1

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], what is happening)


@dataclass
class StudioModel:
    """A loaded pipeline and what the page derives from it (sizes, duration limits, refiner).

    The refiner is the pipeline's own (``model/refiner/``, loaded by ``from_pretrained``), or one
    loaded from ``refiner_dir`` (a ``kinema.refine.Refiner`` folder) and attached to the pipeline.
    """

    pipe: KinemaPipeline
    path: Path

    @classmethod
    def load(cls, model_dir: str | Path, refiner_dir: str | Path | None = None) -> StudioModel:
        model_dir = Path(model_dir)
        pipe = KinemaPipeline.from_pretrained(model_dir)
        if refiner_dir is not None:
            pipe.refiner = Refiner.load(refiner_dir)
        return cls(pipe, model_dir)

    @property
    def model_id(self) -> str:
        return self.pipe.name

    @property
    def has_refiner(self) -> bool:
        return self.pipe.refiner is not None

    @property
    def has_student(self) -> bool:
        """Whether the model ships a few-step student (``dit_fast/``) for 'Fast'."""
        return self.pipe.fast_dit_folder is not None or self.pipe.fast_dit is not None

    @property
    def refine_factor(self) -> int:
        """Spatial upscaling of the refiner (1 without one)."""
        return self.pipe.refiner.config.scale_factor if self.pipe.refiner is not None else 1

    @property
    def max_seconds(self) -> float:
        """Longest single clip at the model's default frame rate."""
        cfg = self.pipe.config
        return (cfg.max_frames - 1) / cfg.default_fps

    def seconds_limit(self, mode: str) -> float:
        """Largest duration the page offers for ``mode`` (extension chains windows)."""
        return self.max_seconds * (EXTEND_WINDOWS if mode in ("extend", "extend_backward") else 1)

    def size_choices(self) -> list[tuple[str, str]]:
        """``(label, value)`` for each trained size, e.g. ``("64x48 (4:3)", "64x48")``."""
        out = []
        for w, h in self.pipe.config.sizes:
            g = math.gcd(int(w), int(h))
            out.append((f"{w}x{h} ({w // g}:{h // g})", f"{w}x{h}"))
        return out


@dataclass
class ClipRequest:
    """Everything the page sends. ``None`` settings fall back to the model's defaults.

    ``seconds`` is the clip length, or for extend/connect the length of the new part.
    ``seed = -1`` draws a random seed (recorded in the settings). Uploads are file paths.
    """

    prompt: str
    mode: str = "t2v"
    negative_prompt: str = ""
    size: str | None = None  # "WIDTHxHEIGHT", one of the model's sizes
    seconds: float | None = None
    fps: float | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    image: str | Path | None = None
    video: str | Path | None = None
    end_video: str | Path | None = None
    strength: float = 0.6
    refine: bool = False
    fast: bool = False  # text-to-video with the model's few-step student (steps, guidance, negative prompt ignored)


@dataclass
class ClipResult:
    """One generation's files and record. ``video`` plays in the page; ``downloads`` are offered."""

    generation_id: str
    video: Path
    downloads: list[Path]
    poster: Path
    settings: dict[str, object]
    provenance: dict[str, object] = field(default_factory=dict)

    def caption(self, index: int) -> str:
        s = self.settings
        prompt = str(s["prompt"])
        short = prompt if len(prompt) <= 40 else prompt[:39] + "…"
        return f"#{index} {s['mode']} · seed {s['seed']} · {short}"


# ------------------------------------------------------------------------------------------ checks
def parse_size(text: str | None, model: StudioModel) -> tuple[int, int]:
    """``"WxH"`` -> ``(w, h)``, one of the model's sizes; ``None`` -> the default size."""
    cfg = model.pipe.config
    if text is None or text == "":
        return int(cfg.default_size[0]), int(cfg.default_size[1])
    allowed = [f"{w}x{h}" for w, h in cfg.sizes]
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts) or f"{int(parts[0])}x{int(parts[1])}" not in allowed:
        raise InvalidInputError(f"size '{text}' is not one this model makes; choose one of {', '.join(allowed)}")
    return int(parts[0]), int(parts[1])


def resolve_seed(seed: int | float | None) -> int:
    """``-1`` (or ``None``) -> a random seed in ``[0, 2**31 - 1]``; anything else must be in that range."""
    if seed is None or int(seed) == RANDOM_SEED:
        return secrets.randbelow(MAX_SEED + 1)
    if float(seed) != int(seed) or not 0 <= int(seed) <= MAX_SEED:
        raise InvalidInputError(f"seed={seed} invalid; use an integer from 0 to {MAX_SEED}, or -1 for a random seed")
    return int(seed)


def load_upload(path: str | Path, what: str) -> Video:
    """Read an uploaded file; a wrong type or an unreadable file becomes a message naming it."""
    p = Path(path)
    suffix = p.suffix.lower()
    kinds = IMAGE_SUFFIXES if what == "image" else VIDEO_SUFFIXES + IMAGE_SUFFIXES
    if suffix not in kinds:
        raise InvalidInputError(
            f"the {UPLOAD_NAMES[what]} '{p.name}' is not a supported file type ({suffix or 'no extension'}); "
            f"upload one of {', '.join(kinds)}"
        )
    try:
        return read_video(p)
    except VideoIOError as e:
        reason = re.sub(r"^\[Errno -?\d+\] ", "", str(e.__cause__ or e)).replace(str(p), p.name)
        raise InvalidInputError(f"the {UPLOAD_NAMES[what]} '{p.name}' could not be read ({reason}); upload a valid {', '.join(kinds)} file") from e


def check_request(model: StudioModel, request: ClipRequest, safety: SafetyHooks) -> dict[str, Video]:
    """Validate what the pipeline does not (mode, prompt, uploads, refine); returns the decoded uploads."""
    if request.mode not in MODE_INPUTS:
        raise InvalidInputError(f"unknown mode '{request.mode}'; choose one of {', '.join(MODE_INPUTS)}")
    if not request.prompt or not request.prompt.strip():
        raise InvalidInputError("the prompt is empty: describe what the video should show")
    safety.check(request.prompt, "prompt")
    if request.negative_prompt and request.negative_prompt.strip():
        safety.check(request.negative_prompt, "negative prompt")
    if request.fast and not model.has_student:
        raise InvalidInputError(f"model '{model.model_id}' has no few-step student; untick 'Fast'")
    if request.fast and request.mode != "t2v":
        raise InvalidInputError("'Fast' works for text-to-video only; untick 'Fast' for image and video modes")
    if request.refine and not model.has_refiner:
        raise InvalidInputError(f"model '{model.model_id}' has no refiner; untick 'Refine' or load a model with one (--refiner)")
    label = next(k for k, v in MODE_LABELS.items() if v == request.mode)
    for what in MODE_INPUTS[request.mode]:
        if getattr(request, what) is None:
            raise InvalidInputError(f"{label} needs a {UPLOAD_NAMES[what]}: upload one")
    uploads: dict[str, Video] = {}
    for what in ("image", "video", "end_video"):
        path = getattr(request, what)
        used = what in MODE_INPUTS[request.mode] or (what == "image" and request.mode == "loop")
        if path is not None and used:
            uploads[what] = load_upload(path, what)
    if request.mode == "edit" and not 0.0 < float(request.strength) <= 1.0:
        raise InvalidInputError(f"strength={request.strength} invalid; use a value in (0, 1]: 1 re-imagines the video completely")
    return uploads


# ------------------------------------------------------------------------------------------ generation
class _StepProgress:
    """Turns sampler callbacks into a fraction. Multi-pass modes (extend windows, loop) restart
    ``info.step`` at 0; each restart counts as a new pass, so the bar shows ``pass k, step i/n``.
    The end of a pass is followed by decoding (and refining, which reports no steps)."""

    def __init__(self, report: Progress | None, share: float, refine: bool) -> None:
        self.report = report
        self.share = share  # the part of the bar sampling owns (the rest is decoding/refining/writing)
        self.after = "decoding and refining" if refine else "decoding"
        self.passes = 0
        self.last = -1

    def __call__(self, info: StepInfo) -> None:
        if info.step <= self.last or self.passes == 0:
            self.passes += 1
        self.last = info.step
        if self.report is None:
            return
        done = info.step + 1 == info.total
        pass_note = f" (pass {self.passes})" if self.passes > 1 else ""
        desc = self.after + pass_note if done else f"sampling step {info.step + 1}/{info.total}{pass_note}"
        self.report(self.share * (info.step + 1) / info.total, desc)


def _poster(video: Video) -> np.ndarray:
    """The middle frame, upscaled by pixel repetition so tiny clips are visible in the gallery."""
    frame = video.frames[video.num_frames // 2]  # (h, w, 3)
    k = max(1, 256 // max(video.height, video.width))
    return np.repeat(np.repeat(frame, k, axis=0), k, axis=1)  # (k h, k w, 3)


def generate_clip(
    model: StudioModel,
    request: ClipRequest,
    out_dir: str | Path,
    *,
    safety: SafetyHooks | None = None,
    progress: Progress | None = None,
    player_format: str = ".webm",
) -> ClipResult:
    """Generate one clip for the page; see the module docstring for the files written.

    Raises ``KinemaError`` subclasses (``InvalidInputError``, ``RefusedPromptError``, ...) whose
    messages are meant for the user, before anything is generated where possible.
    """
    if player_format not in PLAYER_FORMATS:
        raise InvalidInputError(f"player format '{player_format}' invalid; choose one of {', '.join(PLAYER_FORMATS)}")
    safety = safety or SafetyHooks()
    uploads = check_request(model, request, safety)
    pipe, cfg = model.pipe, model.pipe.config
    width, height = parse_size(request.size, model)
    seed = resolve_seed(request.seed)
    fps = float(cfg.default_fps if request.fps is None else request.fps)
    steps = int(cfg.steps if request.steps is None else request.steps)
    if request.fast:  # the student's own step count, guidance built in
        steps = cfg.fast_steps
    seconds = None if request.mode == "edit" else request.seconds
    if seconds is not None and seconds > model.seconds_limit(request.mode) + 1e-6:
        raise InvalidInputError(f"seconds={seconds:g} is too long for {request.mode}: at most {model.seconds_limit(request.mode):g} s with model '{model.model_id}'")

    t0 = time.perf_counter()
    tracker = _StepProgress(progress, share=0.6 if request.refine else 0.95, refine=request.refine)
    video = pipe.generate(
        request.prompt, negative_prompt=None if request.fast else request.negative_prompt, seconds=seconds, fps=fps, width=width,
        height=height, steps=steps, guidance=None if request.fast else request.guidance, seed=seed, callback=tracker, mode=request.mode,
        strength=float(request.strength), image=uploads.get("image"), video=uploads.get("video"), end_video=uploads.get("end_video"),
        refine=request.refine, fast=request.fast,
    )
    params: dict[str, object] = json.loads(video.metadata.get("kinema:params", "{}"))
    if progress is not None:
        progress(0.97, "writing files")

    generation_id = uuid.uuid4().hex
    folder = Path(out_dir) / generation_id
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        **params,
        "generation_id": generation_id,
        "seconds": round(video.seconds, 4),
        "requested_seconds": seconds,
        "inputs": {k: Path(str(getattr(request, k))).name for k in uploads},
        "time_s": round(time.perf_counter() - t0, 3),
    }
    video.metadata["kinema:params"] = json.dumps(settings)
    written = safety.write(video, folder, settings, model_id=model.model_id, generation_id=generation_id)
    poster = Video(_poster(video)[None], fps=1.0).save(folder / "poster.png")
    settings_path = folder / "settings.json"
    settings_path.write_text(json.dumps(settings, indent=2) + "\n")
    player = written[player_format]
    downloads = [written[".mp4"], written[".webm"], settings_path]
    provenance = safety.describe(written, model_id=model.model_id, generation_id=generation_id)
    if progress is not None:
        progress(1.0, "done")
    log.info("ui: %s %s seed %d -> %s", request.mode, f"{video.width}x{video.height}x{video.num_frames}", seed, folder)
    return ClipResult(generation_id, player, downloads, poster, settings, provenance)


def user_message(error: Exception) -> str:
    """The text shown in the page for an error a user can fix (refusals name their category)."""
    from kinema.errors import RefusedPromptError

    if isinstance(error, RefusedPromptError):
        return f"Refused ({error.category}): {error}"
    if isinstance(error, KinemaError):
        return str(error)[:1].upper() + str(error)[1:]
    return f"Unexpected error: {type(error).__name__}: {error}"
