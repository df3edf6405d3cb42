"""Training loss of the VAE: pixel reconstruction + edge (finite-difference) term + weighted KL.

No downloaded networks: the "perceptual-ish" term is an L1 loss between the finite differences of
the reconstruction and of the target along height, width and time, which rewards sharp edges and
faithful motion on Kinema World's flat-coloured objects.

Scales: ``recon`` and ``grad`` are means per pixel value. ``kl`` is the posterior's KL summed over
latent elements, divided by the number of pixel values per sample, and averaged over the batch, so
``recon + kl_weight * kl`` weighs the two like the usual "sum over pixels + kl_weight * sum over
latents" (latent-diffusion VAEs use ``kl_weight ~ 1e-6``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from kinema.errors import InvalidInputError
from kinema.vae.model import VAEOutput


@dataclass
class VAELoss:
    """Scalar loss terms; ``total`` is the one to backpropagate, the rest are for logging."""

    total: Tensor
    recon: Tensor  # l1_weight * L1 + mse_weight * MSE
    kl: Tensor  # KL per pixel value, batch mean
    l1: Tensor
    mse: Tensor
    grad: Tensor  # edge loss (L1 of finite differences in h, w, f)
    temporal: Tensor  # L1 of frame-to-frame changes, foreground-weighted (0 when temporal_weight is 0)

    def as_dict(self) -> dict[str, float]:
        """Python floats for logging."""
        return {k: float(v.detach()) for k, v in vars(self).items()}


def gradient_loss(video: Tensor, recon: Tensor) -> Tensor:
    """Mean L1 between finite differences of ``recon`` and ``video`` along h, w (and f when f > 1).

    ``video``, ``recon``: ``(b, c, f, h, w)``. Returns a scalar.
    """
    terms = []
    for dim in (3, 4, 2):  # h, w, f
        if video.shape[dim] > 1:
            terms.append(F.l1_loss(torch.diff(recon, dim=dim), torch.diff(video, dim=dim)))
    if not terms:
        return video.new_zeros(())
    return torch.stack(terms).mean()


def temporal_loss(video: Tensor, recon: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mean L1 between the frame-to-frame changes of ``recon`` and of ``video``.

    A causal VAE decodes each latent group of frames with its own small errors; where one group's
    errors give way to the next group's, the reconstruction jumps although the clip does not (the
    default model's stage-2 decoder changed 1.8-1.9x as much as the truth across group boundaries).
    This term pays for every change the clip does not make. ``weights`` ``(b, 1, f, h, w)`` (the
    foreground weights) count a pixel pair by the larger of its two frames' weights.
    ``video``, ``recon``: ``(b, c, f, h, w)``; a scalar, 0 for one-frame clips.
    """
    if video.shape[2] < 2:
        return video.new_zeros(())
    err = (torch.diff(recon, dim=2) - torch.diff(video, dim=2)).abs()  # (b, c, f-1, h, w)
    if weights is None:
        return err.mean()
    pair = torch.maximum(weights[:, :, 1:], weights[:, :, :-1])  # (b, 1, f-1, h, w)
    return (err * pair).mean() / pair.mean()


def foreground_weights(video: Tensor, weight: float, threshold: float = 0.1) -> Tensor:
    """Per-pixel loss weights ``1 + weight * [pixel differs from its frame's background]``.

    The background of a frame is its per-channel median colour (flat backgrounds cover most of a
    world frame); a pixel is foreground when its colour is more than ``threshold`` (in ``[-1, 1]``
    units, summed over channels) away from it. ``video``: ``(b, 3, f, h, w)`` -> ``(b, 1, f, h, w)``.
    """
    flat = video.flatten(3)  # (b, c, f, h*w)
    background = flat.median(dim=3).values[..., None, None]  # (b, c, f, 1, 1)
    mask = ((video - background).abs().sum(dim=1, keepdim=True) > threshold).to(video.dtype)  # (b, 1, f, h, w)
    return 1.0 + weight * mask


def vae_loss(
    video: Tensor,
    output: VAEOutput,
    kl_weight: float = 1e-6,
    l1_weight: float = 1.0,
    mse_weight: float = 1.0,
    grad_weight: float = 0.5,
    foreground_weight: float = 0.0,
    temporal_weight: float = 0.0,
) -> VAELoss:
    """VAE training loss.

    MSE is on by default: with L1 alone a VAE on flat-coloured clips settles in the
    "background only" minimum (L1's optimum for uncertain pixels is the median colour, the
    background); measured on a 9-frame 32x32 moving square, L1 alone plateaued at 16 dB PSNR,
    L1 + MSE reached 26.5 dB in 400 steps.

    ``video``: target ``(b, 3, f, h, w)`` in ``[-1, 1]``; ``output``: :class:`VAEOutput` of the model
    on it. ``total = l1_weight * L1 + mse_weight * MSE + grad_weight * grad + temporal_weight * temporal
    + kl_weight * kl`` (:func:`temporal_loss`, foreground-weighted when ``foreground_weight > 0``).

    ``foreground_weight > 0`` weighs L1 and MSE per pixel by :func:`foreground_weights` (a weighted
    mean). Objects cover a few percent of a world frame and carry all of its colour (backgrounds,
    floors and walls are grey): unweighted, a VAE learned the backgrounds and drew the objects as
    faint grey blobs (24.6 dB after 2,000 steps); see docs/architecture.md.
    """
    if output.recon.shape != video.shape:
        raise InvalidInputError(
            f"recon shape {tuple(output.recon.shape)} invalid: must equal the video shape {tuple(video.shape)}"
        )
    weights = {"kl_weight": kl_weight, "l1_weight": l1_weight, "mse_weight": mse_weight, "grad_weight": grad_weight,
               "foreground_weight": foreground_weight, "temporal_weight": temporal_weight}
    for name, value in weights.items():
        if value < 0:
            raise InvalidInputError(f"{name}={value} invalid: must be >= 0")
    recon = output.recon
    w = foreground_weights(video, foreground_weight) if foreground_weight > 0 else None  # (b, 1, f, h, w)
    if w is not None:  # broadcast over channels
        l1 = ((recon - video).abs() * w).mean() / w.mean()  # weighted means
        mse = ((recon - video).pow(2) * w).mean() / w.mean()
    else:
        l1 = F.l1_loss(recon, video)
        mse = F.mse_loss(recon, video)
    grad = gradient_loss(video, recon) if grad_weight > 0 else recon.new_zeros(())
    pixels_per_sample = video[0].numel()
    kl = output.posterior.kl().mean() / pixels_per_sample
    temporal = temporal_loss(video, recon, w) if temporal_weight > 0 else recon.new_zeros(())
    rec = l1_weight * l1 + mse_weight * mse
    total = rec + grad_weight * grad + temporal_weight * temporal + kl_weight * kl
    return VAELoss(total=total, recon=rec, kl=kl, l1=l1, mse=mse, grad=grad, temporal=temporal)
