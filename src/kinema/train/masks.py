"""Random conditioning masks: which latent frames the DiT is given clean during training.

One model then serves every mode at sampling time (the pipeline builds the same masks):

| kind          | given latent frames              | mode                              |
|---------------|----------------------------------|-----------------------------------|
| ``none``      | none                             | text-to-video                     |
| ``first_frame`` | frame 0                        | image-to-video                    |
| ``first_k``   | frames ``0 .. k-1``              | extend forward                    |
| ``last_k``    | frames ``f-k .. f-1``            | extend backward                   |
| ``first_last``| frames ``0 .. k-1`` and ``f-k .. f-1`` | loops, connecting two clips |

``k`` is uniform in ``1 .. max(1, min(f - 1, ceil(max_fraction * f)))`` (per clip). At least one
frame is always left to generate: a kind that would give every frame falls back to the nearest
smaller one (``first_last`` -> ``first_frame`` when ``f < 3``; everything -> ``none`` when ``f == 1``).
"""

from __future__ import annotations

import math

import torch

from kinema.errors import InvalidInputError
from kinema.train.config import MASK_KINDS, MaskConfig


def cond_mask(kind: str, frames: int, k: int = 1) -> torch.Tensor:
    """``(frames,)`` float mask for ``kind`` with ``k`` given frames per side (1 = given)."""
    m = torch.zeros(frames)
    if frames == 1 or kind == "none":
        return m
    k = max(1, min(k, frames - 1))
    if kind == "first_frame":
        m[0] = 1
    elif kind == "first_k":
        m[:k] = 1
    elif kind == "last_k":
        m[frames - k :] = 1
    elif kind == "first_last":
        if frames < 3:
            m[0] = 1
        else:
            k = max(1, min(k, (frames - 1) // 2))
            m[:k] = 1
            m[frames - k :] = 1
    else:
        raise InvalidInputError(f"mask kind {kind!r} unknown; allowed: {MASK_KINDS}")
    return m


def sample_cond_masks(batch: int, frames: int, cfg: MaskConfig, generator: torch.Generator) -> tuple[torch.Tensor, list[str]]:
    """Random masks ``(batch, frames)`` float (CPU), and their kinds; ``generator`` is a CPU generator."""
    weights = torch.tensor(cfg.weights(), dtype=torch.float64)
    kinds_idx = torch.multinomial(weights, batch, replacement=True, generator=generator)
    k_max = max(1, min(frames - 1, math.ceil(cfg.max_fraction * frames)))
    ks = torch.randint(1, k_max + 1, (batch,), generator=generator)
    kinds = [MASK_KINDS[int(i)] if frames > 1 else "none" for i in kinds_idx]
    masks = torch.stack([cond_mask(kind, frames, int(k)) for kind, k in zip(kinds, ks)])  # (b, f)
    return masks, kinds
