"""3D rotary position embedding over (frame, row, column).

Each head of dimension ``d`` is split into three parts ``(d_f, d_r, d_c)``. Within part ``a``, the
channel pair ``(2j, 2j+1)`` is rotated by the angle ``p_a * theta^(-2j / d_a)``, where ``p_a`` is the
token's coordinate on that axis. Rotating both queries and keys makes ``q(p) . k(p')`` depend only on
``p - p'``, so the same weights serve any number of frames, rows and columns.
"""

from __future__ import annotations

import torch
from torch import nn

from kinema.dit.patch import Grid, position_ids


def rope_angles(positions: torch.Tensor, axes_dim: tuple[int, int, int], theta: float) -> torch.Tensor:
    """Rotation angles for every token and channel pair.

    Args:
        positions: ``(n, 3)`` coordinates (frame, row, column); integer or fractional.
        axes_dim: rotary dimensions per axis, each even; they sum to the head dimension ``d``.
        theta: base period.

    Returns:
        ``(n, d / 2)`` float32 angles, axis parts concatenated in (frame, row, column) order.
    """
    parts = []
    for axis, dim in enumerate(axes_dim):
        exponent = torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim
        inv_freq = theta ** (-exponent)  # (dim / 2,)
        parts.append(positions[:, axis].to(torch.float64)[:, None] * inv_freq[None, :])  # (n, dim / 2)
    return torch.cat(parts, dim=-1).to(torch.float32)  # (n, d / 2)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs of ``x`` ``(b, heads, n, d)`` by angles with ``cos``/``sin`` ``(n, d/2)``.

    The rotation is computed in at least float32 and cast back to ``x.dtype``.
    """
    xf = x.to(torch.promote_types(x.dtype, torch.float32)).unflatten(-1, (-1, 2))  # (b, heads, n, d/2, 2)
    x1, x2 = xf[..., 0], xf[..., 1]  # (b, heads, n, d/2)
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (b, heads, n, d/2, 2)
    return out.flatten(-2).to(x.dtype)  # (b, heads, n, d)


class Rope3D(nn.Module):
    """Cos/sin tables for a token grid, cached per ``(grid, device)``.

    The cache holds plain tensors (no buffers), so it never enters the state dict; it is cleared
    when it holds ``max_cached_grids`` grids (training buckets use a handful).
    """

    max_cached_grids = 64

    def __init__(self, axes_dim: tuple[int, int, int], theta: float) -> None:
        super().__init__()
        self.axes_dim = tuple(axes_dim)
        self.theta = float(theta)
        self._cache: dict[tuple[Grid, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def forward(self, grid: Grid, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(cos, sin)``, each ``(F*H*W, head_dim / 2)`` float32 on ``device``."""
        key = (tuple(grid), str(device))
        cached = self._cache.get(key)
        if cached is None:
            if len(self._cache) >= self.max_cached_grids:
                self._cache.clear()
            angles = rope_angles(position_ids(grid, device=device), self.axes_dim, self.theta)  # (n, d/2)
            cached = (angles.cos(), angles.sin())
            self._cache[key] = cached
        return cached

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def, override]
        # Moving the module (to(), cuda(), half()) invalidates the cached tables.
        self._cache.clear()
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:
        return f"axes_dim={self.axes_dim}, theta={self.theta}"


__all__ = ["Rope3D", "apply_rope", "rope_angles"]
