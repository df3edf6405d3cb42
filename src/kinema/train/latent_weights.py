"""Where the objects are in a latent: a loss weight that keeps small objects from drowning in background.

Kinema World clips are mostly flat background; an object covers a few latent pixels of a 16x16 frame.
With a plain mean over positions the flow-matching loss is dominated by the background, the failure the
VAE showed before its foreground weight (docs/architecture.md). :func:`latent_foreground` marks the
latent positions that differ from their frame's background (per channel, the frame's spatial median) by
more than ``threshold`` (rms over channels, in the normalised latent's units), grown by one latent pixel
so an object's border counts too. The mask comes from the clean training latent ``x0`` alone: it only
weights the loss and is not needed at sampling time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange


def latent_foreground(x0: torch.Tensor, threshold: float) -> torch.Tensor:
    """Bool ``(b, f, h, w)``: positions of ``x0`` ``(b, c, f, h, w)`` that are not their frame's background."""
    b = x0.shape[0]
    background = x0.flatten(3).median(dim=3).values[..., None, None]  # (b, c, f, 1, 1)
    distance = (x0 - background).pow(2).mean(dim=1).sqrt()  # (b, f, h, w)
    marked = rearrange((distance > threshold).float(), "b f h w -> (b f) 1 h w")
    grown = F.max_pool2d(marked, kernel_size=3, stride=1, padding=1)  # one latent pixel around each
    return rearrange(grown, "(b f) 1 h w -> b f h w", b=b) > 0


def position_weights(x0: torch.Tensor, foreground_weight: float, threshold: float) -> torch.Tensor:
    """Float ``(b, f, h, w)``: 1 on background, ``1 + foreground_weight`` on :func:`latent_foreground`."""
    return 1.0 + foreground_weight * latent_foreground(x0, threshold).float()
