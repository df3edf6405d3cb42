"""Classifier-free guidance (Ho & Salimans 2022) with a negative prompt, as a ``VelocityFn``.

The model is trained with the prompt sometimes dropped (replaced by the empty prompt ""), so it
predicts both a conditional velocity ``v_c = v(x, t | prompt)`` and an unconditional one. At
sampling time the negative prompt (by default "") takes the unconditional slot and the two are
extrapolated:

    v = v_u + scale * (v_c - v_u)

``scale = 1`` is the plain conditional model (the unconditional pass is skipped), ``scale = 0`` the
unconditional/negative one, ``scale > 1`` pushes samples toward the prompt and away from the
negative prompt. Both branches run as ONE batched model call ``(2b, ...)``: the prompt and negative
token states are right-padded to one length (the model's text mask hides the padding), and the
image/video conditioning (``cond_latents``, ``cond_mask``) is given to both branches, so guidance
acts on the text only. A model with ``prepare_text`` (the DiT) has its text projection and every
block's cross-attention keys/values computed once here and reused at every sampling step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from kinema.errors import InvalidInputError
from kinema.flow.samplers import VelocityFn
from kinema.text import TextEmbedding


class VelocityModel(Protocol):
    """The DiT call signature (``kinema.dit.DiT.forward``)."""

    def __call__(
        self,
        x: Tensor,  # (b, c, f, h, w) noisy latents
        t: Tensor,  # (b,) flow time
        text: Tensor,  # (b, l, d) token states
        text_mask: Tensor,  # (b, l) bool, True = real token
        cond_latents: Tensor | None = None,  # (b, c, f, h, w) clean latents of given frames
        cond_mask: Tensor | None = None,  # (b, f) 1 = latent frame given
    ) -> Tensor: ...


BoundModel = Callable[[Tensor, Tensor, Tensor | None, Tensor | None], Tensor]  # (x, t, cond_latents, cond_mask) -> v


def bind_text(model: VelocityModel, states: Tensor, mask: Tensor) -> BoundModel:
    """``model`` with its text fixed. When the model can precompute its text-only work
    (``prepare_text(states, mask)``, as `kinema.dit.DiT` does), that happens once here instead of
    at every step; the result is the same."""
    prepare = getattr(model, "prepare_text", None)
    if prepare is None:
        return lambda x, t, cl, cm: model(x, t, states, mask, cl, cm)
    cache = prepare(states, mask)
    return lambda x, t, cl, cm: model(x, t, cond_latents=cl, cond_mask=cm, text_cache=cache)  # type: ignore[call-arg]


def combine_guidance(v_cond: Tensor, v_uncond: Tensor, scale: float) -> Tensor:
    """``v_uncond + scale * (v_cond - v_uncond)``."""
    return v_uncond + scale * (v_cond - v_uncond)


def guided_velocity_fn(
    model: VelocityModel,
    text: TextEmbedding,
    negative: TextEmbedding | None,
    scale: float,
    cond_latents: Tensor | None = None,
    cond_mask: Tensor | None = None,
) -> VelocityFn:
    """Wrap ``model`` into ``fn(x (b, ...), t (b,)) -> v (b, ...)`` with classifier-free guidance.

    Args:
        model: any callable with the DiT signature (see ``VelocityModel``).
        text: the prompts, batch ``b`` (one per sample).
        negative: the negative/unconditional prompts, batch ``b`` or 1 (shared by all samples);
            may be None only when ``scale == 1``.
        scale: guidance scale, finite and >= 0; 1.0 runs the conditional branch alone.
        cond_latents: ``(b, c, f, h, w)`` clean latents of the given frames, or None.
        cond_mask: ``(b, f)`` which latent frames are given, or None.
    """
    if not (math.isfinite(scale) and scale >= 0):
        raise InvalidInputError(f"guidance scale={scale} is invalid; allowed a finite value >= 0")
    b = text.batch_size
    for name, cond in (("cond_latents", cond_latents), ("cond_mask", cond_mask)):
        if cond is not None and cond.shape[0] != b:
            raise InvalidInputError(
                f"{name} has batch {cond.shape[0]}; allowed {b} (the prompt batch)"
            )

    if scale == 1.0:
        bound = bind_text(model, text.states, text.mask)

        def conditional(x: Tensor, t: Tensor) -> Tensor:
            _check_batch(x, b)
            return bound(x, t, cond_latents, cond_mask)

        return conditional

    if negative is None:
        raise InvalidInputError(
            f"guidance scale={scale} needs a negative/unconditional prompt embedding "
            "(encode [\"\"] for plain classifier-free guidance); only scale=1.0 allows None"
        )
    if negative.batch_size not in (1, b):
        raise InvalidInputError(
            f"negative prompt batch is {negative.batch_size}; allowed 1 or {b} (the prompt batch)"
        )
    if negative.batch_size != b:
        negative = negative.repeat(b)
    both = TextEmbedding.cat([text, negative])  # (2b, l, d), padded to the longer of the two
    cond_latents2 = None if cond_latents is None else torch.cat([cond_latents, cond_latents])
    cond_mask2 = None if cond_mask is None else torch.cat([cond_mask, cond_mask])
    bound = bind_text(model, both.states, both.mask)

    def guided(x: Tensor, t: Tensor) -> Tensor:
        _check_batch(x, b)
        v = bound(
            torch.cat([x, x]),  # (2b, c, f, h, w)
            torch.cat([t, t]),  # (2b,)
            cond_latents2,
            cond_mask2,
        )
        v_cond, v_uncond = v.chunk(2)  # (b, c, f, h, w) each
        return combine_guidance(v_cond, v_uncond, scale)

    return guided


def _check_batch(x: Tensor, b: int) -> None:
    if x.shape[0] != b:
        raise InvalidInputError(f"latents have batch {x.shape[0]}; allowed {b} (the prompt batch)")
