"""The causal 3D convolutional video VAE: encoder, decoder, diagonal Gaussian posterior.

Videos are ``(b, 3, f, h, w)`` in ``[-1, 1]`` with ``f = 1 + k * T`` and ``h, w`` multiples of
``S`` (``T = temporal_factor``, ``S = spatial_factor``); latents are ``(b, c, 1 + k, h / S, w / S)``.
Everything is causal in time, so encoding the first ``1 + j * T`` frames of a video gives the first
``1 + j`` latent frames of the whole video, and an image is a one-frame video.
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass
from numbers import Integral

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from kinema.errors import InvalidInputError
from kinema.vae.config import VAEConfig
from kinema.vae.layers import CausalConv3d, Downsample3d, ResBlock3d, Upsample3d, make_norm


class DiagonalGaussian:
    """Posterior ``N(mean, exp(logvar))`` over latents, per element.

    ``mean``, ``logvar``: ``(b, c, f', h', w')``; ``logvar`` is already clamped.
    """

    def __init__(self, mean: Tensor, logvar: Tensor) -> None:
        self.mean = mean
        self.logvar = logvar

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """A draw ``mean + std * eps`` (reparameterised, differentiable). ``(b, c, f', h', w')``."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> Tensor:
        """The most likely latent, ``mean``. ``(b, c, f', h', w')``."""
        return self.mean

    def kl(self) -> Tensor:
        """``KL(q || N(0, I))`` summed over every latent element, per sample. ``(b,)``."""
        kl = 0.5 * (self.mean.pow(2) + torch.exp(self.logvar) - 1.0 - self.logvar)  # (b, c, f', h', w')
        return kl.flatten(1).sum(dim=1)


@dataclass
class VAEOutput:
    """``recon``: ``(b, 3, f, h, w)`` decoded video; ``posterior``: the encoder's Gaussian."""

    recon: Tensor
    posterior: DiagonalGaussian


def _temporal_at(level: int, config: VAEConfig) -> bool:
    """Whether the resampling between level ``level`` and ``level + 1`` also resamples time."""
    return level < config.num_temporal_downsamples


def _run_block(block: nn.Module, h: Tensor, config: VAEConfig, training: bool) -> Tensor:
    """``block(h)``; with ``config.gradient_checkpointing`` (training, grad on) the block keeps only its
    input and is recomputed in the backward pass (same gradients, less activation memory)."""
    if config.gradient_checkpointing and training and torch.is_grad_enabled():
        return checkpoint(block, h, use_reentrant=False)
    return block(h)


class Level(nn.Sequential):
    """One resolution level: resnet blocks, then a resampler (none at the last level).

    Kept as the level's own ``forward`` (not unrolled by the caller) because each level is an FSDP
    unit; gradient checkpointing applies per block inside it.
    """

    def __init__(self, blocks: list[nn.Module], config: VAEConfig) -> None:
        super().__init__(*blocks)
        self.config = config  # shared with CausalVAE.config (gradient_checkpointing is read at run time)

    def forward(self, h: Tensor) -> Tensor:
        for block in self:
            h = _run_block(block, h, self.config, self.training)
        return h


class Encoder(nn.Module):
    """Video ``(b, 3, f, h, w)`` -> posterior moments ``(b, 2 * latent_channels, f', h', w')``."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config  # shared with CausalVAE.config (gradient_checkpointing is read at run time)
        ch = config.level_channels()
        norm, groups = config.norm, config.norm_groups
        self.conv_in = CausalConv3d(config.in_channels, ch[0], 3)
        self.levels = nn.ModuleList()
        for i, c in enumerate(ch):
            blocks: list[nn.Module] = [ResBlock3d(c, c, norm, groups) for _ in range(config.num_res_blocks)]
            if i < len(ch) - 1:
                blocks.append(Downsample3d(c, ch[i + 1], temporal=_temporal_at(i, config)))
            self.levels.append(Level(blocks, config))
        self.mid = ResBlock3d(ch[-1], ch[-1], norm, groups)
        self.norm_out = make_norm(norm, ch[-1], groups)
        self.conv_out = CausalConv3d(ch[-1], 2 * config.latent_channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)  # (b, ch0, f, h, w)
        for level in self.levels:
            h = level(h)
        h = _run_block(self.mid, h, self.config, self.training)  # (b, ch_last, f', h', w')
        return self.conv_out(F.silu(self.norm_out(h)))  # (b, 2c, f', h', w')


class Decoder(nn.Module):
    """Latents ``(b, latent_channels, f', h', w')`` -> video ``(b, 3, 1 + (f' - 1) * T, h' * S, w' * S)``."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config  # shared with CausalVAE.config (gradient_checkpointing is read at run time)
        ch = config.level_channels()
        norm, groups = config.norm, config.norm_groups
        self.conv_in = CausalConv3d(config.latent_channels, ch[-1], 3)
        self.mid = ResBlock3d(ch[-1], ch[-1], norm, groups)
        self.levels = nn.ModuleList()
        for i in reversed(range(len(ch))):  # lowest resolution first
            blocks: list[nn.Module] = [ResBlock3d(ch[i], ch[i], norm, groups) for _ in range(config.num_res_blocks)]
            if i > 0:
                blocks.append(Upsample3d(ch[i], ch[i - 1], temporal=_temporal_at(i - 1, config)))
            self.levels.append(Level(blocks, config))
        self.norm_out = make_norm(norm, ch[0], groups)
        self.conv_out = CausalConv3d(ch[0], config.in_channels, 3)

    def forward(self, z: Tensor) -> Tensor:
        h = _run_block(self.mid, self.conv_in(z), self.config, self.training)  # (b, ch_last, f', h', w')
        for level in self.levels:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (b, 3, f, h, w)


class CausalVAE(nn.Module):
    """Causal 3D convolutional video VAE (see the module docstring for the size rules).

    ``encode`` -> :class:`DiagonalGaussian`, ``decode`` -> video, ``forward`` -> :class:`VAEOutput`.
    The model never clamps its decoded output; callers map to pixels with ``clamp(-1, 1)``.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        config.validate()
        self.config = dataclasses.replace(config)  # own copy: presets are shared module-level objects
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)

    # ------------------------------------------------------------------ sizes
    def check_input_size(self, frames: int, height: int, width: int) -> None:
        """Raise :class:`InvalidInputError` unless ``frames = 1 + k * T`` and ``height, width`` are
        positive multiples of ``S``. The message names the value and the rule."""
        t, s = self.config.temporal_factor, self.config.spatial_factor
        if not isinstance(frames, Integral) or frames < 1 or (frames - 1) % t != 0:
            examples = ", ".join(str(1 + k * t) for k in range(3))
            raise InvalidInputError(f"frames={frames} invalid: must be 1 + k*{t} ({examples}, ...)")
        for name, value in (("height", height), ("width", width)):
            if not isinstance(value, Integral) or value < s or value % s != 0:
                raise InvalidInputError(
                    f"{name}={value} invalid: must be a positive multiple of {s} ({s}, {2 * s}, {3 * s}, ...)"
                )

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(c, f', h', w')`` of the latents of a ``frames x height x width`` video (validated)."""
        self.check_input_size(frames, height, width)
        t, s = self.config.temporal_factor, self.config.spatial_factor
        return (self.config.latent_channels, 1 + (frames - 1) // t, height // s, width // s)

    def video_shape(self, latent_frames: int, latent_height: int, latent_width: int) -> tuple[int, int, int, int]:
        """``(3, f, h, w)`` of the video decoded from ``f' x h' x w'`` latents."""
        sizes = {"latent_frames": latent_frames, "latent_height": latent_height, "latent_width": latent_width}
        for name, value in sizes.items():
            if value < 1:
                raise InvalidInputError(f"{name}={value} invalid: must be >= 1")
        t, s = self.config.temporal_factor, self.config.spatial_factor
        return (self.config.in_channels, 1 + (latent_frames - 1) * t, latent_height * s, latent_width * s)

    # ------------------------------------------------------------------ model
    def encode(self, video: Tensor) -> DiagonalGaussian:
        """Video ``(b, 3, f, h, w)`` in ``[-1, 1]`` -> posterior over ``(b, c, f', h', w')``."""
        if video.ndim != 5 or video.shape[1] != self.config.in_channels:
            raise InvalidInputError(
                f"video shape {tuple(video.shape)} invalid: must be (b, {self.config.in_channels}, f, h, w)"
            )
        self.check_input_size(*(int(d) for d in video.shape[2:]))
        moments = self.encoder(video)  # (b, 2c, f', h', w')
        mean, logvar = moments.chunk(2, dim=1)
        logvar = logvar.clamp(self.config.logvar_min, self.config.logvar_max)
        return DiagonalGaussian(mean, logvar)

    def decode(self, z: Tensor) -> Tensor:
        """Raw (un-normalised) latents ``(b, c, f', h', w')`` -> video ``(b, 3, 1 + (f' - 1) * T, h' * S, w' * S)``."""
        if z.ndim != 5 or z.shape[1] != self.config.latent_channels:
            raise InvalidInputError(
                f"latent shape {tuple(z.shape)} invalid: must be (b, {self.config.latent_channels}, f', h', w')"
            )
        self.video_shape(*(int(d) for d in z.shape[2:]))
        return self.decoder(z)

    def forward(
        self, video: Tensor, sample_posterior: bool = True, generator: torch.Generator | None = None
    ) -> VAEOutput:
        """Encode, sample (or take the mode), decode. ``recon`` has ``video``'s shape."""
        posterior = self.encode(video)
        z = posterior.sample(generator) if sample_posterior else posterior.mode()
        return VAEOutput(recon=self.decode(z), posterior=posterior)

    # ------------------------------------------------------------------ latent scaling
    def normalize(self, z: Tensor) -> Tensor:
        """Raw latents -> diffusion space: ``(z - shift_factor) * scaling_factor``."""
        return (z - self.config.shift_factor) * self.config.scaling_factor

    def denormalize(self, z: Tensor) -> Tensor:
        """Diffusion space -> raw latents: ``z / scaling_factor + shift_factor``."""
        return z / self.config.scaling_factor + self.config.shift_factor


def estimate_latent_scaling(latents: Tensor) -> tuple[float, float]:
    """``(scaling_factor, shift_factor)`` that give ``latents`` zero mean and unit variance.

    ``latents``: raw latents of any shape, e.g. ``(n, c, f', h', w')`` from the training set.
    Store the result in ``VAEConfig.scaling_factor`` / ``shift_factor``.
    """
    if latents.numel() < 2:
        raise InvalidInputError(f"latents with {latents.numel()} elements invalid: need at least 2")
    x = latents.detach().double()
    shift = float(x.mean())
    std = float(x.std())
    if not std > 0:
        raise InvalidInputError(f"latents std={std} invalid: must be > 0 to estimate a scaling factor")
    return 1.0 / std, shift
