"""The one generation pipeline: prompt -> text states -> flow sampling of DiT -> VAE decode -> Video.

A pipeline folder holds one sub-folder per component plus ``pipeline.json``::

    model/
      pipeline.json        PipelineConfig: sizes, durations, default steps/guidance/sampler
      text_encoder/        config.json (TextEncoderConfig; the bundled MiniLM has no weights here)
      vae/                 config.json + model.safetensors
      dit/                 config.json + model.safetensors
      dit_fast/            optional few-step student (``kinema train reflow``), used by ``fast=True``
      refiner/             optional 2x refiner (``kinema train refiner``), used by ``refine=True``

``KinemaPipeline.generate`` validates every argument against what the model supports and raises
``InvalidInputError`` naming the bad value and the allowed range.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kinema.checkpoint import load_component, read_json_config, save_component
from kinema.config import config_to_dict
from kinema.dit import DiT, DiTConfig
from kinema.errors import InvalidInputError, ModelLoadError
from kinema.flow import SAMPLERS, get_schedule, guided_velocity_fn, resolution_shift, truncate_schedule
from kinema.flow.samplers import StepInfo
from kinema.refine import Refiner
from kinema.safety import Payload, check_prompt, embed_watermark
from kinema.world.normalize import NormalizedPrompt, normalize_prompt
from kinema.safety.provenance import WATERMARKED_KEY
from kinema.modes import MODES, LatentCondition, MediaInput, decode, prepare, run_connect, run_edit, run_extend, run_i2v, run_loop
from kinema.text import CachedTextEncoder, PromptEncoder, TextEncoder, TextEncoderConfig
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
    fast_steps: int = 8  # Euler steps of the few-step student (dit_fast/), guidance built in
    sampler: str = "euler"
    shift: float | None = None  # timestep shift; None = resolution-aware shift from the token count
    base_shift: float = 1.0  # resolution-aware shift at `base_tokens`
    max_shift: float = 3.0  # ... and at `max_tokens`
    base_tokens: int = 256
    max_tokens: int = 4096
    negative_prompt: str = ""
    moderation: bool = True  # refuse prompts by policy (kinema.safety) before generating
    watermark: bool = True  # embed the invisible watermark (model id + generation id) in every frame
    normalize_prompts: bool = False  # rewrite prompts into the Kinema World vocabulary (kinema.world.normalize)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)


StepCallback = Callable[[StepInfo], None]


@dataclass
class SampleSettings:
    """Everything that determines one sampling pass; recorded next to outputs for reproducibility."""

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
    callback: StepCallback | None = None

    def with_seed(self, seed: int) -> SampleSettings:
        return dataclasses.replace(self, seed=seed)

    def record(self, **extra: object) -> dict[str, object]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "callback"}
        data.update({k: v for k, v in extra.items() if v is not None})
        return data


class KinemaPipeline:
    """Text-to-video with a causal VAE, a spacetime-patch DiT and a flow-matching sampler."""

    def __init__(
        self,
        config: PipelineConfig,
        vae: CausalVAE,
        dit: DiT,
        text_encoder: PromptEncoder,
        refiner: Refiner | None = None,
        fast_dit: DiT | None = None,
    ) -> None:
        if fast_dit is not None and fast_dit.config.in_channels != dit.config.in_channels:
            raise ModelLoadError(
                f"the few-step student expects {fast_dit.config.in_channels} latent channels but the DiT has {dit.config.in_channels}"
            )
        if dit.config.in_channels != vae.config.latent_channels:
            raise ModelLoadError(
                f"DiT expects {dit.config.in_channels} latent channels but the VAE has {vae.config.latent_channels}"
            )
        self.config = config
        self.vae = vae.eval()
        self.dit = dit.eval()
        self.text_encoder = text_encoder
        self.refiner = refiner
        self.fast_dit = None if fast_dit is None else fast_dit.eval()
        self.fast_dit_folder: Path | None = None  # set by from_pretrained: dit_fast/ is loaded on first use
        self.name = config.name

    # ----------------------------------------------------------------- persistence
    @classmethod
    def from_pretrained(cls, folder: str | Path) -> KinemaPipeline:
        """Load a pipeline folder (see module docstring). Errors name the folder and what is missing."""
        folder = Path(folder)
        if not folder.is_dir():
            raise ModelLoadError(f"model folder not found: '{folder}'")
        if not (folder / PIPELINE_CONFIG_NAME).is_file():
            raise ModelLoadError(f"'{folder}' is not a Kinema model folder: missing {PIPELINE_CONFIG_NAME}")
        config = read_json_config(PipelineConfig, folder / PIPELINE_CONFIG_NAME)
        vae = load_component(CausalVAE, VAEConfig, folder / "vae")
        dit = load_component(DiT, DiTConfig, folder / "dit")
        # The LRU cache lets extend windows, loop passes and the refiner reuse a prompt's states.
        text_encoder = CachedTextEncoder(TextEncoder(config.text_encoder), max_entries=256)
        refiner = Refiner.load(folder / "refiner") if (folder / "refiner").is_dir() else None
        pipe = cls(config, vae, dit, text_encoder, refiner)
        if (folder / "dit_fast").is_dir():
            pipe.fast_dit_folder = folder / "dit_fast"
        return pipe

    def student(self) -> DiT | None:
        """The few-step student, loaded from ``dit_fast/`` on first use (most runs never need it)."""
        if self.fast_dit is None and self.fast_dit_folder is not None:
            student = load_component(DiT, DiTConfig, self.fast_dit_folder)
            if student.config.in_channels != self.dit.config.in_channels:
                raise ModelLoadError(f"'{self.fast_dit_folder}' expects {student.config.in_channels} latent channels; the DiT has {self.dit.config.in_channels}")
            self.fast_dit = student.eval()
        return self.fast_dit

    def save_pretrained(self, folder: str | Path, *, dtype: str = "float32") -> Path:
        """Write the pipeline folder; weights stored as ``dtype`` (float16 keeps the repo small)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_component(self.vae, folder / "vae", dtype=dtype)
        save_component(self.dit, folder / "dit", dtype=dtype)
        te = folder / "text_encoder"
        te.mkdir(exist_ok=True)
        (te / "config.json").write_text(json.dumps(config_to_dict(self.config.text_encoder), indent=2) + "\n")
        if self.refiner is not None:
            self.refiner.save(folder / "refiner", dtype=dtype)
        if self.student() is not None:
            save_component(self.student(), folder / "dit_fast", dtype=dtype)  # type: ignore[arg-type]
        (folder / PIPELINE_CONFIG_NAME).write_text(json.dumps(config_to_dict(self.config), indent=2) + "\n")
        return folder

    def compile(self) -> KinemaPipeline:
        """``torch.compile`` the DiT (and the few-step student) for long-lived processes (server, UI,
        benchmarks). The first call at each latent shape compiles (about 20 s on a 2-core CPU), later
        steps run about 1.5x faster; one-shot CLI runs are faster without it. Returns ``self``."""
        for model in (self.dit, self.student()):
            if model is not None:
                model.forward = torch.compile(model.forward, dynamic=False)  # type: ignore[method-assign]
        return self

    # ----------------------------------------------------------------- prompts
    def normalize(self, prompt: str) -> NormalizedPrompt:
        """``prompt`` in the Kinema World vocabulary (synonyms, numerals, word order); unknown words
        are dropped and named in a logged warning. Used when ``config.normalize_prompts``."""
        norm = normalize_prompt(prompt)
        if norm.warning:
            log.warning("%s", norm.warning)
        return norm

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
    def latent_shape(self, s: SampleSettings) -> tuple[int, int, int, int]:
        """Latent ``(c, f', h', w')`` for the settings' pixel size and frame count."""
        return self.vae.latent_shape(s.frames, s.height, s.width)

    def sampling_shift(self, num_tokens: int) -> float:
        """The schedule's timestep shift for a latent of ``num_tokens`` DiT tokens."""
        cfg = self.config
        if cfg.shift is not None:
            return float(cfg.shift)
        return float(resolution_shift(
            num_tokens, base_tokens=cfg.base_tokens, max_tokens=cfg.max_tokens, base_shift=cfg.base_shift, max_shift=cfg.max_shift
        ))

    @torch.no_grad()
    def sample_latents(
        self,
        s: SampleSettings,
        shape: tuple[int, int, int, int],
        *,
        cond: LatentCondition | None = None,
        start: torch.Tensor | None = None,
        strength: float | None = None,
        fast: bool = False,
    ) -> torch.Tensor:
        """Sample normalised latents ``(1, c, f, h, w)`` of ``shape``.

        ``cond``: latent frames given (their values are copied into the result). ``start`` +
        ``strength``: SDEdit, sampling begins from ``start`` noised to flow time ``strength``.
        ``fast``: the few-step student samples instead of the DiT (no guidance pass).
        """
        c, lf, lh, lw = shape
        shift = self.sampling_shift(self.dit.num_tokens(lf, lh, lw))
        s.shift = shift
        text = self.text_encoder.encode([s.prompt])
        negative = self.text_encoder.encode([s.negative_prompt])
        generator = torch.Generator().manual_seed(int(s.seed))
        x = torch.randn((1, c, lf, lh, lw), generator=generator)  # (b, c, f, h, w)
        schedule = get_schedule(s.steps, shift=shift)
        if start is not None:
            if strength is None:
                raise InvalidInputError("strength is required with a start latent (edit mode)")
            schedule = truncate_schedule(schedule, strength)
            t0 = float(schedule[0])
            x = (1.0 - t0) * start + t0 * x
        cond_latents = None if cond is None else cond.latents
        cond_mask = None if cond is None else cond.mask
        student = self.student() if fast else None
        if fast and student is None:
            raise InvalidInputError(f"model '{self.name}' has no few-step student (dit_fast/); sample without fast")
        model = student if student is not None else self.dit
        velocity = guided_velocity_fn(model, text, negative, s.guidance, cond_latents, cond_mask)
        latents = SAMPLERS[s.sampler](velocity, x, schedule, callback=s.callback)
        if cond is not None:
            given = cond.mask[:, None, :, None, None] > 0  # (1, 1, f, 1, 1)
            latents = torch.where(given, cond.latents, latents)
        return latents

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
        image: MediaInput | None = None,
        video: MediaInput | None = None,
        end_video: MediaInput | None = None,
        mode: str | None = None,
        strength: float = 0.6,
        context: int | None = None,
        refine: bool = False,
        refine_steps: int | None = None,
        refine_strength: float = 1.0,
        refine_guidance: float | None = None,
        blend_seams: bool = True,
        generation_id: str | None = None,
        fast: bool = False,
    ) -> Video:
        """Generate a video. Same arguments and weights give the same frames bit for bit.

        Modes (``mode=``; inferred when omitted: ``image`` -> ``i2v``, ``video`` -> ``extend``,
        ``video`` + ``end_video`` -> ``connect``):

        - ``t2v``: text only. ``seconds``/``frames`` is the clip length.
        - ``i2v``: ``image`` is the first frame.
        - ``extend`` / ``extend_backward``: ``video`` continued after its end / before its start by
          ``seconds``/``frames`` new frames, in chained windows of overlapping context (any length).
        - ``loop``: a clip (optionally starting at ``image``) whose end flows back into its start.
        - ``connect``: ``video``, a generated transition of ``seconds``/``frames``, then ``end_video``.
        - ``edit``: ``video`` re-imagined with the prompt (SDEdit) at ``strength`` in (0, 1].

        Inputs of another size are centre-cropped to the aspect and resized; another frame rate
        is resampled (both logged). ``context`` is the number of latent frames of overlap (default 2).
        ``blend_seams`` (extend, loop, connect): the given frames next to each join are cross-faded
        into the model's decoding of them (the last/first ``context * 4`` frames), so the look of the
        clip changes gradually instead of at the join; False keeps the given frames untouched.
        Prompts are moderated (``RefusedPromptError`` names the policy category) and every frame
        carries the invisible watermark with the model id and ``generation_id`` (default: a hash of
        the settings, so the same settings still give the same frames bit for bit).
        ``refine=True`` runs the model's refiner (a second diffusion model) on the result: the output
        is ``scale_factor`` (2) times larger; ``refine_strength`` < 1 keeps more of the base clip;
        ``refine_steps`` and ``refine_guidance`` default to the refiner's own (``refiner.json``).
        ``fast=True`` (text-to-video) samples with the model's few-step student (``dit_fast/``,
        distilled by ``kinema train reflow``): ``config.fast_steps`` steps, guidance built in.
        """
        cfg = self.config
        if fast:
            self._check_fast(mode, image, video, guidance, negative_prompt)
            steps = cfg.fast_steps if steps is None else steps
            guidance, negative_prompt = 1.0, ""
        fps = float(cfg.default_fps if fps is None else fps)
        width = int(cfg.default_size[0] if width is None else width)
        height = int(cfg.default_size[1] if height is None else height)
        steps = int(cfg.steps if steps is None else steps)
        guidance = float(cfg.guidance if guidance is None else guidance)
        sampler = cfg.sampler if sampler is None else sampler
        negative_prompt = cfg.negative_prompt if negative_prompt is None else negative_prompt
        mode = mode if mode is not None else ("connect" if end_video is not None else "extend" if video is not None else "i2v" if image is not None else "t2v")
        if mode not in MODES:
            raise InvalidInputError(f"unknown mode '{mode}'; choose one of {', '.join(MODES)}")
        needs_video = mode in ("extend", "extend_backward", "connect", "edit")
        if needs_video and video is None:
            raise InvalidInputError(f"mode '{mode}' needs an input video (video=)")
        if mode == "connect" and end_video is None:
            raise InvalidInputError("mode 'connect' needs a second video (end_video=)")
        if mode == "i2v" and image is None:
            raise InvalidInputError("mode 'i2v' needs an input image (image=)")
        if mode in ("extend", "extend_backward", "connect"):
            t = self.temporal_factor
            new = int(frames) if frames is not None else max(1, round((cfg.default_seconds if seconds is None else float(seconds)) * fps))
            if new < 1:
                raise InvalidInputError(f"{mode} needs at least 1 new frame, got {new}")
            frame_count = 1 + t  # the window size is chosen per step; validate the rest on a small window
        else:
            new = 0
            frame_count = self.resolve_frames(frames, seconds, fps)
        self.validate(prompt, width, height, frame_count, fps, steps, guidance, sampler)
        if cfg.moderation:
            check_prompt(prompt, encoder=self.text_encoder)
            if negative_prompt:
                check_prompt(negative_prompt, field_name="negative prompt", encoder=self.text_encoder)
        user_prompt = prompt
        if cfg.normalize_prompts:  # moderation saw what the user wrote; the model sees its own vocabulary
            prompt = self.normalize(prompt).text or prompt
        if refine and self.refiner is None:
            raise InvalidInputError(f"model '{self.name}' has no refiner; generate without refine (--refine)")
        if refine and not (0.0 < refine_strength <= 1.0):
            raise InvalidInputError(f"refine_strength={refine_strength} not supported: must be in (0, 1]")
        if refine and refine_steps is not None and int(refine_steps) < 1:
            raise InvalidInputError(f"refine_steps={refine_steps} not supported: must be >= 1")
        if refine and refine_guidance is not None and not float(refine_guidance) >= 1.0:
            raise InvalidInputError(f"refine_guidance={refine_guidance} not supported: must be >= 1")
        if mode == "edit" and not (0.0 < strength <= 1.0):
            raise InvalidInputError(f"strength={strength} not supported: must be in (0, 1]")

        t0 = time.perf_counter()
        s = SampleSettings(prompt, negative_prompt, width, height, frame_count, fps, steps, guidance, sampler, 0.0, int(seed), self.name, callback)
        first = None if image is None else prepare(image, "image", width, height, fps)[:1]
        src = None if video is None else prepare(video, "video", width, height, fps)
        if mode == "t2v":
            out = decode(self, self.sample_latents(s, self.latent_shape(s), fast=fast))
        elif mode == "i2v":
            out = run_i2v(self, s, first)  # type: ignore[arg-type]
        elif mode in ("extend", "extend_backward"):
            out = run_extend(self, s, src, new, backward=mode == "extend_backward", context=context, blend=blend_seams)  # type: ignore[arg-type]
        elif mode == "loop":
            out = run_loop(self, s, first, context, blend=blend_seams)
        elif mode == "connect":
            out = run_connect(self, s, src, prepare(end_video, "end_video", width, height, fps), new, context, blend=blend_seams)  # type: ignore[arg-type]
        else:
            out = run_edit(self, s, src, strength)  # type: ignore[arg-type]
        refine_record = None
        if refine and self.refiner is not None:
            r_steps, r_guidance = self.refiner.sampling(refine_steps, refine_guidance)
            out = self.refiner.refine(out, s, steps=r_steps, guidance=r_guidance, strength=refine_strength, text_encoder=self.text_encoder)
            refine_record = {"steps": r_steps, "strength": refine_strength, "guidance": r_guidance}
        params = s.record(
            user_prompt=user_prompt if user_prompt != prompt else None,
            mode=mode, frames=int(out.shape[0]), strength=strength if mode == "edit" else None, fast=True if fast else None,
            blend_seams=False if (not blend_seams and mode in ("extend", "extend_backward", "loop", "connect")) else None,
            refine=refine_record,
            output_size=f"{out.shape[2]}x{out.shape[1]}",
        )
        metadata = {"kinema:params": json.dumps(params)}
        if cfg.watermark:
            generation_id = generation_id or settings_generation_id(params)
            out = embed_watermark(out, Payload.from_ids(self.name, generation_id))
            metadata[WATERMARKED_KEY] = generation_id
        log.info("%s: %d frames %dx%d in %.2fs", mode, out.shape[0], width, height, time.perf_counter() - t0)
        return Video(frames=out, fps=fps, metadata=metadata)


    def _check_fast(self, mode: str | None, image: MediaInput | None, video: MediaInput | None,
                    guidance: float | None, negative_prompt: str | None) -> None:
        """Reject what the few-step student cannot do, naming the alternative."""
        if self.student() is None:
            raise InvalidInputError(f"model '{self.name}' has no few-step student (dit_fast/); generate without fast (--fast)")
        if (mode not in (None, "t2v")) or image is not None or video is not None:
            raise InvalidInputError("fast sampling is text-to-video only; drop fast (--fast) for image/video modes")
        if guidance is not None and guidance != 1.0:
            raise InvalidInputError(f"guidance={guidance} cannot be used with fast: the student has guidance built in; leave guidance unset")
        if negative_prompt:
            raise InvalidInputError("a negative prompt cannot be used with fast: the student has no guidance pass; drop fast (--fast)")


def settings_generation_id(params: dict[str, object]) -> str:
    """A generation id derived from the recorded settings (deterministic, 16 hex digits)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
