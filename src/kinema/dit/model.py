"""The diffusion transformer: noisy latent video + flow time + text -> velocity.

Pipeline of one forward pass::

    [x_t, cond * m, m]  (b, 2c+1, f, h, w)      m = cond_mask broadcast to (b, 1, f, h, w)
      -> patchify (pt, ph, pw) -> Linear       (b, n, d)
      -> depth x DiTBlock(c_vec, 3D RoPE, text K/V)
      -> FinalLayer -> unpatchify               (b, c, f, h, w) velocity

``c_vec = TimestepEmbedder(t) + PooledTextEmbedder(text)`` drives every adaLN. Every conditioning
mode (image-to-video, extension, loop, connect) is "these latent frames are given": ``cond_mask``
marks given latent frames and ``cond_latents`` holds their clean values.
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from kinema.dit.blocks import DiTBlock, FinalLayer, PooledTextEmbedder, TextProjection, TimestepEmbedder
from kinema.dit.config import DiTConfig
from kinema.dit.patch import patch_grid, patchify, unpatchify
from kinema.dit.rope import Rope3D
from kinema.errors import InvalidInputError


@dataclass
class TextCache:
    """Text-only work of a forward pass, computed once by `DiT.prepare_text` and reused over steps.

    Attributes:
        tokens: projected text ``(b, l, d)``.
        mask: ``(b, l)`` bool, True = real token.
        pooled: pooled-text embedding ``(b, d)`` added to the timestep embedding.
        kv: per block, cross-attention keys (normalised) and values, each ``(b, heads, l, hd)``.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor
    kv: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]


