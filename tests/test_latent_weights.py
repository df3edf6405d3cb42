"""The foreground loss weight of DiT training (kinema.train.latent_weights)."""

from __future__ import annotations

import torch

from kinema.dit import DiT, DiTConfig
from kinema.text.encoder import TextEmbedding
from kinema.train.dit_trainer import Conditioning, flow_matching_loss
from kinema.train.latent_weights import latent_foreground, position_weights


def _scene(b: int = 2, f: int = 3) -> torch.Tensor:
    """Latents ``(b, 8, f, 16, 16)``: a background of its own per clip, one 2x2 object at a moving place."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, 8, 1, 1, 1, generator=g).expand(b, 8, f, 16, 16).clone()
    x += 0.05 * torch.randn(x.shape, generator=g)  # grain below the threshold
    for j in range(f):
        x[:, :, j, 4 + j : 6 + j, 8:10] += 2.0
    return x


def test_foreground_marks_the_object_and_its_border_only() -> None:
    x = _scene()
    fg = latent_foreground(x, 0.5)
    assert fg.shape == (2, 3, 16, 16) and fg.dtype == torch.bool
    for j in range(3):
        expected = torch.zeros(16, 16, dtype=torch.bool)
        expected[3 + j : 7 + j, 7:11] = True  # the 2x2 object grown by one latent pixel
        assert torch.equal(fg[0, j], expected) and torch.equal(fg[1, j], expected)
    w = position_weights(x, 4.0, 0.5)
    assert w.max() == 5.0 and w.min() == 1.0 and int((w == 5.0).sum()) == 2 * 3 * 16
    assert not latent_foreground(torch.ones(1, 8, 2, 16, 16), 0.5).any()  # a flat frame has no objects


class _Fixed(torch.nn.Module):
    """A 'model' whose velocity is off by 1 on the object of frame 0 only."""

    def __init__(self, x0: torch.Tensor, noise: torch.Tensor) -> None:
        super().__init__()
        self.target = noise - x0
        self.target[:, :, 0, 4:6, 8:10] += 1.0

    def forward(self, x_t, t, states, mask, cond_latents, cond_mask):  # noqa: ANN001, ANN201
        return self.target


def test_weighted_loss_counts_object_errors_more() -> None:
    x0 = _scene(1, 3)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    text = TextEmbedding(torch.zeros(1, 4, 16), torch.ones(1, 4, dtype=torch.bool))
    cond = Conditioning(None, None, torch.ones(1, 3))
    model, t = _Fixed(x0, noise), torch.full((1,), 0.5)
    plain = float(flow_matching_loss(model, x0, text, cond, t, noise))
    weighted = float(flow_matching_loss(model, x0, text, cond, t, noise, foreground_weight=4.0, foreground_threshold=0.5))
    assert abs(plain - 4 / 256 / 3) < 1e-6  # 4 wrong positions of 256, in one frame of 3
    assert abs(weighted - (4 * 5 / (16 * 5 + 240)) / 3) < 1e-6  # the same 4, each weighing 5 of the frame's 320
    dit = DiT(DiTConfig(in_channels=8, patch_size=(1, 4, 4), hidden_size=32, depth=1, num_heads=2, text_dim=16))
    loss = flow_matching_loss(dit, x0, text, cond, t, noise, foreground_weight=4.0)
    loss.backward()  # differentiable through the real model
    assert all(p.grad is not None for p in dit.parameters() if p.requires_grad)
