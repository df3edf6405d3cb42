"""The one generation pipeline: prompt -> text states -> flow sampling of DiT -> VAE decode -> Video.

A pipeline folder holds one sub-folder per component plus ``pipeline.json``::

    model/
      pipeline.json        PipelineConfig: sizes, durations, default steps/guidance/sampler
      text_encoder/        config.json (TextEncoderConfig; the bundled MiniLM has no weights here)
      vae/                 config.json + model.safetensors
      dit/                 config.json + model.safetensors

``KinemaPipeline.generate`` validates every argument against what the model supports and raises
``InvalidInputError`` naming the bad value and the allowed range.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kinema.checkpoint import load_component, save_component
from kinema.config import config_to_dict, from_dict
from kinema.dit import DiT, DiTConfig
from kinema.errors import InvalidInputError, ModelLoadError
from kinema.flow import SAMPLERS, get_schedule, guided_velocity_fn, resolution_shift
from kinema.flow.samplers import StepInfo
from kinema.text import TextEncoder, TextEncoderConfig
from kinema.vae import CausalVAE, VAEConfig
from kinema.video import Video

log = logging.getLogger(__name__)

PIPELINE_CONFIG_NAME = "pipeline.json"
MAX_PROMPT_CHARS = 2000


@dataclass
class PipelineConfig:
    """What a trained model supports and how it samples by default."""

    name: str = "kinema"
    description: str = ""
    sizes: list[tuple[int, int]] = field(default_factory=lambda: [(64, 64)])  # (width, height) the model was trained on
    default_size: tuple[int, int] = (64, 64)
    fps_range: tuple[float, float] = (4.0, 30.0)
    default_fps: float = 16.0
    max_frames: int = 65  # the longest clip (in pixel frames) the model was trained on
    default_seconds: float = 2.0
    steps: int = 20
    guidance: float = 4.0
    sampler: str = "euler"
    shift: float | None = None  # timestep shift; None = resolution-aware shift from the token count
    base_shift: float = 1.0  # resolution-aware shift at `base_tokens`
    max_shift: float = 3.0  # ... and at `max_tokens`
    base_tokens: int = 256
    max_tokens: int = 4096
    negative_prompt: str = ""
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)


@dataclass
class GenerationParams:
    """Everything that determines a generation; recorded next to outputs for reproducibility."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    frames: int
    fps: float
    steps: int
    guidance: float
    sampler: str
    shift: float
    seed: int
    model: str

    def to_dict(self) -> dict[str, object]:
        return config_to_dict(self)


StepCallback = Callable[[StepInfo], None]


