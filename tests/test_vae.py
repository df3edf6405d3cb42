"""Tests of the causal 3D VAE (kinema.vae) on tiny configs, CPU."""

from __future__ import annotations

import json
import time

import pytest
import torch

from kinema.errors import InvalidInputError
from kinema.vae import (
    VAE_PRESETS,
    CausalVAE,
    DiagonalGaussian,
    VAEConfig,
    VAEOutput,
    estimate_latent_scaling,
    gradient_loss,
    vae_loss,
    vae_preset,
)


def tiny_config(spatial: int = 4, temporal: int = 2, **overrides: object) -> VAEConfig:
    """The tiny preset at the given factors (spatial 8 needs one more level)."""
    mults = (1, 1, 2) if spatial == 4 else (1, 1, 2, 2)
    return vae_preset("tiny", spatial_factor=spatial, temporal_factor=temporal, channel_mults=mults, **overrides)


def randomized_vae(config: VAEConfig, seed: int = 0) -> CausalVAE:
    """A VAE whose every parameter is random (the zero-initialised convs too), so that every path
    carries signal and causality tests cannot pass because a branch is zero."""
    torch.manual_seed(seed)
    vae = CausalVAE(config).eval()
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p) if name.endswith("weight") else 0.1 * torch.randn_like(p))
            elif p.ndim > 1:  # conv weight: unit-gain random filters
                p.copy_(torch.randn_like(p) / p[0].numel() ** 0.5)
            else:
                p.copy_(0.1 * torch.randn_like(p))
    return vae


def video(b: int, f: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, f, h, w, generator=g) * 2 - 1


# ----------------------------------------------------------------------------- config


