"""Causal 3D building blocks of the VAE: convolution, norms, residual block, down/upsampling.

Every layer here is causal in time: output frame ``i`` depends only on input frames ``<= i``.
Convolutions pad time on the past side only (by repeating frame 0, so an image behaves like a still
video), and norms never mix frames. Temporal resampling keeps frame 0 on its own: downsampling by
``r`` maps ``1 + k * r`` frames to ``1 + k``, upsampling maps ``1 + k`` back to ``1 + k * r``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.nn import functional as F


def _triple(value: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (value, value, value) if isinstance(value, int) else value


def conv3d(conv: nn.Conv3d, x: Tensor) -> Tensor:
    """``conv(x)``, forcing oneDNN (mkldnn) for float32 CPU inputs.

    PyTorch's CPU heuristic sends a batch-1 input with ``b * c * f * h <= 20480`` to its native
    ``slow_conv3d`` kernel, which is 4-11x slower than oneDNN for this VAE's 3x3x3 convolutions on
    CPU (measured on the 2-core machine: 43 ms vs 8 ms for 32->128 channels at 19x32x32). That is
    exactly the single-clip decode path of generation, so call oneDNN directly there. Autograd
    works through it (same gradients); other devices and dtypes take ``conv`` unchanged.
    """
    if x.device.type != "cpu" or x.dtype != torch.float32 or not torch.backends.mkldnn.is_available() or conv.groups != 1:
        return conv(x)
    return torch.ops.aten.mkldnn_convolution(
        x.contiguous(), conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation), 1  # type: ignore[arg-type]
    )


class CausalConv3d(nn.Module):
    """3D convolution, causal in time, "same" zero padding in space.

    With time kernel ``kt`` and time stride ``st``, the input is padded with ``kt - 1`` copies of
    frame 0 in front, so ``f = 1 + k * st`` frames give ``1 + k`` output frames and output frame
    ``j`` sees input frames ``j * st - kt + 1 .. j * st``.

    Shapes: ``(b, c_in, f, h, w) -> (b, c_out, 1 + (f - 1) // st, h // sh, w // sw)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 3,
        stride: int | tuple[int, int, int] = 1,
    ) -> None:
        super().__init__()
        kt, kh, kw = _triple(kernel_size)
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"CausalConv3d spatial kernel ({kh}, {kw}) invalid: must be odd")
        self.time_pad = kt - 1
        self.conv = nn.Conv3d(
            in_channels, out_channels, (kt, kh, kw), stride=_triple(stride), padding=(0, kh // 2, kw // 2)
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.time_pad > 0:
            first = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
            x = torch.cat([first, x], dim=2)  # (b, c, f + kt - 1, h, w)
        return conv3d(self.conv, x)


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm with statistics per frame (over channels-in-group x height x width), never across time.

    Shapes: ``(b, c, f, h, w) -> (b, c, f, h, w)``.
    """

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        y = rearrange(x, "b c f h w -> (b f) c h w")
        y = F.group_norm(y, self.num_groups, self.weight, self.bias, self.eps)
        return rearrange(y, "(b f) c h w -> b c f h w", b=b)


class ChannelRMSNorm(nn.Module):
    """RMS norm over channels at each voxel (purely local: causal and size-independent).

    Shapes: ``(b, c, f, h, w) -> (b, c, f, h, w)``.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        scale = torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)  # (b, 1, f, h, w)
        return x * scale * self.weight.view(1, -1, 1, 1, 1)


def make_norm(kind: str, channels: int, groups: int) -> nn.Module:
    """The norm layer named by ``VAEConfig.norm`` ("group" or "rms")."""
    if kind == "group":
        return FrameGroupNorm(min(groups, channels), channels, eps=1e-6)
    if kind == "rms":
        return ChannelRMSNorm(channels)
    raise ValueError(f"norm={kind!r} invalid: allowed values are ('group', 'rms')")


class ResBlock3d(nn.Module):
    """Pre-norm residual block: ``x + conv(silu(norm(conv(silu(norm(x))))))``.

    The second convolution starts at zero, so the block starts as the identity (or as the 1x1x1
    channel projection when ``in_channels != out_channels``).

    Shapes: ``(b, c_in, f, h, w) -> (b, c_out, f, h, w)``.
    """

    def __init__(self, in_channels: int, out_channels: int, norm: str, norm_groups: int) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, in_channels, norm_groups)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3)
        self.norm2 = make_norm(norm, out_channels, norm_groups)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3)
        nn.init.zeros_(self.conv2.conv.weight)
        nn.init.zeros_(self.conv2.conv.bias)
        self.skip: nn.Module = (
            nn.Identity() if in_channels == out_channels else nn.Conv3d(in_channels, out_channels, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        skip = conv3d(self.skip, x) if isinstance(self.skip, nn.Conv3d) else x
        return skip + h


class Downsample3d(nn.Module):
    """Strided causal convolution halving height and width, and time when ``temporal``.

    Shapes: ``(b, c_in, f, h, w) -> (b, c_out, f', h / 2, w / 2)`` with ``f' = 1 + (f - 1) / 2``
    when ``temporal`` (``f`` must be odd) else ``f' = f``.
    """

    def __init__(self, in_channels: int, out_channels: int, temporal: bool) -> None:
        super().__init__()
        self.temporal = temporal
        self.conv = CausalConv3d(in_channels, out_channels, 3, stride=(2 if temporal else 1, 2, 2))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample3d(nn.Module):
    """Causal convolution then depth-to-space (and depth-to-time when ``temporal``).

    The convolution runs at the low resolution and emits ``r_t * 2 * 2`` sub-voxels per output
    channel; they are shuffled into space and time. In time, latent frame 0 becomes one frame (its
    first ``r_t - 1`` sub-frames are dropped) and every later latent frame becomes ``r_t`` frames, so
    ``1 + k`` frames map to ``1 + k * r_t`` and output frame ``i`` depends on inputs ``<= ceil(i / r_t)``,
    i.e. on the latent frames that encoded frames ``<= i``. Weights start ICNR-style (all sub-voxels
    equal) so the layer starts as a nearest-neighbour upsample of a convolution, free of checkerboards.

    Shapes: ``(b, c_in, f, h, w) -> (b, c_out, 1 + (f - 1) * r_t, 2h, 2w)``.
    """

    def __init__(self, in_channels: int, out_channels: int, temporal: bool) -> None:
        super().__init__()
        self.rt = 2 if temporal else 1
        self.out_channels = out_channels
        sub = self.rt * 4
        self.conv = CausalConv3d(in_channels, out_channels * sub, 3)
        with torch.no_grad():  # ICNR: copy sub-voxel 0's filters to every sub-voxel
            w = self.conv.conv.weight.view(out_channels, sub, *self.conv.conv.weight.shape[1:])
            w.copy_(w[:, :1].expand_as(w))
            b = self.conv.conv.bias.view(out_channels, sub)
            b.copy_(b[:, :1].expand_as(b))

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)  # (b, c_out * rt * 4, f, h, w)
        y = rearrange(y, "b (c rt rh rw) f h w -> b c (f rt) (h rh) (w rw)", rt=self.rt, rh=2, rw=2)
        if self.rt > 1:
            y = y[:, :, self.rt - 1 :]  # frame 0 stays one frame: (b, c_out, 1 + (f - 1) * rt, 2h, 2w)
        return y