class KinemaPipeline:
    """Text-to-video with a causal VAE, a spacetime-patch DiT and a flow-matching sampler."""

    def __init__(self, config: PipelineConfig, vae: CausalVAE, dit: DiT, text_encoder: TextEncoder) -> None:
        if dit.config.in_channels != vae.config.latent_channels:
            raise ModelLoadError(
                f"DiT expects {dit.config.in_channels} latent channels but the VAE has {vae.config.latent_channels}"
            )
        self.config = config
        self.vae = vae.eval()
        self.dit = dit.eval()
        self.text_encoder = text_encoder
        self.name = config.name

    # ----------------------------------------------------------------- persistence
    @classmethod
    def from_pretrained(cls, folder: str | Path) -> KinemaPipeline:
        """Load a pipeline folder (see module docstring). Errors name the folder and what is missing."""
        folder = Path(folder)
        if not folder.is_dir():
            raise ModelLoadError(f"model folder not found: '{folder}'")
        path = folder / PIPELINE_CONFIG_NAME
        if not path.is_file():
            raise ModelLoadError(f"'{folder}' is not a Kinema model folder: missing {PIPELINE_CONFIG_NAME}")
        try:
            config = from_dict(PipelineConfig, json.loads(path.read_text()))
        except (json.JSONDecodeError, InvalidInputError) as e:
            raise ModelLoadError(f"cannot read '{path}': {e}") from e
        vae = load_component(CausalVAE, VAEConfig, folder / "vae")
        dit = load_component(DiT, DiTConfig, folder / "dit")
        text_encoder = TextEncoder(config.text_encoder)
        return cls(config, vae, dit, text_encoder)

    def save_pretrained(self, folder: str | Path, *, dtype: str = "float32") -> Path:
        """Write the pipeline folder; weights stored as ``dtype`` (float16 keeps the repo small)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_component(self.vae, folder / "vae", dtype=dtype)
        save_component(self.dit, folder / "dit", dtype=dtype)
        te = folder / "text_encoder"
        te.mkdir(exist_ok=True)
        (te / "config.json").write_text(json.dumps(config_to_dict(self.config.text_encoder), indent=2) + "\n")
        (folder / PIPELINE_CONFIG_NAME).write_text(json.dumps(config_to_dict(self.config), indent=2) + "\n")
        return folder

    # ----------------------------------------------------------------- validation
    @property
    def temporal_factor(self) -> int:
        return self.vae.config.temporal_factor

    def frames_for(self, seconds: float, fps: float) -> int:
        """Pixel frames for a duration: ``seconds * fps`` rounded to the VAE grid ``1 + k * T``."""
        t = self.temporal_factor
        k = max(0, round(seconds * fps / t))
        return 1 + k * t

    def allowed_frames(self) -> list[int]:
        t = self.temporal_factor
        return list(range(1, self.config.max_frames + 1, t))

    def validate(
        self, prompt: str, width: int, height: int, frames: int, fps: float, steps: int, guidance: float, sampler: str
    ) -> None:
        cfg = self.config
        if not isinstance(prompt, str):
            raise InvalidInputError(f"prompt must be a string, got {type(prompt).__name__}")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidInputError(f"prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
        if (width, height) not in [tuple(s) for s in cfg.sizes]:
            allowed = ", ".join(f"{w}x{h}" for w, h in cfg.sizes)
            raise InvalidInputError(f"size {width}x{height} is not supported by model '{cfg.name}'; supported sizes: {allowed}")
        t = self.temporal_factor
        if frames < 1 or frames > cfg.max_frames or (frames - 1) % t:
            raise InvalidInputError(
                f"frames={frames} not supported: must be 1 + k*{t} between 1 and {cfg.max_frames} "
                f"(e.g. {', '.join(map(str, self.allowed_frames()[:6]))}, ...)"
            )
        lo, hi = cfg.fps_range
        if not (lo <= fps <= hi):
            raise InvalidInputError(f"fps={fps} not supported: must be between {lo:g} and {hi:g}")
        if not (1 <= steps <= 1000):
            raise InvalidInputError(f"steps={steps} not supported: must be between 1 and 1000")
        if not (0.0 <= guidance <= 30.0) or math.isnan(guidance):
            raise InvalidInputError(f"guidance={guidance} not supported: must be between 0 and 30")
        if sampler not in SAMPLERS:
            raise InvalidInputError(f"unknown sampler '{sampler}'; choose one of {sorted(SAMPLERS)}")

    def resolve_frames(self, frames: int | None, seconds: float | None, fps: float) -> int:
        if frames is not None and seconds is not None:
            raise InvalidInputError("give either frames or seconds, not both")
        if frames is not None:
            return int(frames)
        seconds = self.config.default_seconds if seconds is None else float(seconds)
        if not (seconds >= 0) or math.isinf(seconds):
            raise InvalidInputError(f"seconds={seconds} not supported: must be >= 0 (0 makes a single image)")
        frames = self.frames_for(seconds, fps)
        if frames > self.config.max_frames:
            longest = (self.config.max_frames - 1) / fps
            raise InvalidInputError(f"seconds={seconds:g} at {fps:g} fps is too long: at most {longest:g} s for model '{self.name}'")
        return frames

    # ----------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(
        self,
        prompt: str,
        *,
        negative_prompt: str | None = None,
        seconds: float | None = None,
        frames: int | None = None,
        fps: float | None = None,
        width: int | None = None,
        height: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        sampler: str | None = None,
        seed: int = 0,
        callback: StepCallback | None = None,
    ) -> Video:
        """Generate a video for ``prompt``. Same arguments and weights give the same frames bit for bit."""
        cfg = self.config
        fps = float(cfg.default_fps if fps is None else fps)
        width = int(cfg.default_size[0] if width is None else width)
        height = int(cfg.default_size[1] if height is None else height)
        steps = int(cfg.steps if steps is None else steps)
        guidance = float(cfg.guidance if guidance is None else guidance)
        sampler = cfg.sampler if sampler is None else sampler
        negative_prompt = cfg.negative_prompt if negative_prompt is None else negative_prompt
        frames = self.resolve_frames(frames, seconds, fps)
        self.validate(prompt, width, height, frames, fps, steps, guidance, sampler)

        t0 = time.perf_counter()
        c, lf, lh, lw = self.vae.latent_shape(frames, height, width)
        num_tokens = self.dit.num_tokens(lf, lh, lw)
        shift = cfg.shift if cfg.shift is not None else resolution_shift(
            num_tokens, base_tokens=cfg.base_tokens, max_tokens=cfg.max_tokens, base_shift=cfg.base_shift, max_shift=cfg.max_shift
        )
        params = GenerationParams(prompt, negative_prompt, width, height, frames, fps, steps, guidance, sampler, float(shift), int(seed), self.name)

        text = self.text_encoder.encode([prompt])
        negative = self.text_encoder.encode([negative_prompt])
        generator = torch.Generator().manual_seed(int(seed))
        noise = torch.randn((1, c, lf, lh, lw), generator=generator)  # (b, c, f, h, w)
        schedule = get_schedule(steps, shift=shift)
        velocity = guided_velocity_fn(self.dit, text, negative, guidance)
        latents = SAMPLERS[sampler](velocity, noise, schedule, callback=callback)
        video = self.vae.decode(self.vae.denormalize(latents))  # (1, 3, f, h, w)
        log.info("generated %d frames %dx%d in %.2fs (%d tokens, %d steps)", frames, width, height, time.perf_counter() - t0, num_tokens, steps)
        return Video.from_tensor(video, fps=fps, metadata={"kinema:params": json.dumps(params.to_dict())})