def test_presets_valid_and_ordered_by_size() -> None:
    counts = {name: sum(p.numel() for p in CausalVAE(cfg).parameters()) for name, cfg in VAE_PRESETS.items()}
    assert counts["tiny"] < 100_000
    assert 1_000_000 <= counts["small"] <= 3_000_000
    assert counts["base"] > counts["small"]


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"spatial_factor": 16}, "spatial_factor=16 invalid: allowed values are (4, 8)"),
        ({"temporal_factor": 3}, "temporal_factor=3 invalid: allowed values are (1, 2, 4)"),
        ({"channel_mults": (1, 2, 2, 4)}, "needs exactly 3 entries"),
        ({"norm": "batch"}, "allowed values are ('group', 'rms')"),
        ({"latent_channels": 0}, "latent_channels=0 invalid"),
        ({"norm_groups": 3}, "norm_groups=3 invalid"),
    ],
)
def test_config_validation_names_value_and_allowed(overrides: dict, needle: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        vae_preset("tiny", **overrides)
    assert needle in str(info.value)


def test_unknown_preset_and_key_raise() -> None:
    with pytest.raises(InvalidInputError, match="allowed values"):
        vae_preset("huge")
    with pytest.raises(InvalidInputError, match="unknown keys"):
        vae_preset("tiny", colour=3)


def test_config_json_round_trip() -> None:
    cfg = vae_preset("small", scaling_factor=0.7, shift_factor=-0.1)
    back = VAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and isinstance(back.channel_mults, tuple)


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    ("spatial", "temporal", "frames", "height", "width"),
    [
        (4, 1, 3, 8, 12),
        (4, 2, 5, 16, 8),
        (4, 4, 9, 12, 20),
        (4, 4, 1, 4, 4),
        (8, 1, 2, 16, 24),
        (8, 2, 7, 8, 16),
        (8, 4, 13, 24, 8),
    ],
)
def test_encode_decode_shapes(spatial: int, temporal: int, frames: int, height: int, width: int) -> None:
    torch.manual_seed(0)
    vae = CausalVAE(tiny_config(spatial, temporal))
    x = video(2, frames, height, width)
    expected = vae.latent_shape(frames, height, width)
    assert expected == (4, 1 + (frames - 1) // temporal, height // spatial, width // spatial)
    with torch.no_grad():
        post = vae.encode(x)
        assert tuple(post.mean.shape) == (2, *expected) == tuple(post.logvar.shape)
        assert tuple(post.sample().shape) == (2, *expected)
        out = vae(x)
    assert isinstance(out, VAEOutput)
    assert out.recon.shape == x.shape
    assert vae.video_shape(*expected[1:]) == (3, frames, height, width)


def test_image_is_a_one_frame_video() -> None:
    torch.manual_seed(0)
    vae = CausalVAE(tiny_config(8, 4))
    image = video(1, 1, 16, 24)
    with torch.no_grad():
        z = vae.encode(image).mode()
        assert tuple(z.shape) == (1, 4, 1, 2, 3)
        assert vae.decode(z).shape == image.shape


# ----------------------------------------------------------------------------- causality


@pytest.mark.parametrize(("spatial", "temporal"), [(4, 1), (4, 2), (4, 4), (8, 4)])
def test_encode_is_causal(spatial: int, temporal: int) -> None:
    vae = randomized_vae(tiny_config(spatial, temporal))
    k = 3
    x = video(1, 1 + k * temporal, 16, 16)
    with torch.no_grad():
        full = vae.encode(x)
        first = vae.encode(x[:, :, :1])
        torch.testing.assert_close(first.mean, full.mean[:, :, :1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(first.logvar, full.logvar[:, :, :1], atol=1e-5, rtol=1e-5)
        for j in range(1, k):
            prefix = vae.encode(x[:, :, : 1 + j * temporal]).mean
            torch.testing.assert_close(prefix, full.mean[:, :, : 1 + j], atol=1e-5, rtol=1e-5)
        # and the later latents do depend on the later frames (the test is not vacuous)
        y = x.clone()
        y[:, :, -1] = -y[:, :, -1]
        changed = vae.encode(y).mean
        torch.testing.assert_close(changed[:, :, :k], full.mean[:, :, :k], atol=1e-5, rtol=1e-5)
        assert (changed[:, :, k] - full.mean[:, :, k]).abs().max() > 1e-3


@pytest.mark.parametrize(("spatial", "temporal"), [(4, 1), (4, 2), (4, 4), (8, 2)])
def test_decode_is_causal(spatial: int, temporal: int) -> None:
    vae = randomized_vae(tiny_config(spatial, temporal), seed=1)
    k = 3
    z = torch.randn(1, 4, 1 + k, 3, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = vae.decode(z)
        assert full.shape[2] == 1 + k * temporal
        for j in range(k):
            prefix = vae.decode(z[:, :, : 1 + j])
            torch.testing.assert_close(prefix, full[:, :, : 1 + j * temporal], atol=1e-5, rtol=1e-5)
        z2 = z.clone()
        z2[:, :, -1] += 1.0
        changed = vae.decode(z2)
        torch.testing.assert_close(changed[:, :, : 1 + (k - 1) * temporal], full[:, :, : 1 + (k - 1) * temporal])
        assert (changed[:, :, -1] - full[:, :, -1]).abs().max() > 1e-3


# ----------------------------------------------------------------------------- invalid input


def test_invalid_sizes_name_value_and_rule() -> None:
    vae = CausalVAE(tiny_config(8, 4))
    with pytest.raises(InvalidInputError, match=r"frames=10 invalid: must be 1 \+ k\*4 \(1, 5, 9, \.\.\.\)"):
        vae.check_input_size(10, 16, 16)
    with pytest.raises(InvalidInputError, match="frames=0 invalid"):
        vae.latent_shape(0, 16, 16)
    with pytest.raises(InvalidInputError, match="height=30 invalid: must be a positive multiple of 8"):
        vae.check_input_size(5, 30, 16)
    with pytest.raises(InvalidInputError, match="width=4 invalid"):
        vae.latent_shape(5, 16, 4)
    with pytest.raises(InvalidInputError, match="frames=6 invalid"):
        vae.encode(video(1, 6, 16, 16))
    with pytest.raises(InvalidInputError, match=r"video shape \(1, 4, 5, 16, 16\) invalid"):
        vae.encode(torch.zeros(1, 4, 5, 16, 16))
    with pytest.raises(InvalidInputError, match="latent shape"):
        vae.decode(torch.zeros(1, 3, 2, 2, 2))
    with pytest.raises(InvalidInputError, match="latent_frames=0 invalid"):
        vae.decode(torch.zeros(1, 4, 0, 2, 2))


# ----------------------------------------------------------------------------- posterior & scaling


def test_kl_zero_for_standard_normal_and_positive_otherwise() -> None:
    zeros = torch.zeros(2, 4, 3, 2, 2)
    torch.testing.assert_close(DiagonalGaussian(zeros, zeros).kl(), torch.zeros(2))
    shifted = DiagonalGaussian(zeros + 0.5, zeros).kl()
    torch.testing.assert_close(shifted, torch.full((2,), 0.5 * 0.25 * zeros[0].numel()))
    narrow = DiagonalGaussian(zeros, zeros - 2.0).kl()
    assert (narrow > 0).all() and (DiagonalGaussian(zeros, zeros + 1.0).kl() > 0).all()


def test_sample_uses_generator_and_mode_is_mean() -> None:
    mean = torch.randn(1, 4, 2, 3, 3)
    post = DiagonalGaussian(mean, torch.full_like(mean, -2.0))
    a = post.sample(torch.Generator().manual_seed(7))
    b = post.sample(torch.Generator().manual_seed(7))
    c = post.sample(torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert post.mode() is mean
    assert ((a - mean).std() - torch.exp(torch.tensor(-1.0))).abs() < 0.15


def test_logvar_is_clamped() -> None:
    vae = randomized_vae(tiny_config(logvar_min=-0.01, logvar_max=0.01))
    with torch.no_grad():
        post = vae.encode(video(1, 3, 8, 8) * 50)
    assert post.logvar.min() >= -0.01 and post.logvar.max() <= 0.01


def test_normalize_denormalize_round_trip() -> None:
    vae = CausalVAE(tiny_config(scaling_factor=0.5, shift_factor=1.5))
    z = torch.randn(2, 4, 3, 2, 2)
    torch.testing.assert_close(vae.normalize(z), (z - 1.5) * 0.5)
    torch.testing.assert_close(vae.denormalize(vae.normalize(z)), z)
    raw = torch.randn(10_000, generator=torch.Generator().manual_seed(0)) * 3.0 + 2.0
    scale, shift = estimate_latent_scaling(raw)
    assert abs(shift - 2.0) < 0.1 and abs(scale - 1 / 3.0) < 0.01


# ----------------------------------------------------------------------------- loss & training


def test_vae_loss_terms() -> None:
    x = video(2, 3, 8, 8)
    post = DiagonalGaussian(torch.zeros(2, 4, 2, 2, 2), torch.zeros(2, 4, 2, 2, 2))
    perfect = vae_loss(x, VAEOutput(recon=x.clone(), posterior=post))
    assert float(perfect.total) == 0.0 and float(perfect.grad) == 0.0
    off = vae_loss(x, VAEOutput(recon=x + 0.1, posterior=post), mse_weight=1.0)
    torch.testing.assert_close(off.l1, torch.tensor(0.1))
    torch.testing.assert_close(off.recon, torch.tensor(0.1 + 0.01))
    assert float(off.grad) < 1e-6  # a constant offset keeps every edge
    blurred = x.clone()
    blurred[:, :, :, 1:-1] = (x[:, :, :, :-2] + x[:, :, :, 1:-1] + x[:, :, :, 2:]) / 3
    assert float(gradient_loss(x, blurred)) > 0.05
    kl_post = DiagonalGaussian(torch.ones(2, 4, 2, 2, 2), torch.zeros(2, 4, 2, 2, 2))
    with_kl = vae_loss(x, VAEOutput(recon=x.clone(), posterior=kl_post), kl_weight=1.0)
    torch.testing.assert_close(with_kl.kl, torch.tensor(0.5 * 32 / x[0].numel()))
    assert set(with_kl.as_dict()) == {"total", "recon", "kl", "l1", "mse", "grad", "temporal"}
    with pytest.raises(InvalidInputError, match="recon shape"):
        vae_loss(x, VAEOutput(recon=x[:, :, :1], posterior=post))


def test_foreground_weighted_loss_counts_object_pixels_more() -> None:
    from kinema.vae.losses import foreground_weights

    clip = moving_square_clip(frames=3, size=16)  # a red square (partly out of frame) on a light background
    w = foreground_weights(clip, 9.0)
    assert w.shape == (1, 1, 3, 16, 16)
    red_pixels = int((clip[0, 1] < 0).sum())  # green channel 40 (< 127.5) only inside the square
    assert set(torch.unique(w).tolist()) == {1.0, 10.0} and int((w == 10.0).sum()) == red_pixels > 200
    post = DiagonalGaussian(torch.zeros(1, 4, 2, 4, 4), torch.zeros(1, 4, 2, 4, 4))
    grey_object = clip.clone()
    grey_object[w.expand_as(clip) > 1] = 0.0  # the object drawn grey: an error on object pixels only
    plain = vae_loss(clip, VAEOutput(recon=grey_object, posterior=post), grad_weight=0.0)
    weighted = vae_loss(clip, VAEOutput(recon=grey_object, posterior=post), grad_weight=0.0, foreground_weight=9.0)
    assert float(weighted.l1) > 2.5 * float(plain.l1)  # the object's share of the loss grows
    offset = vae_loss(clip, VAEOutput(recon=clip + 0.1, posterior=post), grad_weight=0.0, foreground_weight=9.0)
    torch.testing.assert_close(offset.l1, torch.tensor(0.1))  # a weighted mean: uniform errors keep their scale
    with pytest.raises(InvalidInputError, match="foreground_weight"):
        vae_loss(clip, VAEOutput(recon=clip, posterior=post), foreground_weight=-1.0)


def test_temporal_loss_pays_for_jumps_between_latent_groups_only() -> None:
    from kinema.vae.losses import foreground_weights, temporal_loss

    clip = moving_square_clip(frames=9, size=16)
    post = DiagonalGaussian(torch.zeros(1, 4, 3, 4, 4), torch.zeros(1, 4, 3, 4, 4))
    assert float(temporal_loss(clip, clip + 0.1)) < 1e-6  # the same error in every frame changes nothing
    groups = clip.clone()
    groups[:, :, 5:] += 0.2  # a causal VAE's second group decoded with another error: one jump, between frames 4 and 5
    plain = temporal_loss(clip, groups)
    torch.testing.assert_close(plain, torch.tensor(0.2 / 8))  # one of 8 frame pairs, off by 0.2 everywhere
    on_objects = clip.clone()
    on_objects[:, :, 5:] = torch.where(clip[:, :, 5:] < 0, clip[:, :, 5:] + 0.2, clip[:, :, 5:])  # the jump on the red square only
    weights = foreground_weights(clip, 15.0)
    assert float(temporal_loss(clip, on_objects, weights)) > 3 * float(temporal_loss(clip, on_objects))  # measured 4.5x
    off = vae_loss(clip, VAEOutput(recon=groups, posterior=post), temporal_weight=2.0)
    torch.testing.assert_close(off.temporal, plain)
    torch.testing.assert_close(off.total - off.recon - 0.5 * off.grad - 1e-6 * off.kl, 2.0 * plain)
    assert float(vae_loss(clip, VAEOutput(recon=groups, posterior=post)).temporal) == 0.0  # off by default
    assert float(temporal_loss(clip[:, :, :1], groups[:, :, :1])) == 0.0  # an image has no frame pairs
    with pytest.raises(InvalidInputError, match="temporal_weight"):
        vae_loss(clip, VAEOutput(recon=clip, posterior=post), temporal_weight=-1.0)


def moving_square_clip(frames: int = 9, size: int = 32) -> torch.Tensor:
    """A red square sliding right and down over a light background. ``(1, 3, f, h, w)`` in [-1, 1]."""
    clip = torch.full((1, 3, frames, size, size), 200 / 127.5 - 1)
    red = torch.tensor([220, 40, 40]) / 127.5 - 1
    for i in range(frames):
        x0, y0 = 4 + 2 * i, 6 + i
        clip[0, :, i, y0 : y0 + 10, x0 : x0 + 10] = red[:, None, None]
    return clip


def test_tiny_vae_learns_to_reconstruct_a_clip() -> None:
    torch.manual_seed(0)
    vae = CausalVAE(VAE_PRESETS["tiny"])
    clip = moving_square_clip()
    gen = torch.Generator().manual_seed(0)

    def eval_recon() -> float:
        with torch.no_grad():
            return float(vae_loss(clip, vae(clip, sample_posterior=False)).recon)

    initial = eval_recon()
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    start = time.perf_counter()
    for _ in range(200):
        loss = vae_loss(clip, vae(clip, generator=gen))
        opt.zero_grad(set_to_none=True)
        loss.total.backward()
        opt.step()
    elapsed = time.perf_counter() - start
    final = eval_recon()
    print(f"tiny VAE: recon L1 {initial:.4f} -> {final:.4f} in 200 steps ({elapsed:.1f} s)")
    assert final < 0.3 * initial


@pytest.mark.parametrize("batch", [1, 3])
def test_oneDNN_conv_matches_conv3d_with_gradients(batch: int) -> None:
    """`conv3d` forces oneDNN on CPU (the batch-1 decode path); values and gradients match nn.Conv3d."""
    from kinema.vae.layers import conv3d

    torch.manual_seed(0)
    for conv in (torch.nn.Conv3d(6, 10, 3, padding=(0, 1, 1)), torch.nn.Conv3d(6, 10, 3, stride=(2, 2, 2), padding=(0, 1, 1)), torch.nn.Conv3d(6, 4, 1)):
        x = torch.randn(batch, 6, 5, 8, 8, requires_grad=True)
        ours = conv3d(conv, x)
        ours.square().sum().backward()
        grads = (x.grad.clone(), conv.weight.grad.clone())  # type: ignore[union-attr]
        x.grad, conv.weight.grad = None, None
        ref = conv(x)
        ref.square().sum().backward()
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(grads[0], x.grad, atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(grads[1], conv.weight.grad, atol=1e-3, rtol=1e-4)
