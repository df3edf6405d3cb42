"""Building blocks of the DiT: embedders, attention, MLP, adaLN-zero block and final layer.

Shapes: ``b`` batch, ``n`` video tokens, ``l`` text tokens, ``d`` hidden size, ``e`` text-encoder
width, ``hd`` head dimension. The conditioning vector ``c`` ``(b, d)`` (timestep + pooled text)
drives every adaptive LayerNorm.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from kinema.dit.rope import apply_rope


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x * (1 + scale) + shift`` with ``x`` ``(b, n, d)`` and ``shift``/``scale`` ``(b, d)``."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class TimestepEmbedder(nn.Module):
    """Flow time ``t`` in [0, 1] -> ``(b, d)``: sinusoidal features of ``1000 t``, then an MLP."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256) -> None:
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    @staticmethod
    def sinusoidal(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        """``(b,)`` scalars -> ``(b, dim)`` float32 ``[cos(t f_k), sin(t f_k)]``, ``f_k = max_period^(-k/(dim/2))``."""
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t.float()[:, None] * freqs[None, :]  # (b, dim / 2)
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (b, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freq = self.sinusoidal(t * 1000.0, self.frequency_embedding_size)  # (b, 256)
        return self.mlp(freq.to(self.mlp[0].weight.dtype))  # (b, d)


class TextProjection(nn.Module):
    """Text-encoder states ``(b, l, e)`` -> ``(b, l, d)``: LayerNorm, Linear, GELU(tanh), Linear.

    The input LayerNorm puts any encoder's states on a common scale.
    """

    def __init__(self, text_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(text_dim, eps=1e-6)
        self.fc1 = nn.Linear(text_dim, hidden_size)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_size, hidden_size)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(text))))  # (b, l, d)


