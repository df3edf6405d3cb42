"""A tiny VAE + DiT trained for a few hundred steps on one short clip reproduces it.

This is the smallest end-to-end check that every piece learns: the VAE's reconstruction loss drops,
the DiT's flow-matching loss drops, and sampling from noise with the trained DiT and decoding gives
back the training clip.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from kinema.dit import DIT_PRESETS, DiT
from kinema.flow import RectifiedFlowPath, euler, get_schedule, guided_velocity_fn, sample_logit_normal
from kinema.text import TextEmbedding
from kinema.vae import VAE_PRESETS, CausalVAE, estimate_latent_scaling, vae_loss


def moving_square_clip(frames: int = 9, size: int = 32) -> torch.Tensor:
    """A red square sliding right on a light background: (1, 3, f, h, w) in [-1, 1]."""
    x = torch.full((1, 3, frames, size, size), 200 / 127.5 - 1)
    red = torch.tensor([220, 40, 40]) / 127.5 - 1
    for i in range(frames):
        x[0, :, i, 12:22, 2 + 2 * i : 12 + 2 * i] = red[:, None, None]
    return x


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.clamp(-1, 1) - b) / 2).pow(2).mean()
    return float(10 * torch.log10(1 / mse))


def test_tiny_vae_and_dit_memorise_one_clip(text_encoder):
    torch.manual_seed(0)
    clip = moving_square_clip()

    # 1) VAE: reconstruction.
    vae = CausalVAE(VAE_PRESETS["tiny"])
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(400):
        loss = vae_loss(clip, vae(clip, sample_posterior=False), kl_weight=1e-6)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
        losses.append(float(loss.recon.detach()))
    vae.eval()
    with torch.no_grad():
        z = vae.encode(clip).mode()  # (1, c, f', h', w')
        recon = vae.decode(z)
    assert losses[-1] < 0.3 * losses[0], (losses[0], losses[-1])
    assert psnr(recon, clip) > 24, psnr(recon, clip)

    # 2) DiT: flow matching on the one normalised latent with its caption.
    scale, shift = estimate_latent_scaling(z)
    vae.config.scaling_factor, vae.config.shift_factor = scale, shift  # the model's own config copy
    x0 = vae.normalize(z)
    text = text_encoder.encode(["a red square slides right"])
    dit = DiT(replace(DIT_PRESETS["tiny"], in_channels=z.shape[1], hidden_size=64))
    opt = torch.optim.AdamW(dit.parameters(), lr=2e-3, weight_decay=0.0)
    path = RectifiedFlowPath()
    batch = 8
    flow_losses = []
    for _ in range(400):
        t = sample_logit_normal(batch, generator=g)
        noise = torch.randn((batch, *x0.shape[1:]), generator=g)
        sample = path.sample(x0.expand(batch, -1, -1, -1, -1), noise, t)
        v = dit(sample.x_t, t, text.states.expand(batch, -1, -1), text.mask.expand(batch, -1))
        loss = (v - sample.velocity).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        flow_losses.append(float(loss.detach()))
    first, last = sum(flow_losses[:20]) / 20, sum(flow_losses[-20:]) / 20
    assert last < 0.25 * first, (first, last)

    # 3) Sample from noise and decode: the clip comes back.
    dit.eval()
    with torch.no_grad():
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(123))
        fn = guided_velocity_fn(dit, text, None, 1.0)
        latents = euler(fn, noise, get_schedule(30))
        video = vae.decode(vae.denormalize(latents))
    assert video.shape == clip.shape
    assert psnr(video, clip) > 18, psnr(video, clip)
    # The red square is where it should be in the last frame (it moved right).
    def red_columns(x: torch.Tensor) -> torch.Tensor:
        red = (x[0, 0] > 0.3) & (x[0, 1] < -0.3)  # (f, h, w)
        return red[-1].nonzero()[:, 1].float()

    cols, true_cols = red_columns(video), red_columns(clip)  # true: columns 18..27, mean 22.5
    assert cols.numel() > 50, cols.numel()
    assert abs(float(cols.mean() - true_cols.mean())) < 2.5, (cols.mean(), true_cols.mean())
