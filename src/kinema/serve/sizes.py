"""How OpenAI's sizes, durations and model names map onto what a Kinema model can make.

The rule (also in ``docs/server.md``):

- **size**: the model's own sizes (``pipeline.json`` ``sizes``, e.g. ``"64x64"``) are used as
  given. OpenAI's sizes (``720x1280``, ``1280x720``, ``1024x1792``, ``1792x1024``) map to the
  model size whose aspect ratio is closest (``|log(w/h) - log(W/H)|``; ties go to the larger
  size), so portrait asks get the model's most portrait size, landscape its most landscape size,
  and a square-only model answers every size with its square size. Omitted: the model's default.
  A model with a refiner (``refiner/`` in its folder, ``s``x) also makes its sizes times ``s``
  (``"128x128"`` from ``64x64``): the base size is sampled, then refined. Anything else is refused
  with a 400 that lists every set.
- **seconds**: OpenAI's durations (``4``, ``8``, ``12``; extensions also ``16``, ``20``) and any
  number of seconds in ``(0, max]`` are accepted, capped at the model's longest clip
  (``(max_frames - 1) / fps``) and rounded to the nearest duration on the causal-VAE frame grid
  ``1 + k*T`` (at least one step, ``k >= 1``). Omitted: the model's default duration. Anything
  else is refused with a 400 that lists the allowed values.
- **model**: ``sora-2``, ``sora-2-pro`` (their dated names too) and the served model's own name all
  run the served model; ``*-pro`` names sample with more steps. The response echoes the name sent.

The ``seconds`` a Video reports is ``(frames - 1) / fps`` of what was made, formatted without
trailing zeros (``"2"``, ``"0.75"``); the ``size`` is the size made (``"64x64"``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from kinema.errors import InvalidInputError, ModelLoadError

OPENAI_SIZES: tuple[str, ...] = ("720x1280", "1280x720", "1024x1792", "1792x1024")
OPENAI_SECONDS: tuple[str, ...] = ("4", "8", "12")
OPENAI_EXTENSION_SECONDS: tuple[str, ...] = ("4", "8", "12", "16", "20")
OPENAI_MODELS: tuple[str, ...] = ("sora-2", "sora-2-pro", "sora-2-2025-10-06", "sora-2-pro-2025-10-06", "sora-2-2025-12-08")


@dataclass(frozen=True)
class ModelInfo:
    """What the served model supports, read from its folder's JSON files (no torch import)."""

    name: str
    sizes: tuple[tuple[int, int], ...]  # (width, height)
    default_size: tuple[int, int]
    fps: float
    max_frames: int
    temporal_factor: int
    default_seconds: float
    steps: int
    refine_factor: int = 0  # the refiner's scale factor (``refiner/refiner.json``); 0 = no refiner

    @classmethod
    def from_folder(cls, folder: str | Path) -> ModelInfo:
        folder = Path(folder)
        try:
            cfg = json.loads((folder / "pipeline.json").read_text())
            vae = json.loads((folder / "vae" / "config.json").read_text())
            refiner_json = folder / "refiner" / "refiner.json"
            refiner = json.loads(refiner_json.read_text()) if refiner_json.is_file() else None
        except (OSError, json.JSONDecodeError) as e:
            raise ModelLoadError(f"cannot read the model folder '{folder}': {e}") from e
        return cls(
            name=str(cfg["name"]),
            sizes=tuple((int(w), int(h)) for w, h in cfg["sizes"]),
            default_size=(int(cfg["default_size"][0]), int(cfg["default_size"][1])),
            fps=float(cfg["default_fps"]),
            max_frames=int(cfg["max_frames"]),
            temporal_factor=int(vae["temporal_factor"]),
            default_seconds=float(cfg["default_seconds"]),
            steps=int(cfg["steps"]),
            refine_factor=int(refiner.get("scale_factor", 2)) if refiner is not None else 0,
        )

    @property
    def max_seconds(self) -> float:
        """The longest clip: ``(max_frames - 1) / fps``."""
        return (self.max_frames - 1) / self.fps

    @property
    def size_names(self) -> list[str]:
        return [f"{w}x{h}" for w, h in self.sizes]

    @property
    def refined_sizes(self) -> tuple[tuple[int, int], ...]:
        """The sizes made through the refiner: each model size times ``refine_factor`` (none without one)."""
        s = self.refine_factor
        return tuple((w * s, h * s) for w, h in self.sizes) if s else ()

    def base_of(self, size: tuple[int, int]) -> tuple[tuple[int, int], bool]:
        """``(size to sample, refine?)`` for an output ``size`` from :func:`resolve_size`."""
        if size in self.sizes:
            return size, False
        if size in self.refined_sizes:
            return (size[0] // self.refine_factor, size[1] // self.refine_factor), True
        raise InvalidInputError(f"size {format_size(size)} is neither a model size nor a refined one")

    def grid_seconds(self) -> list[float]:
        """Every clip duration the model makes: ``k*T / fps`` for ``k >= 1``."""
        t = self.temporal_factor
        return [k * t / self.fps for k in range(1, (self.max_frames - 1) // t + 1)]

    def frames_for(self, seconds: float) -> int:
        """Pixel frames ``1 + k*T`` nearest to ``seconds`` (``k >= 1``), at most ``max_frames``."""
        t = self.temporal_factor
        k = max(1, min(round(seconds * self.fps / t), (self.max_frames - 1) // t))
        return 1 + k * t

    def seconds_of(self, frames: int) -> float:
        """A clip's reported duration: ``(frames - 1) / fps``."""
        return max(0.0, (frames - 1) / self.fps)


def format_seconds(seconds: float) -> str:
    """``2.0 -> "2"``, ``0.75 -> "0.75"`` (two decimals at most)."""
    return f"{round(seconds, 2):g}"


def format_size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def parse_size(text: str) -> tuple[int, int] | None:
    """``"720x1280" -> (720, 1280)``; None when it is not ``WIDTHxHEIGHT``."""
    parts = text.strip().lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and 0 < len(p) <= 5 for p in parts):
        return None
    w, h = int(parts[0]), int(parts[1])
    return (w, h) if w > 0 and h > 0 else None


def closest_size(info: ModelInfo, width: int, height: int) -> tuple[int, int]:
    """The model size whose aspect ratio is closest to ``width / height`` (ties: the larger one)."""
    target = math.log(width / height)
    return min(info.sizes, key=lambda s: (round(abs(math.log(s[0] / s[1]) - target), 9), -s[0] * s[1]))


def resolve_size(text: str | None, info: ModelInfo) -> tuple[int, int]:
    """The ``(width, height)`` to make for a requested ``size`` (see the module docstring)."""
    if text is None or text == "":
        return info.default_size
    size = parse_size(str(text))
    if size is not None and (size in info.sizes or size in info.refined_sizes):
        return size
    if size is not None and format_size(size) in OPENAI_SIZES:
        return closest_size(info, *size)
    refined = f", the refined sizes ({', '.join(format_size(s) for s in info.refined_sizes)})" if info.refined_sizes else ""
    raise InvalidInputError(
        f"size '{str(text)[:32]}' is not supported; use one of the model's sizes ({', '.join(info.size_names)}){refined} "
        f"or an OpenAI size ({', '.join(OPENAI_SIZES)}), which maps to the model size of the closest aspect ratio"
    )


def _number(text: str) -> float | None:
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def resolve_seconds(text: str | int | float | None, info: ModelInfo, *, openai_values: tuple[str, ...] = OPENAI_SECONDS) -> int:
    """Pixel frames to make for a requested duration (see the module docstring)."""
    if text is None or text == "":
        return info.frames_for(min(info.default_seconds, info.max_seconds))
    raw = str(text).strip()
    value = _number(raw)
    if value is not None and (raw in openai_values or 0 < value <= info.max_seconds + 1e-9):
        return info.frames_for(min(value, info.max_seconds))
    native = ", ".join(format_seconds(s) for s in info.grid_seconds())
    raise InvalidInputError(
        f"seconds '{raw[:32]}' is not supported; use one of {', '.join(openai_values)} (capped at the model's longest clip, "
        f"{format_seconds(info.max_seconds)} s) or a number of seconds in (0, {format_seconds(info.max_seconds)}]; "
        f"the model makes {native}"
    )


def resolve_model(text: str | None, info: ModelInfo) -> tuple[str, bool]:
    """``(name to report, pro)`` for a requested model name; pro names sample with more steps."""
    if text is None or text == "":
        return info.name, False
    if text in OPENAI_MODELS or text == info.name:
        return text, "-pro" in text
    raise InvalidInputError(f"model '{str(text)[:64]}' is not served here; use one of {', '.join((*OPENAI_MODELS, info.name))}")