class PooledTextEmbedder(nn.Module):
    """Mean of the real text tokens ``(b, e)`` -> ``(b, d)``, added to the timestep embedding.

    A row with no real token pools to zeros.
    """

    def __init__(self, text_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(text_dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(text_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        m = text_mask.to(text.dtype)[:, :, None]  # (b, l, 1)
        pooled = (self.norm(text) * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)  # (b, e)
        return self.mlp(pooled)  # (b, d)


class SelfAttention(nn.Module):
    """Multi-head self-attention over video tokens with optional QK RMSNorm and 3D RoPE."""

    def __init__(self, hidden_size: int, num_heads: int, qk_norm: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = hidden_size // num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.q_norm = nn.RMSNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """``x`` ``(b, n, d)``, rotary ``cos``/``sin`` ``(n, hd/2)`` -> ``(b, n, d)``."""
        qkv = rearrange(self.qkv(x), "b n (k h e) -> k b h n e", k=3, h=self.num_heads)  # (3, b, h, n, hd)
        q, k, v = qkv.unbind(0)
        q = apply_rope(self.q_norm(q), cos, sin)
        k = apply_rope(self.k_norm(k), cos, sin)
        out = F.scaled_dot_product_attention(q, k, v)  # (b, h, n, hd)
        return self.proj(rearrange(out, "b h n e -> b n (h e)"))


class CrossAttention(nn.Module):
    """Video tokens attend to projected text tokens; padded text tokens are masked out.

    Keys and values depend on the text only, so `project_kv` can be computed once per prompt and
    reused over sampling steps.
    """

    def __init__(self, hidden_size: int, num_heads: int, qk_norm: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = hidden_size // num_heads
        self.q = nn.Linear(hidden_size, hidden_size)
        self.kv = nn.Linear(hidden_size, 2 * hidden_size)
        self.q_norm = nn.RMSNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.proj = nn.Linear(hidden_size, hidden_size)

    def project_kv(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected text ``(b, l, d)`` -> keys (normalised) and values, each ``(b, h, l, hd)``."""
        kv = rearrange(self.kv(text), "b l (k h e) -> k b h l e", k=2, h=self.num_heads)  # (2, b, h, l, hd)
        k, v = kv.unbind(0)
        return self.k_norm(k), v

    def forward(
        self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, text_mask: torch.Tensor
    ) -> torch.Tensor:
        """``x`` ``(b, n, d)``; ``k``, ``v`` ``(b, h, l, hd)``; ``text_mask`` ``(b, l)`` bool (True = real).

        A row whose text is all padding attends to nothing: its output is exactly zero (no NaN).
        """
        q = self.q_norm(rearrange(self.q(x), "b n (h e) -> b h n e", h=self.num_heads))  # (b, h, n, hd)
        has_text = text_mask.any(dim=1)  # (b,)
        # Let empty rows attend everywhere (finite softmax), then zero their output below.
        attn_mask = (text_mask | ~has_text[:, None])[:, None, None, :]  # (b, 1, 1, l)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (b, h, n, hd)
        out = out * has_text.to(out.dtype)[:, None, None, None]
        return self.proj(rearrange(out, "b h n e -> b n (h e)"))


class Mlp(nn.Module):
    """Position-wise feed-forward: Linear, GELU(tanh), Linear."""

    def __init__(self, hidden_size: int, mlp_ratio: float) -> None:
        super().__init__()
        inner = int(hidden_size * mlp_ratio)
        self.fc1 = nn.Linear(hidden_size, inner)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(inner, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    """adaLN-zero transformer block: self-attention (RoPE), cross-attention to text, MLP.

    ``x = x + g1 * SelfAttn(modulate(LN(x), s1, a1))``
    ``x = x + g2 * CrossAttn(LN'(x), text)``           (``g2`` = 1 without ``cross_attn_gate``)
    ``x = x + g3 * Mlp(modulate(LN(x), s3, a3))``

    All shifts, scales and gates come from one linear map of ``c``; it is zero-initialised by the
    model, so every block starts as the identity.
    """

    def __init__(
        self, hidden_size: int, num_heads: int, mlp_ratio: float, qk_norm: bool = True, cross_attn_gate: bool = True
    ) -> None:
        super().__init__()
        self.cross_attn_gate = cross_attn_gate
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(hidden_size, num_heads, qk_norm)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=True, eps=1e-6)
        self.cross_attn = CrossAttention(hidden_size, num_heads, qk_norm)
        self.norm3 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, mlp_ratio)
        self.num_modulations = 7 if cross_attn_gate else 6
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, self.num_modulations * hidden_size))

    def forward(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        text_k: torch.Tensor,
        text_v: torch.Tensor,
        text_mask: torch.Tensor,
    ) -> torch.Tensor:
        """``x`` ``(b, n, d)``, ``c`` ``(b, d)``, rotary ``cos``/``sin`` ``(n, hd/2)``,
        text K/V ``(b, h, l, hd)``, ``text_mask`` ``(b, l)`` -> ``(b, n, d)``."""
        mods = self.adaLN_modulation(c).chunk(self.num_modulations, dim=-1)  # each (b, d)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods[:6]
        x = x + gate_msa[:, None] * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), cos, sin)
        cross = self.cross_attn(self.norm2(x), text_k, text_v, text_mask)  # (b, n, d)
        x = x + (mods[6][:, None] * cross if self.cross_attn_gate else cross)
        x = x + gate_mlp[:, None] * self.mlp(modulate(self.norm3(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    """adaLN then a linear map to patch values ``(b, n, c * pt * ph * pw)``; zero-initialised by the model."""

    def __init__(self, hidden_size: int, out_features: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.linear = nn.Linear(hidden_size, out_features)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)  # each (b, d)
        return self.linear(modulate(self.norm_final(x), shift, scale))  # (b, n, c * pt * ph * pw)


__all__ = [
    "CrossAttention",
    "DiTBlock",
    "FinalLayer",
    "Mlp",
    "PooledTextEmbedder",
    "SelfAttention",
    "TextProjection",
    "TimestepEmbedder",
    "modulate",
]
