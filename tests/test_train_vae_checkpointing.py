"""VAE gradient checkpointing: same loss and gradients with and without, less saved activation memory."""

from __future__ import annotations

from dataclasses import replace

import torch

from kinema.vae import VAE_PRESETS, CausalVAE, vae_loss


def _grads(checkpointing: bool) -> tuple[float, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    cfg = replace(VAE_PRESETS["tiny"], num_res_blocks=2, gradient_checkpointing=checkpointing)
    vae = CausalVAE(cfg).train()
    with torch.no_grad():  # non-zero second convolutions, so every block does work
        for p in vae.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    video = torch.rand(2, 3, 5, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out = vae(video, sample_posterior=True, generator=torch.Generator().manual_seed(2))
    loss = vae_loss(video, out, kl_weight=1e-3).total
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in vae.named_parameters()}


def test_checkpointing_gives_the_same_gradients() -> None:
    loss_a, plain = _grads(False)
    loss_b, ckpt = _grads(True)
    assert loss_a == loss_b
    assert plain.keys() == ckpt.keys() and all(plain[n].abs().sum() > 0 for n in plain if "conv" in n)
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)


def test_checkpointing_saves_fewer_activations() -> None:
    """Count the tensors autograd saves for backward: far fewer with checkpointing."""

    def saved(checkpointing: bool) -> int:
        torch.manual_seed(0)
        vae = CausalVAE(replace(VAE_PRESETS["tiny"], gradient_checkpointing=checkpointing)).train()
        count = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal count
            count += t.numel()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            vae(torch.zeros(1, 3, 5, 16, 16), sample_posterior=False).recon.sum()
        return count

    assert saved(True) < 0.5 * saved(False)
    vae = CausalVAE(replace(VAE_PRESETS["tiny"], gradient_checkpointing=True)).eval()
    with torch.no_grad():  # inference ignores the flag
        assert vae(torch.zeros(1, 3, 5, 16, 16), sample_posterior=False).recon.shape == (1, 3, 5, 16, 16)
