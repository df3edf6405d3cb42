"""Causal 3D convolutional video VAE: ``(b, 3, 1 + k*T, h, w)`` <-> ``(b, c, 1 + k, h/S, w/S)``.

Frame 0 is encoded on its own, so an image is a one-frame video.
"""

from __future__ import annotations

from kinema.vae.config import SPATIAL_FACTORS, TEMPORAL_FACTORS, VAE_PRESETS, VAEConfig, vae_preset
from kinema.vae.losses import VAELoss, gradient_loss, vae_loss
from kinema.vae.model import CausalVAE, DiagonalGaussian, VAEOutput, estimate_latent_scaling

__all__ = [
    "SPATIAL_FACTORS",
    "TEMPORAL_FACTORS",
    "VAE_PRESETS",
    "CausalVAE",
    "DiagonalGaussian",
    "VAEConfig",
    "VAELoss",
    "VAEOutput",
    "estimate_latent_scaling",
    "gradient_loss",
    "vae_loss",
    "vae_preset",
]
