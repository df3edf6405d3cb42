"""Configuration of the causal 3D convolutional VAE, with named presets as data.

A video ``(b, 3, f, h, w)`` with ``f = 1 + k * temporal_factor`` and ``h, w`` multiples of
``spatial_factor`` maps to latents ``(b, latent_channels, 1 + k, h / s, w / s)``. Frame 0 is
encoded on its own, so an image is a one-frame video.

The encoder has one resolution level per entry of ``channel_mults`` (level ``i`` has
``base_channels * channel_mults[i]`` channels) and halves height and width between levels, so
``len(channel_mults) == 1 + log2(spatial_factor)``. Time is halved at the first
``log2(temporal_factor)`` downsamples (the high-resolution ones, where fewer frames make the
expensive levels cheaper); the decoder mirrors this.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from kinema.errors import InvalidInputError

SPATIAL_FACTORS: tuple[int, ...] = (4, 8)
TEMPORAL_FACTORS: tuple[int, ...] = (1, 2, 4)
NORMS: tuple[str, ...] = ("group", "rms")


@dataclass
class VAEConfig:
    """Hyper-parameters of :class:`kinema.vae.CausalVAE`.

    ``scaling_factor`` and ``shift_factor`` map raw latents to roughly unit variance for the
    diffusion model: ``normalize(z) = (z - shift_factor) * scaling_factor``. They are measured on
    training latents after the VAE is trained (see :func:`kinema.vae.estimate_latent_scaling`).
    """

    in_channels: int = 3
    latent_channels: int = 16
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 4, 4)  # one per resolution level, full resolution first
    spatial_factor: int = 8  # 4 | 8
    temporal_factor: int = 4  # 1 | 2 | 4
    num_res_blocks: int = 1  # residual blocks per level (encoder and decoder alike)
    norm: Literal["group", "rms"] = "group"  # per-frame GroupNorm, or RMS norm over channels per voxel
    norm_groups: int = 8  # GroupNorm groups (capped at the channel count); unused for "rms"
    logvar_min: float = -30.0  # posterior log-variance clamp
    logvar_max: float = 20.0
    scaling_factor: float = 1.0
    shift_factor: float = 0.0
    gradient_checkpointing: bool = False  # recompute each resnet block / resampler in the backward pass while training

    def __post_init__(self) -> None:
        # JSON round trips turn tuples into lists; keep the declared type.
        self.channel_mults = tuple(int(m) for m in self.channel_mults)
        self.validate()

    # ------------------------------------------------------------------ derived sizes
    @property
    def num_levels(self) -> int:
        """Resolution levels: ``1 + log2(spatial_factor)``."""
        return len(self.channel_mults)

    @property
    def num_temporal_downsamples(self) -> int:
        """``log2(temporal_factor)``: how many of the downsamples also halve time."""
        return self.temporal_factor.bit_length() - 1

    def level_channels(self) -> list[int]:
        """Channels at each level, full resolution first."""
        return [self.base_channels * m for m in self.channel_mults]

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise :class:`InvalidInputError` naming the bad field, its value and the allowed values."""
        for name in ("in_channels", "latent_channels", "base_channels", "num_res_blocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"VAEConfig.{name}={value!r} invalid: must be an integer >= 1")
        if self.spatial_factor not in SPATIAL_FACTORS:
            raise InvalidInputError(
                f"VAEConfig.spatial_factor={self.spatial_factor!r} invalid: allowed values are {SPATIAL_FACTORS}"
            )
        if self.temporal_factor not in TEMPORAL_FACTORS:
            raise InvalidInputError(
                f"VAEConfig.temporal_factor={self.temporal_factor!r} invalid: allowed values are {TEMPORAL_FACTORS}"
            )
        expected_levels = 1 + self.spatial_factor.bit_length() - 1
        if len(self.channel_mults) != expected_levels:
            raise InvalidInputError(
                f"VAEConfig.channel_mults={self.channel_mults!r} invalid: spatial_factor={self.spatial_factor} "
                f"needs exactly {expected_levels} entries (1 + log2(spatial_factor)), got {len(self.channel_mults)}"
            )
        if any(m < 1 for m in self.channel_mults):
            raise InvalidInputError(
                f"VAEConfig.channel_mults={self.channel_mults!r} invalid: every multiplier must be >= 1"
            )
        if self.norm not in NORMS:
            raise InvalidInputError(f"VAEConfig.norm={self.norm!r} invalid: allowed values are {NORMS}")
        if self.norm == "group":
            for ch in self.level_channels():
                groups = min(self.norm_groups, ch)
                if self.norm_groups < 1 or ch % groups != 0:
                    raise InvalidInputError(
                        f"VAEConfig.norm_groups={self.norm_groups!r} invalid: must be >= 1 and divide every "
                        f"level's channel count {self.level_channels()} (or exceed it)"
                    )
        if not self.logvar_min < self.logvar_max:
            raise InvalidInputError(
                f"VAEConfig.logvar_min={self.logvar_min} / logvar_max={self.logvar_max} invalid: need min < max"
            )
        if not self.scaling_factor > 0:
            raise InvalidInputError(f"VAEConfig.scaling_factor={self.scaling_factor!r} invalid: must be > 0")

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (``channel_mults`` as a list)."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["channel_mults"] = list(self.channel_mults)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VAEConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`InvalidInputError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(f"VAEConfig: unknown keys {unknown}; allowed keys are {sorted(known)}")
        return cls(**data)


VAE_PRESETS: dict[str, VAEConfig] = {
    # Unit tests: ~29k parameters, 4x spatial, 2x temporal.
    "tiny": VAEConfig(
        latent_channels=4,
        base_channels=4,
        channel_mults=(1, 1, 2),
        spatial_factor=4,
        temporal_factor=2,
        num_res_blocks=1,
        norm_groups=2,
    ),
    # The CPU-trained default model: 64x64x33 -> 16x9x8x8 latents (~48x compression), ~2.7M params,
    # decode of that clip ~0.17 s on 2 CPU threads.
    "small": VAEConfig(
        latent_channels=16,
        base_channels=16,
        channel_mults=(1, 2, 4, 4),
        spatial_factor=8,
        temporal_factor=4,
        num_res_blocks=1,
        norm_groups=8,
    ),
    # GPU training at larger sizes: ~59M params.
    "base": VAEConfig(
        latent_channels=16,
        base_channels=64,
        channel_mults=(1, 2, 4, 4),
        spatial_factor=8,
        temporal_factor=4,
        num_res_blocks=2,
        norm_groups=32,
    ),
}


def vae_preset(name: str, **overrides: Any) -> VAEConfig:
    """A copy of ``VAE_PRESETS[name]`` with ``overrides`` applied (validated)."""
    if name not in VAE_PRESETS:
        raise InvalidInputError(f"VAE preset {name!r} unknown: allowed values are {sorted(VAE_PRESETS)}")
    known = {f.name for f in fields(VAEConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InvalidInputError(f"VAEConfig: unknown keys {unknown}; allowed keys are {sorted(known)}")
    return replace(VAE_PRESETS[name], **overrides)
