"""The refiner ("diffuse-to-diffuse"): a second DiT that returns a clip at ``s``x spatial resolution.

The refiner is a plain :class:`kinema.dit.DiT` trained with the DiT's own conditioning input
``[x_t, cond * m, m]``: every latent frame is "given" (``m = 1``) and ``cond`` is a *guide*, the
low-resolution clip brought to the high-resolution latent grid::

    low video (b, 3, f, h, w)
      guide "pixel":  bilinear s x in pixels -> VAE encode (mode) -> normalise      (b, c, f', s h / S, s w / S)
      guide "latent": VAE encode (mode) -> normalise -> bilinear s x in latent space (same shape)
    cond = (1 - a) guide + a eps                 noise augmentation at the fixed level ``a`` (cascaded
                                                 diffusion): the refiner learns not to trust the guide's
                                                 fine detail, which the base model gets wrong
    latents = flow sampling of refiner(x_t, t, text, cond, m = 1)  from noise (or from the noised guide
                                                 when ``strength < 1``, SDEdit-style)
    high video = VAE decode(latents)             (b, 3, f, s h, s w)

In training the target is the high-resolution clip and the low-resolution input is its exact
``s x s`` area average (:func:`area_downsample`), so any source renders one size only. The
augmentation level is fixed (the same in training and sampling) because feeding a per-sample level
would need a second timestep input in the DiT. A trained refiner is exported as
``RUN/final/refiner`` (DiT component folder) plus ``RUN/final/refiner.json`` (:class:`RefinerConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from kinema.checkpoint import load_component, read_json_config
from kinema.config import save_config
from kinema.dit import DiT, DiTConfig
from kinema.errors import InvalidInputError, ModelLoadError
from kinema.flow import SAMPLERS, RectifiedFlowPath, get_schedule, guided_velocity_fn
from kinema.flow.samplers import StepCallback, truncate_schedule
from kinema.text.encoder import TextEmbedding
from kinema.vae import CausalVAE

if TYPE_CHECKING:
    from kinema.pipeline import SampleSettings
    from kinema.text.encoder import PromptEncoder

REFINER_CONFIG_NAME = "refiner.json"
GUIDES: tuple[str, ...] = ("pixel", "latent")


@dataclass
class RefinerConfig:
    """How a refiner turns a low-resolution clip into its conditioning (saved as ``refiner.json``).

    Attributes:
        scale_factor: spatial upscaling ``s`` (output is ``s h x s w``).
        guide: ``"pixel"`` (upsample pixels, then encode) or ``"latent"`` (encode, then upsample latents).
        noise_augmentation: fixed flow time ``a`` of the guide, ``cond = (1 - a) guide + a eps``;
            0 disables it. The same value must be used in training and sampling.
        detail_box: the refined clip keeps only detail finer than a ``detail_box`` x ``detail_box``
            box; everything coarser (colours, background, where objects are) comes from the
            bilinear-upsampled input (:func:`transfer_detail`). 0 keeps the refined clip as sampled.
        steps: default sampling steps of this refiner (``refine_steps`` overrides it).
        guidance: default text guidance of this refiner (``refine_guidance`` overrides it); the
            guide carries the content, so 1.0 (no unconditional pass) is the usual choice.
    """

    scale_factor: int = 2
    guide: Literal["pixel", "latent"] = "pixel"
    noise_augmentation: float = 0.1
    detail_box: int = 9
    steps: int = 10
    guidance: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.scale_factor, int) or self.scale_factor < 2:
            raise InvalidInputError(f"refiner.scale_factor={self.scale_factor!r} invalid; allowed: an integer >= 2")
        if self.guide not in GUIDES:
            raise InvalidInputError(f"refiner.guide={self.guide!r} invalid; allowed: {GUIDES}")
        if not 0.0 <= self.noise_augmentation < 1.0:
            raise InvalidInputError(f"refiner.noise_augmentation={self.noise_augmentation} invalid; allowed: 0 <= a < 1")
        if not isinstance(self.detail_box, int) or not (self.detail_box == 0 or (self.detail_box > 0 and self.detail_box % 2 == 1)):
            raise InvalidInputError(f"refiner.detail_box={self.detail_box!r} invalid; allowed: 0 (off) or an odd integer >= 1")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise InvalidInputError(f"refiner.steps={self.steps!r} invalid; allowed: an integer >= 1")
        if not self.guidance >= 1.0:
            raise InvalidInputError(f"refiner.guidance={self.guidance} invalid; allowed: >= 1")


def area_downsample(video: Tensor, factor: int) -> Tensor:
    """Exact ``factor x factor`` area average per frame: ``(b, c, f, h, w) -> (b, c, f, h / s, w / s)``."""
    h, w = video.shape[-2:]
    if h % factor or w % factor:
        raise InvalidInputError(f"video size {h}x{w} invalid for area downsampling by {factor}; allowed: multiples of {factor}")
    return F.avg_pool3d(video, kernel_size=(1, factor, factor))


def upsample_bilinear(x: Tensor, factor: int) -> Tensor:
    """Per-frame bilinear upsampling (``align_corners=False``): ``(b, c, f, h, w) -> (b, c, f, s h, s w)``."""
    b = x.shape[0]
    y = rearrange(x, "b c f h w -> (b f) c h w")
    y = F.interpolate(y, scale_factor=factor, mode="bilinear", align_corners=False)  # (b f, c, s h, s w)
    return rearrange(y, "(b f) c h w -> b c f h w", b=b)


def box_lowpass(video: Tensor, box: int) -> Tensor:
    """Per-frame ``box`` x ``box`` mean with edge replication: ``(b, c, f, h, w)`` -> same shape."""
    r = box // 2
    b = video.shape[0]
    x = rearrange(video, "b c f h w -> (b f) c h w")
    y = F.avg_pool2d(F.pad(x, (r, r, r, r), mode="replicate"), box, stride=1)  # (b f, c, h, w)
    return rearrange(y, "(b f) c h w -> b c f h w", b=b)


def transfer_detail(refined: Tensor, upsampled: Tensor, box: int) -> Tensor:
    """``refined - lowpass(refined) + lowpass(upsampled)``: the refiner's fine detail on the input's
    coarse structure, ``(b, c, f, H, W)`` in [-1, 1] (clamped).

    Measured on 30 held-out clips of the default model: the refined clip kept every tracker metric
    the base clip passes on 47% of clips; with a 9-pixel box, on 90%, at edge energy 1.51x
    bilinear instead of 1.60x.
    """
    if box <= 1:
        return refined
    return (refined - box_lowpass(refined, box) + box_lowpass(upsampled, box)).clamp(-1.0, 1.0)


def check_refiner_sizes(vae: CausalVAE, config: RefinerConfig, frames: int, low_height: int, low_width: int) -> None:
    """Raise :class:`InvalidInputError` unless a ``frames x low_height x low_width`` clip can be refined."""
    s = config.scale_factor
    try:
        vae.check_input_size(frames, low_height * s, low_width * s)
        if config.guide == "latent":
            vae.check_input_size(frames, low_height, low_width)
    except InvalidInputError as e:
        raise InvalidInputError(
            f"low-resolution clip {frames}x{low_height}x{low_width} cannot be refined {s}x with the {config.guide!r} guide: {e}"
        ) from e


@torch.no_grad()
def guide_latents(vae: CausalVAE, low_video: Tensor, config: RefinerConfig) -> Tensor:
    """Normalised guide latents ``(b, c, f', s h / S, s w / S)`` of ``low_video`` ``(b, 3, f, h, w)`` in [-1, 1]."""
    s = config.scale_factor
    if config.guide == "pixel":
        z = vae.encode(upsample_bilinear(low_video, s)).mode()  # (b, c, f', s h / S, s w / S)
        return vae.normalize(z.float())
    z = vae.normalize(vae.encode(low_video).mode().float())  # (b, c, f', h / S, w / S)
    return upsample_bilinear(z, s)


def augment_guide(guide: Tensor, level: float, generator: torch.Generator) -> Tensor:
    """``(1 - a) guide + a eps`` with ``eps`` drawn from ``generator`` (on ``guide``'s device)."""
    if level == 0.0:
        return guide
    eps = torch.randn(guide.shape, generator=generator, device=guide.device, dtype=guide.dtype)
    return (1.0 - level) * guide + level * eps


@torch.no_grad()
def refine_latents(
    refiner: DiT,
    vae: CausalVAE,
    low_video: Tensor,
    text: TextEmbedding,
    steps: int,
    seed: int,
    strength: float = 1.0,
    *,
    config: RefinerConfig | None = None,
    guidance: float = 1.0,
    negative: TextEmbedding | None = None,
    sampler: str = "euler",
    shift: float = 1.0,
    callback: StepCallback | None = None,
) -> Tensor:
    """Refine ``low_video`` ``(b, 3, f, h, w)`` in [-1, 1] to ``(b, 3, f, s h, s w)`` in [-1, 1].

    Args:
        refiner: the refiner DiT (its latent channels are ``vae``'s).
        vae: the VAE the refiner was trained against.
        text: the prompts, batch ``b``.
        steps: sampler steps over the full schedule (fewer run when ``strength < 1``).
        seed: seeds a CPU generator for the augmentation and sampling noise (same inputs, same output).
        strength: flow time sampling starts at; 1.0 starts from pure noise, smaller values start from
            the guide noised to ``strength`` (SDEdit) and keep more of the low-resolution clip.
        config: the refiner's ``refiner.json`` (:func:`load_refiner`); default ``RefinerConfig()``.
        guidance, negative: classifier-free guidance on the text (1.0 = conditional only).
        sampler: ``"euler"`` or ``"heun"``; shift: schedule time shift.
        callback: called after every sampler step (progress bars).
    """
    config = config or RefinerConfig()
    if low_video.ndim != 5 or low_video.shape[1] != 3:
        raise InvalidInputError(f"low_video shape {tuple(low_video.shape)} invalid; allowed: (b, 3, f, h, w)")
    if sampler not in SAMPLERS:
        raise InvalidInputError(f"sampler {sampler!r} unknown; allowed: {sorted(SAMPLERS)}")
    if refiner.config.in_channels != vae.config.latent_channels:
        raise InvalidInputError(f"refiner expects {refiner.config.in_channels} latent channels; the VAE has {vae.config.latent_channels}")
    b, _, f, h, w = (int(d) for d in low_video.shape)
    check_refiner_sizes(vae, config, f, h, w)
    device = next(refiner.parameters()).device
    generator = torch.Generator().manual_seed(int(seed))
    guide = guide_latents(vae, low_video.to(device), config).cpu()  # (b, c, f', H', W')
    cond = augment_guide(guide, config.noise_augmentation, generator)
    noise = torch.randn(guide.shape, generator=generator)  # (b, c, f', H', W')
    schedule = get_schedule(steps, shift=shift)
    if strength < 1.0:
        schedule = truncate_schedule(schedule, strength)
        x = RectifiedFlowPath().sample(guide, noise, torch.full((b,), float(schedule[0]))).x_t
    elif strength == 1.0:
        x = noise
    else:
        raise InvalidInputError(f"strength={strength} invalid; allowed: 0 < strength <= 1")
    mask = torch.ones(b, guide.shape[2], device=device)  # (b, f'): every latent frame is given as a guide
    velocity = guided_velocity_fn(refiner, text.to(device), None if negative is None else negative.to(device), guidance,
                                  cond_latents=cond.to(device), cond_mask=mask)
    latents = SAMPLERS[sampler](velocity, x.to(device), schedule, callback)  # (b, c, f', H', W')
    high = vae.decode(vae.denormalize(latents)).clamp(-1.0, 1.0)  # (b, 3, f, s h, s w)
    if config.detail_box <= 1:
        return high
    return transfer_detail(high, upsample_bilinear(low_video.to(high.device, high.dtype), config.scale_factor), config.detail_box)


def save_refiner_config(config: RefinerConfig, folder: str | Path) -> Path:
    """Write ``folder/refiner.json``."""
    return save_config(config, Path(folder) / REFINER_CONFIG_NAME)


def load_refiner(folder: str | Path, *, device: str | torch.device = "cpu") -> tuple[DiT, RefinerConfig]:
    """The refiner exported by ``kinema train refiner``: ``folder/refiner`` + ``folder/refiner.json``."""
    folder = Path(folder)
    path = folder / REFINER_CONFIG_NAME
    if not path.is_file():
        raise ModelLoadError(f"'{folder}' holds no {REFINER_CONFIG_NAME} (export of `kinema train refiner`)")
    config = read_json_config(RefinerConfig, path)
    return load_component(DiT, DiTConfig, folder / "refiner", device=device).eval(), config


class Refiner:
    """A refiner as shipped beside a pipeline: the refiner DiT, its VAE and its ``refiner.json``.

    Folder layout (the same as a refiner run's ``final/``): ``refiner/`` (DiT component),
    ``vae/`` (the VAE it was trained against) and ``refiner.json``.
    """

    def __init__(self, dit: DiT, vae: CausalVAE, config: RefinerConfig) -> None:
        self.dit = dit.eval()
        self.vae = vae.eval()
        self.config = config

    @classmethod
    def load(cls, folder: str | Path) -> Refiner:
        from kinema.vae import VAEConfig

        folder = Path(folder)
        dit, config = load_refiner(folder)
        vae = load_component(CausalVAE, VAEConfig, folder / "vae")
        return cls(dit, vae, config)

    def save(self, folder: str | Path, *, dtype: str = "float32") -> Path:
        from kinema.checkpoint import save_component

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_component(self.dit, folder / "refiner", dtype=dtype)
        save_component(self.vae, folder / "vae", dtype=dtype)
        save_refiner_config(self.config, folder)
        return folder

    def sampling(self, steps: int | None = None, guidance: float | None = None) -> tuple[int, float]:
        """``(steps, guidance)``: the given values, else the refiner's own (``refiner.json``)."""
        return (self.config.steps if steps is None else int(steps), self.config.guidance if guidance is None else float(guidance))

    @torch.no_grad()
    def refine(
        self,
        frames: np.ndarray,
        settings: SampleSettings,
        *,
        strength: float,
        text_encoder: PromptEncoder,
        steps: int | None = None,
        guidance: float | None = None,
    ) -> np.ndarray:
        """uint8 ``(f, h, w, 3)`` -> uint8 ``(f, s h, s w, 3)`` with the settings' prompt, seed and sampler.

        ``steps`` and ``guidance`` default to the refiner's own (``refiner.json``), not the base's.
        """
        from kinema.video import Video

        steps, guidance = self.sampling(steps, guidance)
        low = Video(frames, fps=settings.fps).to_tensor()  # (1, 3, f, h, w)
        text = text_encoder.encode([settings.prompt])
        negative = text_encoder.encode([settings.negative_prompt]) if guidance != 1.0 else None
        high = refine_latents(
            self.dit, self.vae, low, text, steps, settings.seed, strength,
            config=self.config, guidance=guidance, negative=negative, sampler=settings.sampler, callback=settings.callback,
        )  # (1, 3, f, s h, s w)
        return Video.from_tensor(high, fps=settings.fps).frames
