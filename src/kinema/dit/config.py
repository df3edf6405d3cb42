"""Configuration of the diffusion transformer (`DiTConfig`) and its named presets.

Sizes (``DiT(config).param_count()``; ``in_channels=16`` = VAE ``small``/``base`` latents unless noted):

| preset | hidden | depth | heads | head_dim | mlp | params  | use                              |
|--------|--------|-------|-------|----------|-----|---------|----------------------------------|
| tiny   | 32     | 2     | 2     | 16       | 4.0 | 0.090 M | unit tests (in_channels=4)       |
| small  | 192    | 6     | 3     | 64       | 4.0 | 5.54 M  | CPU default-model candidate      |
| base   | 320    | 10    | 5     | 64       | 4.0 | 24.5 M  | larger CPU / small-GPU model     |
| large  | 768    | 16    | 12    | 64       | 4.0 | 221 M   | GPU                              |

Each attention head of dimension ``head_dim`` is split into three rotary parts (frame, row,
column). By default the split is ``(head_dim / 4, 3 head_dim / 8, 3 head_dim / 8)``, which needs
``head_dim`` divisible by 16; ``rope_axes_dim`` gives any other split of even parts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from kinema.errors import InvalidInputError


@dataclass
class DiTConfig:
    """Hyper-parameters of `kinema.dit.DiT`.

    Attributes:
        in_channels: latent channels ``c`` of the VAE (the model's input and output channels).
        patch_size: spacetime patch ``(pt, ph, pw)`` in latent frames, rows and columns.
        hidden_size: transformer width ``d``.
        depth: number of transformer blocks.
        num_heads: attention heads; ``hidden_size / num_heads`` is the head dimension.
        mlp_ratio: MLP hidden width as a multiple of ``hidden_size``.
        text_dim: width of the text-encoder states fed to cross-attention.
        qk_norm: RMS-normalise queries and keys (self- and cross-attention) before attending.
        cross_attn_gate: gate the cross-attention residual with an adaLN gate (zero at init).
        rope_theta: base period of the rotary frequencies.
        rope_axes_dim: per-head split ``(frame, row, column)`` of the rotary dimensions
            (each even, summing to the head dimension); ``None`` = ``(hd/4, 3hd/8, 3hd/8)``.
        frequency_embedding_size: width of the sinusoidal timestep features.
        gradient_checkpointing: recompute each block in the backward pass while training.
    """

    in_channels: int = 16
    patch_size: tuple[int, int, int] = (1, 2, 2)
    hidden_size: int = 192
    depth: int = 6
    num_heads: int = 3
    mlp_ratio: float = 4.0
    text_dim: int = 384
    qk_norm: bool = True
    cross_attn_gate: bool = True
    rope_theta: float = 10000.0
    rope_axes_dim: tuple[int, int, int] | None = None
    frequency_embedding_size: int = 256
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        # JSON round trips turn tuples into lists; store tuples so configs compare equal.
        self.patch_size = tuple(int(p) for p in self.patch_size)  # type: ignore[assignment]
        if self.rope_axes_dim is not None:
            self.rope_axes_dim = tuple(int(a) for a in self.rope_axes_dim)  # type: ignore[assignment]
        self.validate()

    @property
    def head_dim(self) -> int:
        """Dimension of one attention head."""
        return self.hidden_size // self.num_heads

    @property
    def axes_dim(self) -> tuple[int, int, int]:
        """Rotary dimensions per axis ``(frame, row, column)``; they sum to ``head_dim``."""
        if self.rope_axes_dim is not None:
            return self.rope_axes_dim
        hd = self.head_dim
        return (hd // 4, 3 * hd // 8, 3 * hd // 8)

    @property
    def patch_volume(self) -> int:
        """Latent elements per token and channel, ``pt * ph * pw``."""
        pt, ph, pw = self.patch_size
        return pt * ph * pw

    @property
    def input_channels(self) -> int:
        """Channels entering the patch embedding: ``[x_t, cond * mask, mask]`` = ``2c + 1``."""
        return 2 * self.in_channels + 1

    def validate(self) -> None:
        """Raise `InvalidInputError` naming the first invalid value and its allowed range."""
        for name in ("in_channels", "hidden_size", "depth", "num_heads", "text_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"DiTConfig.{name}={value!r} is invalid; allowed: an integer >= 1")
        if len(self.patch_size) != 3 or any(p < 1 for p in self.patch_size):
            raise InvalidInputError(
                f"DiTConfig.patch_size={self.patch_size!r} is invalid; allowed: three integers >= 1 (pt, ph, pw)"
            )
        if self.hidden_size % self.num_heads != 0:
            raise InvalidInputError(
                f"DiTConfig.hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}; "
                "allowed: hidden_size a multiple of num_heads"
            )
        if not self.mlp_ratio > 0:
            raise InvalidInputError(f"DiTConfig.mlp_ratio={self.mlp_ratio!r} is invalid; allowed: > 0")
        if not self.rope_theta > 0:
            raise InvalidInputError(f"DiTConfig.rope_theta={self.rope_theta!r} is invalid; allowed: > 0")
        fe = self.frequency_embedding_size
        if fe < 2 or fe % 2 != 0:
            raise InvalidInputError(
                f"DiTConfig.frequency_embedding_size={fe} is invalid; allowed: an even integer >= 2"
            )
        hd = self.head_dim
        if self.rope_axes_dim is None:
            if hd % 16 != 0:
                raise InvalidInputError(
                    f"DiTConfig head_dim={hd} (hidden_size={self.hidden_size} / num_heads={self.num_heads}) "
                    "cannot be split into 3D RoPE parts (hd/4, 3hd/8, 3hd/8); allowed: head_dim a multiple "
                    "of 16, or set rope_axes_dim explicitly"
                )
        else:
            axes = self.rope_axes_dim
            if len(axes) != 3 or any(a < 2 or a % 2 != 0 for a in axes) or sum(axes) != hd:
                raise InvalidInputError(
                    f"DiTConfig.rope_axes_dim={axes!r} is invalid for head_dim={hd}; allowed: three even "
                    f"integers >= 2 summing to {hd}"
                )


DIT_PRESETS: dict[str, DiTConfig] = {
    "tiny": DiTConfig(in_channels=4, hidden_size=32, depth=2, num_heads=2, mlp_ratio=4.0),
    "small": DiTConfig(in_channels=16, hidden_size=192, depth=6, num_heads=3, mlp_ratio=4.0),
    "base": DiTConfig(in_channels=16, hidden_size=320, depth=10, num_heads=5, mlp_ratio=4.0),
    "large": DiTConfig(in_channels=16, hidden_size=768, depth=16, num_heads=12, mlp_ratio=4.0),
}


def dit_preset(name: str, **overrides: object) -> DiTConfig:
    """A copy of preset ``name`` with ``overrides`` applied (e.g. ``in_channels=16``)."""
    if name not in DIT_PRESETS:
        raise InvalidInputError(f"unknown DiT preset {name!r}; allowed: {sorted(DIT_PRESETS)}")
    return replace(DIT_PRESETS[name], **overrides)  # type: ignore[arg-type]


__all__ = ["DIT_PRESETS", "DiTConfig", "dit_preset"]
