"""Tests for kinema.dit: patches, 3D RoPE, the DiT forward pass and its conditioning inputs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kinema.dit import (
    DIT_PRESETS,
    DiT,
    DiTConfig,
    Rope3D,
    apply_rope,
    dit_preset,
    patch_grid,
    patchify,
    position_ids,
    rope_angles,
    unpatchify,
)
from kinema.errors import InvalidInputError

TINY = DIT_PRESETS["tiny"]


def perturbed_model(config: DiTConfig = TINY, seed: int = 0) -> DiT:
    """A model whose zero-initialised parameters are made nonzero, so every path affects the output."""
    torch.manual_seed(seed)
    model = DiT(config)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model.eval()


def inputs(b: int = 2, f: int = 3, h: int = 4, w: int = 6, l: int = 7, seed: int = 0, config: DiTConfig = TINY):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, config.in_channels, f, h, w, generator=gen)
    t = torch.rand(b, generator=gen)
    text = torch.randn(b, l, config.text_dim, generator=gen)
    mask = torch.ones(b, l, dtype=torch.bool)
    mask[0, l // 2 :] = False  # first sample has padding
    return x, t, text, mask


# ----------------------------------------------------------------------------- patches


@pytest.mark.parametrize("patch", [(1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 1, 3)])
def test_patchify_roundtrip_exact(patch: tuple[int, int, int]) -> None:
    pt, ph, pw = patch
    x = torch.randn(2, 3, 2 * pt, 3 * ph, 2 * pw)
    tokens, grid = patchify(x, patch)
    assert grid == (2, 3, 2)
    assert tokens.shape == (2, 12, 3 * pt * ph * pw)
    # token 0 is the first patch, flattened in (c, pt, ph, pw) order
    assert torch.equal(tokens[:, 0], x[:, :, :pt, :ph, :pw].reshape(2, -1))
    assert torch.equal(unpatchify(tokens, grid, patch, channels=3), x)


def test_position_ids_match_patchify_order() -> None:
    patch = (2, 2, 3)
    f, h, w = 4, 6, 9
    ff, hh, ww = torch.meshgrid(torch.arange(f), torch.arange(h), torch.arange(w), indexing="ij")
    coords = torch.stack([ff // 2, hh // 2, ww // 3]).float()[None]  # (1, 3, f, h, w): each latent's patch coords
    tokens, grid = patchify(coords, patch)
    pos = position_ids(grid)
    assert grid == (2, 3, 3)
    assert pos.shape == (18, 3) and pos.dtype == torch.long
    volume = 2 * 2 * 3
    # channel k of token i (first element of its block) holds that token's coordinate on axis k
    assert torch.equal(tokens[0, :, ::volume].long(), pos)
    assert pos[0].tolist() == [0, 0, 0] and pos[-1].tolist() == [1, 2, 2] and pos[4].tolist() == [0, 1, 1]


def test_patch_sizes_not_divisible_raise() -> None:
    with pytest.raises(InvalidInputError, match=r"height=5.*patch size 2"):
        patch_grid(3, 5, 4, (1, 2, 2))
    with pytest.raises(InvalidInputError, match=r"frames=3.*patch size 2"):
        patchify(torch.zeros(1, 2, 3, 4, 4), (2, 2, 2))
    with pytest.raises(InvalidInputError, match=r"expected \(b, 6, 8\)"):
        unpatchify(torch.zeros(1, 5, 8), (1, 2, 3), (1, 2, 2), channels=2)


# ----------------------------------------------------------------------------- rope


def test_rope_is_a_rotation() -> None:
    gen = torch.Generator().manual_seed(0)
    pos = torch.randint(0, 20, (10, 3), generator=gen)
    angles = rope_angles(pos, (4, 6, 6), theta=10000.0)
    assert angles.shape == (10, 8)
    q = torch.randn(2, 3, 10, 16, generator=gen)
    rotated = apply_rope(q, angles.cos(), angles.sin())
    assert not torch.allclose(rotated, q)
    torch.testing.assert_close(rotated.norm(dim=-1), q.norm(dim=-1))
    # each interleaved pair keeps its own norm (a rotation per pair, not a mixing across pairs)
    torch.testing.assert_close(rotated.unflatten(-1, (8, 2)).norm(dim=-1), q.unflatten(-1, (8, 2)).norm(dim=-1))


def test_rope_scores_depend_only_on_position_difference() -> None:
    gen = torch.Generator().manual_seed(0)
    axes, theta = (8, 12, 12), 100.0
    pos = torch.randint(0, 8, (12, 3), generator=gen).double()
    q = torch.randn(1, 2, 12, 32, generator=gen, dtype=torch.float64)
    k = torch.randn(1, 2, 12, 32, generator=gen, dtype=torch.float64)

    def scores(p: torch.Tensor) -> torch.Tensor:
        a = rope_angles(p, axes, theta).double()
        return apply_rope(q, a.cos(), a.sin()) @ apply_rope(k, a.cos(), a.sin()).transpose(-1, -2)

    base = scores(pos)
    shift = torch.tensor([5.0, -3.0, 11.0], dtype=torch.float64)
    torch.testing.assert_close(scores(pos + shift), base, atol=1e-4, rtol=1e-4)
    # changing the differences (stretching positions along one axis) changes the scores
    stretched = pos * torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    assert (scores(stretched) - base).abs().max() > 1e-2
    assert (q @ k.transpose(-1, -2) - base).abs().max() > 1e-2


def test_rope_cache_per_grid() -> None:
    rope = Rope3D((4, 6, 6), 10000.0)
    cos_a, sin_a = rope((2, 3, 4), torch.device("cpu"))
    assert cos_a.shape == (24, 8) and sin_a.shape == (24, 8)
    assert rope((2, 3, 4), torch.device("cpu"))[0] is cos_a
    cos_b, _ = rope((1, 4, 3), torch.device("cpu"))
    assert cos_b.shape == (12, 8)
    assert rope.state_dict() == {}


# ----------------------------------------------------------------------------- config


def test_config_validation_names_bad_values() -> None:
    with pytest.raises(InvalidInputError, match=r"hidden_size=50.*num_heads=4"):
        DiTConfig(hidden_size=50, num_heads=4)
    with pytest.raises(InvalidInputError, match=r"head_dim=24"):
        DiTConfig(hidden_size=48, num_heads=2)
    with pytest.raises(InvalidInputError, match=r"rope_axes_dim=\(8, 8, 6\).*summing to 24"):
        DiTConfig(hidden_size=48, num_heads=2, rope_axes_dim=(8, 8, 6))
    with pytest.raises(InvalidInputError, match=r"patch_size"):
        DiTConfig(patch_size=(1, 0, 2))
    with pytest.raises(InvalidInputError, match=r"unknown DiT preset 'huge'"):
        dit_preset("huge")
    ok = DiTConfig(hidden_size=48, num_heads=2, rope_axes_dim=(4, 10, 10))
    assert ok.axes_dim == (4, 10, 10)


def test_config_json_round_trip_and_presets() -> None:
    as_json = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(TINY).items()}
    assert DiTConfig(**as_json) == TINY
    counts = {name: DiT(cfg).param_count() for name, cfg in DIT_PRESETS.items() if name != "large"}
    assert 50_000 < counts["tiny"] < 150_000
    assert 5_000_000 < counts["small"] < 8_000_000
    assert 20_000_000 < counts["base"] < 30_000_000


# ----------------------------------------------------------------------------- model


def test_zero_init_output_is_exactly_zero() -> None:
    model = DiT(TINY).eval()
    x, t, text, mask = inputs()
    out = model(x, t, text, mask)
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0


@pytest.mark.parametrize("fhw", [(1, 2, 2), (3, 4, 6), (2, 6, 4), (5, 2, 8), (1, 8, 2)])
def test_output_shapes_any_size(fhw: tuple[int, int, int]) -> None:
    model = perturbed_model()
    f, h, w = fhw
    x, t, text, mask = inputs(f=f, h=h, w=w)
    with torch.no_grad():
        out = model(x, t, text, mask)
    assert out.shape == (2, TINY.in_channels, f, h, w)
    assert torch.isfinite(out).all() and out.abs().max() > 0
    assert model.num_tokens(f, h, w) == f * (h // 2) * (w // 2)


def test_batch_items_are_independent() -> None:
    model = perturbed_model()
    x, t, text, mask = inputs()
    with torch.no_grad():
        both = model(x, t, text, mask)
        first = model(x[:1], t[:1], text[:1], mask[:1])
    torch.testing.assert_close(both[:1], first, atol=1e-5, rtol=1e-5)


def test_padded_text_tokens_do_not_matter() -> None:
    model = perturbed_model()
    x, t, text, mask = inputs()
    changed_pad = text.clone()
    changed_pad[~mask] = 100.0 * torch.randn(int((~mask).sum()), TINY.text_dim)
    changed_real = text.clone()
    changed_real[0, 0] = torch.randn(TINY.text_dim)
    with torch.no_grad():
        ref = model(x, t, text, mask)
        pad = model(x, t, changed_pad, mask)
        real = model(x, t, changed_real, mask)
    torch.testing.assert_close(pad, ref, atol=1e-6, rtol=0)
    assert (real[0] - ref[0]).abs().max() > 1e-4  # a real token does change sample 0
    torch.testing.assert_close(real[1], ref[1])  # and nothing else


def test_all_masked_text_has_no_nan() -> None:
    model = perturbed_model().train()
    x, t, text, _ = inputs()
    mask = torch.zeros(2, text.shape[1], dtype=torch.bool)
    mask[1, :3] = True  # sample 0 all padding, sample 1 has text
    text.requires_grad_(True)
    out = model(x, t, text, mask)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(text.grad).all() and torch.count_nonzero(text.grad[0]) == 0
    with torch.no_grad():  # an all-padding row's text values are ignored entirely
        other = model(x, t, torch.randn_like(text), mask)
    torch.testing.assert_close(other[0], out[0].detach(), atol=1e-6, rtol=0)


def test_cond_input_matters_only_where_mask_is_set() -> None:
    model = perturbed_model()
    x, t, text, mask = inputs(f=3)
    cond = torch.randn_like(x)
    zeros = torch.zeros(2, 3)
    frame0 = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    other_cond = cond.clone()
    other_cond[:, :, 1:] = torch.randn_like(cond[:, :, 1:])  # differs only in frames not given
    with torch.no_grad():
        plain = model(x, t, text, mask)
        unmasked = model(x, t, text, mask, cond_latents=cond, cond_mask=zeros)
        given = model(x, t, text, mask, cond_latents=cond, cond_mask=frame0)
        given_bool = model(x, t, text, mask, cond_latents=cond, cond_mask=frame0.bool())
        given_other = model(x, t, text, mask, cond_latents=other_cond, cond_mask=frame0)
    assert torch.equal(unmasked, plain)
    assert (given - plain).abs().max() > 1e-4
    assert torch.equal(given_bool, given)
    torch.testing.assert_close(given_other, given, atol=1e-6, rtol=0)
    with pytest.raises(InvalidInputError, match="together"):
        model(x, t, text, mask, cond_latents=cond)
    with pytest.raises(InvalidInputError, match=r"cond_mask has shape \(2, 2\)"):
        model(x, t, text, mask, cond_latents=cond, cond_mask=torch.zeros(2, 2))


def test_every_parameter_receives_gradient() -> None:
    model = perturbed_model().train()
    x, t, text, mask = inputs()
    cond_mask = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    model(x, t, text, mask, torch.randn_like(x), cond_mask).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or torch.count_nonzero(p.grad) == 0]
    assert missing == []


def test_gradient_checkpointing_gives_same_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    import kinema.dit.model as dit_model

    calls = []
    real_checkpoint = dit_model.checkpoint

    def counting_checkpoint(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs.get("use_reentrant"))
        return real_checkpoint(*args, **kwargs)

    monkeypatch.setattr(dit_model, "checkpoint", counting_checkpoint)
    plain = perturbed_model().train()
    ckpt = DiT(dataclasses.replace(TINY, gradient_checkpointing=True)).train()
    ckpt.load_state_dict(plain.state_dict())
    x, t, text, mask = inputs()
    losses = []
    for model in (plain, ckpt):
        out = model(x, t, text, mask)
        loss = (out - x).square().mean()
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1])
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=1e-5, msg=name)
    assert calls == [False] * TINY.depth  # only the checkpointed model, one call per block
    with torch.no_grad():
        ckpt(x, t, text, mask)  # no recomputation without gradients
    assert len(calls) == TINY.depth


def test_text_cache_equals_plain_forward() -> None:
    model = perturbed_model()
    x, t, text, mask = inputs()
    with torch.no_grad():
        cache = model.prepare_text(text, mask)
        assert len(cache.kv) == TINY.depth and cache.tokens.shape == (2, text.shape[1], TINY.hidden_size)
        for step_t in (t, t * 0.5):  # reused across steps
            assert torch.equal(model(x, step_t, text_cache=cache), model(x, step_t, text, mask))
        with pytest.raises(InvalidInputError, match="batch size 2 does not match x batch size 1"):
            model(x[:1], t[:1], text_cache=cache)


def test_invalid_inputs_raise() -> None:
    model = DiT(TINY)
    x, t, text, mask = inputs()
    with pytest.raises(InvalidInputError, match=r"width=5.*patch size 2"):
        model(torch.zeros(2, 4, 3, 4, 5), t, text, mask)
    with pytest.raises(InvalidInputError, match=r"in_channels=4"):
        model(torch.zeros(2, 3, 3, 4, 4), t, text, mask)
    with pytest.raises(InvalidInputError, match=r"text_dim"):
        model(x, t, text[..., :10], mask)
    with pytest.raises(InvalidInputError, match=r"t has shape \(3,\)"):
        model(x, torch.rand(3), text, mask)
    with pytest.raises(InvalidInputError, match=r"num_tokens|height=3"):
        model.num_tokens(2, 3, 4)
    with pytest.raises(InvalidInputError, match="text_cache"):
        model(x, t)
