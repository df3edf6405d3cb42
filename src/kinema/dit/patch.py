"""Spacetime patches: latent video <-> token sequence, and the tokens' 3D positions.

A latent video ``(b, c, f, h, w)`` is cut into non-overlapping ``pt x ph x pw`` patches. The token
grid is ``(F, H, W) = (f / pt, h / ph, w / pw)``; tokens are ordered frame-major, then row, then
column, i.e. token ``i = (fi * H + hi) * W + wi``. `position_ids` gives the same order, so token
``i`` sits at ``(fi, hi, wi)`` for the 3D rotary embedding.
"""

from __future__ import annotations

import torch
from einops import rearrange

from kinema.errors import InvalidInputError

Grid = tuple[int, int, int]
Patch = tuple[int, int, int]


def patch_grid(frames: int, height: int, width: int, patch: Patch) -> Grid:
    """Token grid ``(F, H, W)`` for a latent of ``frames x height x width``.

    Raises:
        InvalidInputError: if a latent size is < 1 or not divisible by its patch size.
    """
    grid = []
    for name, size, p in zip(("frames", "height", "width"), (frames, height, width), patch):
        if size < 1 or size % p != 0:
            raise InvalidInputError(
                f"latent {name}={size} is not divisible by the DiT patch size {p} (patch_size={tuple(patch)}); "
                f"allowed: a positive multiple of {p}"
            )
        grid.append(size // p)
    return (grid[0], grid[1], grid[2])


def patchify(x: torch.Tensor, patch: Patch) -> tuple[torch.Tensor, Grid]:
    """Cut a latent video into spacetime patch tokens.

    Args:
        x: ``(b, c, f, h, w)`` latent video.
        patch: ``(pt, ph, pw)``.

    Returns:
        tokens ``(b, n, c * pt * ph * pw)`` with ``n = F * H * W``, and the grid ``(F, H, W)``.
    """
    if x.ndim != 5:
        raise InvalidInputError(f"patchify expects a 5D latent (b, c, f, h, w); got shape {tuple(x.shape)}")
    grid = patch_grid(x.shape[2], x.shape[3], x.shape[4], patch)
    pt, ph, pw = patch
    tokens = rearrange(x, "b c (f pt) (h ph) (w pw) -> b (f h w) (c pt ph pw)", pt=pt, ph=ph, pw=pw)
    return tokens, grid


def unpatchify(tokens: torch.Tensor, grid: Grid, patch: Patch, channels: int) -> torch.Tensor:
    """Inverse of `patchify`: tokens ``(b, F*H*W, c*pt*ph*pw)`` -> latent ``(b, c, f, h, w)``."""
    f, h, w = grid
    pt, ph, pw = patch
    expected = (f * h * w, channels * pt * ph * pw)
    if tokens.ndim != 3 or tuple(tokens.shape[1:]) != expected:
        raise InvalidInputError(
            f"unpatchify got tokens of shape {tuple(tokens.shape)}; expected (b, {expected[0]}, {expected[1]}) "
            f"for grid={tuple(grid)}, patch={tuple(patch)}, channels={channels}"
        )
    return rearrange(
        tokens, "b (f h w) (c pt ph pw) -> b c (f pt) (h ph) (w pw)", f=f, h=h, w=w, c=channels, pt=pt, ph=ph, pw=pw
    )


def position_ids(grid: Grid, device: torch.device | str | None = None) -> torch.Tensor:
    """Integer ``(frame, row, column)`` of every token, in `patchify` order: ``(n, 3)`` long."""
    f, h, w = grid
    axes = [torch.arange(size, device=device) for size in (f, h, w)]
    fi, hi, wi = torch.meshgrid(*axes, indexing="ij")  # each (F, H, W)
    return torch.stack([fi, hi, wi], dim=-1).reshape(-1, 3)  # (n, 3)


__all__ = ["Grid", "Patch", "patch_grid", "patchify", "position_ids", "unpatchify"]