class DiT(nn.Module):
    """Spacetime-patch diffusion transformer with adaLN-zero blocks, 3D RoPE and text cross-attention.

    At initialisation every adaLN modulation and the output projection are zero, so the blocks are
    identities and the predicted velocity is exactly zero (DiT's adaLN-zero).
    """

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        config.validate()
        self.config = dataclasses.replace(config)  # own copy: presets are shared module-level objects
        d = config.hidden_size
        self.x_embedder = nn.Linear(config.input_channels * config.patch_volume, d)
        self.t_embedder = TimestepEmbedder(d, config.frequency_embedding_size)
        self.text_embedder = TextProjection(config.text_dim, d)
        self.pooled_text_embedder = PooledTextEmbedder(config.text_dim, d)
        self.rope = Rope3D(config.axes_dim, config.rope_theta)
        self.blocks = nn.ModuleList(
            DiTBlock(d, config.num_heads, config.mlp_ratio, config.qk_norm, config.cross_attn_gate)
            for _ in range(config.depth)
        )
        self.final_layer = FinalLayer(d, config.in_channels * config.patch_volume)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier-uniform linears with zero bias; N(0, 0.02) timestep MLP; zero adaLN and output."""

        def _basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        self.apply(_basic_init)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
            if not block.cross_attn_gate:  # keep the block an identity at init without the gate
                nn.init.zeros_(block.cross_attn.proj.weight)
                nn.init.zeros_(block.cross_attn.proj.bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    # ------------------------------------------------------------------ helpers

    def num_tokens(self, frames: int, height: int, width: int) -> int:
        """Tokens for a latent of ``frames x height x width``; raises `InvalidInputError` if not patchable."""
        f, h, w = patch_grid(frames, height, width, self.config.patch_size)
        return f * h * w

    def param_count(self, trainable_only: bool = False) -> int:
        """Number of parameters (only those with ``requires_grad`` if ``trainable_only``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    @property
    def dtype(self) -> torch.dtype:
        return self.x_embedder.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.x_embedder.weight.device

    # ------------------------------------------------------------------ text

    def prepare_text(self, text: torch.Tensor, text_mask: torch.Tensor) -> TextCache:
        """Project text and compute every block's cross-attention K/V.

        Args:
            text: ``(b, l, text_dim)`` text-encoder states.
            text_mask: ``(b, l)`` bool, True = real token.

        Returns:
            A `TextCache` to pass to `forward` as ``text_cache=`` at every sampling step.
        """
        if text.ndim != 3 or text.shape[-1] != self.config.text_dim:
            raise InvalidInputError(
                f"text has shape {tuple(text.shape)}; expected (b, l, {self.config.text_dim}) (text_dim)"
            )
        if tuple(text_mask.shape) != tuple(text.shape[:2]):
            raise InvalidInputError(
                f"text_mask has shape {tuple(text_mask.shape)}; expected {tuple(text.shape[:2])} (b, l) like text"
            )
        text = text.to(self.dtype)
        mask = text_mask.to(device=text.device, dtype=torch.bool)
        tokens = self.text_embedder(text)  # (b, l, d)
        pooled = self.pooled_text_embedder(text, mask)  # (b, d)
        kv = [block.cross_attn.project_kv(tokens) for block in self.blocks]  # depth x 2 x (b, h, l, hd)
        return TextCache(tokens=tokens, mask=mask, pooled=pooled, kv=kv)

    # ------------------------------------------------------------------ forward

    def conditioning_input(
        self, x: torch.Tensor, cond_latents: torch.Tensor | None, cond_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """``[x_t, cond * m, m]`` ``(b, 2c + 1, f, h, w)``; zeros for the last two without conditioning."""
        b, c, f, h, w = x.shape
        if (cond_latents is None) != (cond_mask is None):
            raise InvalidInputError(
                "cond_latents and cond_mask must be given together; got "
                f"cond_latents={'None' if cond_latents is None else tuple(cond_latents.shape)}, "
                f"cond_mask={'None' if cond_mask is None else tuple(cond_mask.shape)}"
            )
        if cond_latents is None or cond_mask is None:
            return torch.cat([x, x.new_zeros(b, c + 1, f, h, w)], dim=1)
        if tuple(cond_latents.shape) != tuple(x.shape):
            raise InvalidInputError(
                f"cond_latents has shape {tuple(cond_latents.shape)}; expected {tuple(x.shape)} like x"
            )
        if tuple(cond_mask.shape) != (b, f):
            raise InvalidInputError(f"cond_mask has shape {tuple(cond_mask.shape)}; expected (b, f) = {(b, f)}")
        m = cond_mask.to(x.dtype)[:, None, :, None, None].expand(b, 1, f, h, w)  # (b, 1, f, h, w)
        return torch.cat([x, cond_latents.to(x.dtype) * m, m], dim=1)  # (b, 2c + 1, f, h, w)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor | float,
        text: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        cond_latents: torch.Tensor | None = None,
        cond_mask: torch.Tensor | None = None,
        *,
        text_cache: TextCache | None = None,
    ) -> torch.Tensor:
        """Predict the flow velocity ``v = noise - x_0``.

        Args:
            x: ``(b, c, f, h, w)`` noisy latents ``x_t``.
            t: ``(b,)`` flow time in [0, 1] (1 = pure noise); a scalar is broadcast over the batch.
            text: ``(b, l, text_dim)`` text states; may be None when ``text_cache`` is given.
            text_mask: ``(b, l)`` bool, True = real token.
            cond_latents: ``(b, c, f, h, w)`` clean latents of the given frames, or None.
            cond_mask: ``(b, f)`` float/bool, 1 = latent frame given, or None.
            text_cache: result of `prepare_text` (used instead of ``text``/``text_mask``).

        Returns:
            ``(b, c, f, h, w)`` velocity in ``x.dtype``.
        """
        cfg = self.config
        if x.ndim != 5 or x.shape[1] != cfg.in_channels:
            raise InvalidInputError(
                f"x has shape {tuple(x.shape)}; expected (b, {cfg.in_channels}, f, h, w) "
                f"(in_channels={cfg.in_channels})"
            )
        b, c = x.shape[:2]
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(b)
        if tuple(t.shape) != (b,):
            raise InvalidInputError(f"t has shape {tuple(t.shape)}; expected ({b},) or a scalar")
        if text_cache is None:
            if text is None or text_mask is None:
                raise InvalidInputError("DiT.forward needs text and text_mask, or text_cache from prepare_text")
            text_cache = self.prepare_text(text, text_mask)
        if text_cache.batch_size != b:
            raise InvalidInputError(f"text batch size {text_cache.batch_size} does not match x batch size {b}")

        inp = self.conditioning_input(x.to(self.dtype), cond_latents, cond_mask)  # (b, 2c+1, f, h, w)
        tokens, grid = patchify(inp, cfg.patch_size)  # (b, n, (2c+1) pt ph pw)
        h = self.x_embedder(tokens)  # (b, n, d)
        cos, sin = self.rope(grid, x.device)  # each (n, hd/2)
        cvec = self.t_embedder(t) + text_cache.pooled  # (b, d)

        use_checkpoint = cfg.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for block, (k, v) in zip(self.blocks, text_cache.kv):
            if use_checkpoint:
                h = checkpoint(block, h, cvec, cos, sin, k, v, text_cache.mask, use_reentrant=False)
            else:
                h = block(h, cvec, cos, sin, k, v, text_cache.mask)  # (b, n, d)
        out = self.final_layer(h, cvec)  # (b, n, c pt ph pw)
        return unpatchify(out, grid, cfg.patch_size, c).to(x.dtype)  # (b, c, f, h, w)


__all__ = ["DiT", "TextCache"]
