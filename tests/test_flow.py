"""Tests of kinema.flow: path, times and shift, samplers against analytic flows, guidance."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from kinema.errors import InvalidInputError
from kinema.flow import (
    SAMPLERS,
    RectifiedFlowPath,
    StepInfo,
    euler,
    get_sampler,
    get_schedule,
    guided_velocity_fn,
    heun,
    resolution_shift,
    sample_logit_normal,
    sample_uniform,
    shift_time,
    truncate_schedule,
)
from kinema.text import TextEmbedding

# ---------------------------------------------------------------------------------------- path


def test_path_endpoints_and_target() -> None:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 2, 4, 5, generator=g)
    noise = torch.randn(3, 2, 4, 5, generator=g)
    path = RectifiedFlowPath()
    at0 = path.sample(x0, noise, torch.zeros(3))
    at1 = path.sample(x0, noise, torch.ones(3))
    torch.testing.assert_close(at0.x_t, x0)
    torch.testing.assert_close(at1.x_t, noise)
    torch.testing.assert_close(at0.velocity, noise - x0)
    mid = path.sample(x0, noise, torch.tensor([0.25, 0.5, 0.75]))
    torch.testing.assert_close(mid.x_t[1], 0.5 * x0[1] + 0.5 * noise[1])
    torch.testing.assert_close(mid.x_t[2], 0.25 * x0[2] + 0.75 * noise[2])


def test_path_velocity_is_time_derivative() -> None:
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 3, 2, 2, 2, generator=g, dtype=torch.float64)
    noise = torch.randn(2, 3, 2, 2, 2, generator=g, dtype=torch.float64)
    path = RectifiedFlowPath()
    t = torch.tensor([0.3, 0.8], dtype=torch.float64)
    _, dxdt = torch.autograd.functional.jvp(
        lambda s: path.sample(x0, noise, s).x_t, (t,), (torch.ones_like(t),)
    )
    torch.testing.assert_close(dxdt, path.sample(x0, noise, t).velocity)


def test_path_inverts_velocity_to_endpoints() -> None:
    g = torch.Generator().manual_seed(2)
    x0, noise = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    t = torch.rand(4, generator=g)
    s = RectifiedFlowPath().sample(x0, noise, t)
    torch.testing.assert_close(RectifiedFlowPath.x0_from_velocity(s.x_t, s.velocity, t), x0)
    torch.testing.assert_close(RectifiedFlowPath.noise_from_velocity(s.x_t, s.velocity, t), noise)


def test_path_rejects_bad_time_shape() -> None:
    x = torch.zeros(2, 3)
    with pytest.raises(InvalidInputError, match=r"\(b,\)"):
        RectifiedFlowPath().sample(x, x, torch.zeros(3))


# ---------------------------------------------------------------------------------------- times


def test_schedule_endpoints_monotone_and_shift() -> None:
    for steps, shift in [(1, 1.0), (10, 1.0), (25, 3.0), (7, 0.5)]:
        sched = get_schedule(steps, shift)
        assert sched.shape == (steps + 1,)
        assert sched[0].item() == 1.0 and sched[-1].item() == 0.0
        assert bool((sched[1:] < sched[:-1]).all())
    torch.testing.assert_close(get_schedule(4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    # shift > 1 spends more of the schedule near the noise end
    assert bool((get_schedule(10, 3.0)[1:-1] > get_schedule(10)[1:-1]).all())
    with pytest.raises(InvalidInputError, match="steps=0"):
        get_schedule(0)
    with pytest.raises(InvalidInputError, match="shift=0"):
        get_schedule(5, 0.0)


def test_shift_formula() -> None:
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    s = 3.0
    shifted = shift_time(t, s)
    torch.testing.assert_close(shifted, s * t / (1 + (s - 1) * t))
    # equivalent statement: the signal/noise ratio (1 - t) / t is divided by the shift
    inner = t[1:-1]
    torch.testing.assert_close((1 - shifted[1:-1]) / shifted[1:-1], (1 - inner) / (s * inner))
    assert shift_time(0.5, 1.0) == 0.5
    assert shift_time(0.5, 3.0) == pytest.approx(0.75)
    torch.testing.assert_close(get_schedule(8, s).double(), shift_time(get_schedule(8).double(), s))


def test_resolution_shift_anchors() -> None:
    assert resolution_shift(256) == pytest.approx(math.exp(0.5))
    assert resolution_shift(4096) == pytest.approx(math.exp(1.15))
    assert resolution_shift(2176) == pytest.approx(math.exp(0.825))  # halfway in tokens
    values = [resolution_shift(n) for n in (16, 64, 256, 1024, 8192)]
    assert values == sorted(values)
    with pytest.raises(InvalidInputError, match="num_tokens=0"):
        resolution_shift(0)


def test_time_samplers_range_and_determinism() -> None:
    a = sample_logit_normal(10_000, generator=torch.Generator().manual_seed(3))
    b = sample_logit_normal(10_000, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert bool(((a > 0) & (a < 1)).all())
    assert a.median().item() == pytest.approx(0.5, abs=0.02)
    shifted = sample_logit_normal(10_000, mean=1.0, generator=torch.Generator().manual_seed(3))
    assert shifted.median().item() == pytest.approx(1 / (1 + math.exp(-1.0)), abs=0.02)
    u = sample_uniform(10_000, generator=torch.Generator().manual_seed(4))
    assert bool(((u >= 0) & (u < 1)).all())
    assert u.mean().item() == pytest.approx(0.5, abs=0.02)
    with pytest.raises(InvalidInputError, match="std=0"):
        sample_logit_normal(4, std=0.0)


# ---------------------------------------------------------------------------------------- samplers

MU, SIGMA = 0.7, 0.4


def gaussian_velocity(x: Tensor, t: Tensor) -> Tensor:
    """Exact marginal velocity ``E[noise - x0 | x_t = x]`` for ``x0 ~ N(MU, SIGMA^2)``.

    ``x_t = a x0 + t n`` with ``a = 1 - t`` is Gaussian with mean ``a MU`` and variance
    ``var = a^2 SIGMA^2 + t^2``; Gaussian conditioning gives
    ``E[n | x] = t (x - a MU) / var`` and ``E[x0 | x] = MU + a SIGMA^2 (x - a MU) / var``.
    The ODE maps the noise ``n = x_1`` to ``x_0 = MU + SIGMA n`` exactly.
    """
    tb = t.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
    a = 1 - tb
    var = a * a * SIGMA**2 + tb * tb
    return (tb - a * SIGMA**2) / var * (x - a * MU) - MU


def _gaussian_error(sampler_name: str, steps: int, noise: Tensor) -> float:
    out = get_sampler(sampler_name)(gaussian_velocity, noise, get_schedule(steps))
    return (out - (MU + SIGMA * noise)).abs().max().item()


def test_samplers_match_gaussian_flow() -> None:
    noise = torch.randn(4096, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    errors = {
        (name, steps): _gaussian_error(name, steps, noise)
        for name in ("euler", "heun")
        for steps in (4, 8, 16, 32)
    }
    for steps in (4, 8, 16, 32):
        assert errors[("heun", steps)] < errors[("euler", steps)]
    for name, order in (("euler", 1), ("heun", 2)):
        # both converge, at their order: doubling the steps divides the error by ~2^order
        for steps in (4, 8, 16):
            ratio = errors[(name, steps)] / errors[(name, 2 * steps)]
            assert ratio > 0.8 * 2**order, (name, steps, ratio)
    assert errors[("heun", 32)] < 5e-3
    samples = heun(gaussian_velocity, noise, get_schedule(32))
    target = MU + SIGMA * noise
    assert samples.mean().item() == pytest.approx(target.mean().item(), abs=1e-3)
    assert samples.std().item() == pytest.approx(target.std().item(), abs=1e-3)
    assert samples.std().item() == pytest.approx(SIGMA, abs=0.02)
    assert samples.mean().item() == pytest.approx(MU, abs=0.02)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_samplers_hit_point_mass(name: str, shift: float) -> None:
    """For ``x0 = c`` the velocity is ``(x - c) / t``; the path is a straight line to ``c``."""
    c = torch.tensor([[0.5, -1.0, 2.0]])

    def point_velocity(x: Tensor, t: Tensor) -> Tensor:
        return (x - c) / t[:, None]

    noise = torch.randn(5, 3, generator=torch.Generator().manual_seed(6))
    out = SAMPLERS[name](point_velocity, noise, get_schedule(3, shift))
    torch.testing.assert_close(out, c.expand(5, 3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_callback_once_per_step(name: str) -> None:
    sched = get_schedule(6, 2.0)
    infos: list[StepInfo] = []
    calls = []

    def fn(x: Tensor, t: Tensor) -> Tensor:
        assert t.shape == (x.shape[0],)
        calls.append(t[0].item())
        return gaussian_velocity(x, t)

    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(7))
    out = SAMPLERS[name](fn, x, sched, callback=infos.append)
    assert [i.step for i in infos] == list(range(6))
    assert all(i.total == 6 for i in infos)
    times = sched.tolist()
    assert [i.t for i in infos] == times[:-1]
    assert [i.t_next for i in infos] == times[1:]
    assert torch.equal(infos[0].x, x)
    assert torch.equal(infos[-1].x_next, out)
    for prev, nxt in zip(infos, infos[1:]):
        assert torch.equal(prev.x_next, nxt.x)
    for info in infos:
        torch.testing.assert_close(info.denoised, info.x - info.t * info.velocity)
    # Heun: 2 evaluations per step except the last (Euler) one to t = 0
    assert len(calls) == (6 if name == "euler" else 11)


def test_samplers_reject_bad_schedule() -> None:
    x = torch.zeros(1, 2)
    for bad in (torch.tensor([0.0, 1.0]), torch.tensor([1.0]), torch.tensor([1.5, 0.0])):
        with pytest.raises(InvalidInputError, match="schedule"):
            euler(gaussian_velocity, x, bad)
    with pytest.raises(InvalidInputError, match="unknown sampler 'rk4'"):
        get_sampler("rk4")


def test_truncate_schedule_and_sdedit_start() -> None:
    sched = get_schedule(10)
    assert torch.equal(truncate_schedule(sched, 1.0), sched)
    half = truncate_schedule(sched, 0.5)
    torch.testing.assert_close(half, torch.tensor([0.5, 0.4, 0.3, 0.2, 0.1, 0.0]))
    odd = truncate_schedule(get_schedule(8, 3.0), 0.55)
    assert odd[0].item() == pytest.approx(0.55) and odd[-1].item() == 0.0
    assert bool((odd[1:] < odd[:-1]).all())
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(InvalidInputError, match="strength"):
            truncate_schedule(sched, bad)
    # SDEdit on a point mass: noise the input to t_start, sample the rest of the way
    c = torch.tensor([[1.0, -2.0]])
    noise = torch.randn(3, 2, generator=torch.Generator().manual_seed(8))
    t_start = half[0].expand(3)
    x_start = RectifiedFlowPath().sample(c.expand(3, 2), noise, t_start).x_t
    out = heun(lambda x, t: (x - c) / t[:, None], x_start, half)
    torch.testing.assert_close(out, c.expand(3, 2), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------- guidance


class ToyDiT:
    """A small deterministic model with the DiT signature, per-sample independent.

    ``v = x * w + mean of real text tokens (projected) + t + cond`` so the text mask matters and
    padding must not change the result. Records the batch size of every call.
    """

    def __init__(self, dim: int = 8, channels: int = 2) -> None:
        g = torch.Generator().manual_seed(9)
        self.proj = torch.randn(dim, channels, generator=g)
        self.calls: list[int] = []

    def __call__(
        self,
        x: Tensor,
        t: Tensor,
        text: Tensor,
        text_mask: Tensor,
        cond_latents: Tensor | None = None,
        cond_mask: Tensor | None = None,
    ) -> Tensor:
        self.calls.append(x.shape[0])
        m = text_mask.to(text.dtype)[..., None]  # (b, l, 1)
        pooled = (text * m).sum(1) / m.sum(1)  # (b, d)
        bias = (pooled @ self.proj)[:, :, None, None, None]  # (b, c, 1, 1, 1)
        v = 0.5 * x + bias + t[:, None, None, None, None]
        if cond_latents is not None and cond_mask is not None:
            v = v + cond_latents * cond_mask[:, None, :, None, None]
        return v


def _embedding(lengths: list[int], seed: int, dim: int = 8) -> TextEmbedding:
    g = torch.Generator().manual_seed(seed)
    return TextEmbedding.from_unpadded([torch.randn(n, dim, generator=g) for n in lengths])


def test_cfg_scales_and_batching() -> None:
    model = ToyDiT()
    text = _embedding([5, 3], seed=10)
    negative = _embedding([2, 7], seed=11)  # different lengths: padded to one length inside
    g = torch.Generator().manual_seed(12)
    x = torch.randn(2, 2, 3, 4, 4, generator=g)
    t = torch.tensor([0.9, 0.4])
    cond_latents = torch.randn(2, 2, 3, 4, 4, generator=g)
    cond_mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])

    v_cond = model(x, t, text.states, text.mask, cond_latents, cond_mask)
    v_uncond = model(x, t, negative.states, negative.mask, cond_latents, cond_mask)
    model.calls.clear()

    fn1 = guided_velocity_fn(model, text, negative, 1.0, cond_latents, cond_mask)
    assert torch.equal(fn1(x, t), v_cond)
    assert model.calls == [2]  # scale 1 skips the unconditional branch

    model.calls.clear()
    fn0 = guided_velocity_fn(model, text, negative, 0.0, cond_latents, cond_mask)
    torch.testing.assert_close(fn0(x, t), v_uncond, atol=1e-6, rtol=1e-6)
    assert model.calls == [4]  # one batched call, cond + uncond

    fn = guided_velocity_fn(model, text, negative, 4.5, cond_latents, cond_mask)
    expected = v_uncond + 4.5 * (v_cond - v_uncond)
    torch.testing.assert_close(fn(x, t), expected, atol=1e-5, rtol=1e-6)
    assert not torch.allclose(expected, v_cond)


def test_cfg_negative_broadcast_and_errors() -> None:
    model = ToyDiT()
    text = _embedding([4, 6, 3], seed=13)
    empty = _embedding([2], seed=14)  # one negative prompt shared by the batch
    x = torch.randn(3, 2, 1, 2, 2, generator=torch.Generator().manual_seed(15))
    t = torch.full((3,), 0.5)
    v_u = model(x, t, empty.repeat(3).states, empty.repeat(3).mask)
    v_c = model(x, t, text.states, text.mask)
    out = guided_velocity_fn(model, text, empty, 2.0)(x, t)
    torch.testing.assert_close(out, v_u + 2.0 * (v_c - v_u), atol=1e-5, rtol=1e-6)
    # the guided fn is a VelocityFn: it drives a sampler
    assert euler(guided_velocity_fn(model, text, empty, 2.0), x, get_schedule(2)).shape == x.shape
    with pytest.raises(InvalidInputError, match="negative"):
        guided_velocity_fn(model, text, None, 2.0)
    with pytest.raises(InvalidInputError, match="allowed 1 or 3"):
        guided_velocity_fn(model, text, _embedding([2, 2], seed=16), 2.0)
    with pytest.raises(InvalidInputError, match="scale=-1"):
        guided_velocity_fn(model, text, empty, -1.0)
    with pytest.raises(InvalidInputError, match="batch 2"):
        guided_velocity_fn(model, text, empty, 2.0)(x[:2], t[:2])


def test_text_embedding_pad_and_cat() -> None:
    a, b = _embedding([3, 1], seed=17), _embedding([5], seed=18)
    both = TextEmbedding.cat([a, b])
    assert both.states.shape == (3, 5, 8)
    assert both.lengths.tolist() == [3, 1, 5]
    assert torch.equal(both.states[:2, :3], a.states)
    assert both.states[:2, 3:].abs().sum().item() == 0.0
    assert torch.equal(a.pad_to(3).states, a.states)
    with pytest.raises(InvalidInputError, match="allowed lengths >= 5"):
        b.pad_to(2)


def test_guidance_precomputes_dit_text_once_with_the_same_result() -> None:
    """With a real DiT the text projection and cross-attention K/V are computed once per sampling
    run (``bind_text``), and the guided velocity equals two plain forward passes."""
    from kinema.dit import DIT_PRESETS, DiT

    torch.manual_seed(0)
    dit = DiT(DIT_PRESETS["tiny"]).eval()
    for p in dit.parameters():  # leave adaLN-zero's identity start so the output depends on text
        torch.nn.init.normal_(p, std=0.05)
    dim = dit.config.text_dim
    text, negative = _embedding([5], seed=30, dim=dim), _embedding([2], seed=31, dim=dim)
    x = torch.randn(1, dit.config.in_channels, 2, 4, 4)
    t = torch.tensor([0.7])
    calls = []
    original = dit.prepare_text
    dit.prepare_text = lambda s, m: calls.append(1) or original(s, m)  # type: ignore[method-assign]
    fn = guided_velocity_fn(dit, text, negative, 3.0)
    with torch.no_grad():
        out = [fn(x, t) for _ in range(3)]
        v_c = dit(x, t, text.states, text.mask)
        v_u = dit(x, t, negative.states, negative.mask)
    assert len(calls) == 1 + 2  # once for the guided fn, then once per plain call above
    torch.testing.assert_close(out[0], v_u + 3.0 * (v_c - v_u), atol=1e-5, rtol=1e-5)
    assert torch.equal(out[0], out[2])
