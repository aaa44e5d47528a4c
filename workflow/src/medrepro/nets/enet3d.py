"""3D E-Net (Paszke et al. 2016) as used by the LowRes paper, exportable to OpenVINO.

Paszke, Chaurasia, Kim, Culurciello, "ENet: a deep neural network architecture for real-time
semantic segmentation", arXiv:1606.02147 (2016); ported to 3D by Shirokikh et al. (2021, paper
003, ``neuro-ml/low-resolution`` ``lowres/model/enet3d.py``, itself a port of
``davidtvs/PyTorch-ENet``). Layout at ``width_mult = 1`` (channels, resolution):

- initial block: ``3^3`` stride-2 conv (``16 - C_in`` channels) concatenated with a ``2^3``
  max-pool of the input, ``BatchNorm3d -> PReLU``: 16 @ 1/2;
- stage 1: downsampling bottleneck 1.0 (16 -> 64 @ 1/4), 4 regular bottlenecks, dropout 0.01;
- stage 2: downsampling bottleneck 2.0 (64 -> 128 @ 1/8), then regular, dilated 2, asymmetric 5,
  dilated 4, regular, dilated 8, asymmetric 5, dilated 16; dropout 0.1;
- stage 3: stage 2 without its downsampling bottleneck;
- stage 4: upsampling bottleneck 4.0 (128 -> 64 @ 1/4, unpooled with the indices of 2.0),
  2 regular bottlenecks;
- stage 5: upsampling bottleneck 5.0 (64 -> 16 @ 1/2, indices of 1.0), 1 regular bottleneck;
- full conv: ``ConvTranspose3d(16, 1, 2, stride=2)`` to full resolution, one logit channel.

Bottlenecks follow the original E-Net: ``1^3`` projection to ``C/4`` channels (``2^3`` stride 2 in
a downsampling bottleneck), the main conv, ``1^3`` expansion, BN after every conv (eps 1e-3),
PReLU (one slope per channel) after the projection and main conv, ``Dropout3d`` on the expansion,
residual add, PReLU. Asymmetric convs are factorised in 3D as ``k x 1 x 1 -> 1 x k x 1 -> 1 x 1 x
k`` (k = 5, no norm between them, as the original 2D ``5 x 1 -> 1 x 5``). The downsampling main
branch pads the pooled channels with zeros (``F.pad``: no device-specific zeros, unlike the
reference port's ``torch.zeros(...).cuda()``).

Unpooling: ``torch.nn.MaxUnpool3d`` does not convert to OpenVINO 2026.4 through the TorchScript
route (``ov.convert_model(model, example_input=x)`` fails to trace ``aten::max_unpool3d``: "cond
must be a bool, but got a Tensor"). :func:`first_max_mask` and :func:`masked_unpool` give the same
values with exportable ops: the pooling keeps a 0/1 mask marking, in every ``2^3`` window, the
first maximum in ``(z, y, x)`` raster order (the element ``MaxPool3d(return_indices=True)``
points at), and unpooling is nearest x2 upsampling times that mask. ``unpool="indices"`` keeps
torch's own ``max_pool3d`` indices and ``max_unpool3d`` (reference; training only).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from medrepro.nets.shapes import SameShapeContract, check_sides

__all__ = [
    "DIVISOR",
    "UNPOOL_MODES",
    "ENet3D",
    "InitialBlock3d",
    "RegularBottleneck3d",
    "DownsamplingBottleneck3d",
    "UpsamplingBottleneck3d",
    "first_max_mask",
    "masked_unpool",
    "scaled_channels",
]

#: sides must be multiples of this (three x2 downsamplings)
DIVISOR = 8
#: ``"mask"`` (exportable, default) or ``"indices"`` (torch max_unpool3d)
UNPOOL_MODES = ("mask", "indices")
#: BatchNorm epsilon of the original E-Net
BN_EPS = 1e-3
#: channels of the initial block, stage 1 and stages 2-3 at ``width_mult = 1``
BASE_CHANNELS = (16, 64, 128)


def scaled_channels(channels: int, width_mult: float, multiple: int = 4) -> int:
    """``channels * width_mult`` rounded to the nearest multiple of ``multiple`` (at least it)."""
    return max(multiple, int(round(channels * width_mult / multiple)) * multiple)


def _window_priority(shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """``(1, 1, D, H, W)``: 8, 7, ..., 1 over each ``2^3`` window in ``(z, y, x)`` raster order."""
    base = torch.arange(8, 0, -1, dtype=like.dtype, device=like.device).reshape(1, 1, 2, 2, 2)
    return base.repeat(1, 1, *(s // 2 for s in shape))


def first_max_mask(x: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    """0/1 mask of the voxel each ``2^3`` max-pool window takes its maximum from.

    Args:
        x: ``(N, C, D, H, W)`` with even sides.
        pooled: ``F.max_pool3d(x, 2)``, ``(N, C, D/2, H/2, W/2)``.

    Returns:
        ``(N, C, D, H, W)``, dtype of ``x``: exactly one 1 per window per channel, at the first
        maximum in ``(z, y, x)`` raster order, i.e. where ``MaxPool3d(2, return_indices=True)``
        points (ties included). Built from comparisons, nearest upsampling and max-pooling only,
        so it converts to OpenVINO.
    """
    ties = (x == F.interpolate(pooled, scale_factor=2.0, mode="nearest")).to(x.dtype)
    ranked = ties * _window_priority(x.shape[2:], x)
    best = F.interpolate(F.max_pool3d(ranked, 2), scale_factor=2.0, mode="nearest")
    return (ranked == best).to(x.dtype)


def masked_unpool(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``MaxUnpool3d(2)`` with a :func:`first_max_mask`: ``(N, C, S) -> (N, C, 2S)``.

    Each value of ``y`` goes to the voxel its window's mask marks; every other voxel is 0.
    """
    return F.interpolate(y, scale_factor=2.0, mode="nearest") * mask


def _bn(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=BN_EPS)


def _conv_bn_prelu(conv: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(conv, _bn(channels), nn.PReLU(channels))


def _dropout(p: float) -> nn.Module:
    return nn.Dropout3d(p) if p > 0 else nn.Identity()


class InitialBlock3d(nn.Module):
    """``cat(conv3 stride 2, maxpool 2) -> BN -> PReLU``: ``(N, C_in, S) -> (N, C, S/2)``."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        if out_ch <= in_ch:
            raise ValueError(f"InitialBlock3d: out_ch ({out_ch}) must exceed in_ch ({in_ch})")
        self.conv = nn.Conv3d(in_ch, out_ch - in_ch, 3, stride=2, padding=1, bias=False)
        self.pool = nn.MaxPool3d(2)
        self.bn = _bn(out_ch)
        self.act = nn.PReLU(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)))


class RegularBottleneck3d(nn.Module):
    """Regular, dilated or asymmetric bottleneck, channels and size kept.

    ``x -> PReLU(x + drop(BN(conv1(main(proj(x))))))`` with ``proj`` a ``1^3`` conv to
    ``C / ratio`` channels (BN, PReLU) and ``main`` a ``3^3`` conv with ``dilation`` (padding =
    dilation) or, if ``asymmetric``, ``k x 1 x 1 -> 1 x k x 1 -> 1 x 1 x k`` convs (BN, PReLU).

    Args:
        channels: ``C``.
        dilation: dilation of the ``3^3`` conv (voxels between taps).
        asymmetric: use the factorised ``k``-long convs instead.
        kernel: ``k`` of the asymmetric convs (E-Net: 5).
        dropout: ``Dropout3d`` probability.
        ratio: projection ratio (E-Net: 4).
    """

    def __init__(
        self,
        channels: int,
        dilation: int = 1,
        asymmetric: bool = False,
        kernel: int = 5,
        dropout: float = 0.1,
        ratio: int = 4,
    ) -> None:
        super().__init__()
        inner = max(1, channels // ratio)
        self.proj = _conv_bn_prelu(nn.Conv3d(channels, inner, 1, bias=False), inner)
        if asymmetric:
            p = kernel // 2
            convs = [
                nn.Conv3d(inner, inner, (kernel, 1, 1), padding=(p, 0, 0), bias=False),
                nn.Conv3d(inner, inner, (1, kernel, 1), padding=(0, p, 0), bias=False),
                nn.Conv3d(inner, inner, (1, 1, kernel), padding=(0, 0, p), bias=False),
            ]
            self.main = nn.Sequential(*convs, _bn(inner), nn.PReLU(inner))
        else:
            conv = nn.Conv3d(inner, inner, 3, padding=dilation, dilation=dilation, bias=False)
            self.main = _conv_bn_prelu(conv, inner)
        self.expand = nn.Sequential(nn.Conv3d(inner, channels, 1, bias=False), _bn(channels))
        self.drop = _dropout(dropout)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.drop(self.expand(self.main(self.proj(x)))))


class DownsamplingBottleneck3d(nn.Module):
    """Bottleneck that halves the sides: ``(N, C_in, S) -> (N, C_out, S/2)`` and a pooling record.

    Main branch: ``2^3`` max-pool, channels zero-padded to ``C_out``. Extension: ``2^3`` stride-2
    projection to ``C_in / ratio`` (BN, PReLU), ``3^3`` conv (BN, PReLU), ``1^3`` expansion to
    ``C_out`` (BN), dropout. Output: ``PReLU(main + ext)``.

    ``forward`` returns ``(y, record)``: the :func:`first_max_mask` ``(N, C_in, S)`` in
    ``"mask"`` mode, torch's flat max-pool indices ``(N, C_in, S/2)`` in ``"indices"`` mode.
    """

    def __init__(
        self, in_ch: int, out_ch: int, dropout: float = 0.1, ratio: int = 4, unpool: str = "mask"
    ) -> None:
        super().__init__()
        if out_ch < in_ch:
            raise ValueError(f"DownsamplingBottleneck3d: out_ch {out_ch} < in_ch {in_ch}")
        if unpool not in UNPOOL_MODES:
            raise ValueError(f"unknown unpool {unpool!r}; expected one of {UNPOOL_MODES}")
        self.unpool = unpool
        self.pad = out_ch - in_ch
        inner = max(1, in_ch // ratio)
        self.proj = _conv_bn_prelu(nn.Conv3d(in_ch, inner, 2, stride=2, bias=False), inner)
        self.main = _conv_bn_prelu(nn.Conv3d(inner, inner, 3, padding=1, bias=False), inner)
        self.expand = nn.Sequential(nn.Conv3d(inner, out_ch, 1, bias=False), _bn(out_ch))
        self.drop = _dropout(dropout)
        self.act = nn.PReLU(out_ch)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.unpool == "indices":
            pooled, record = F.max_pool3d(x, 2, return_indices=True)
        else:
            pooled = F.max_pool3d(x, 2)
            record = first_max_mask(x, pooled)
        main = F.pad(pooled, (0, 0, 0, 0, 0, 0, 0, self.pad))
        ext = self.drop(self.expand(self.main(self.proj(x))))
        return self.act(main + ext), record


class UpsamplingBottleneck3d(nn.Module):
    """Bottleneck that doubles the sides with the matching pooling record.

    ``(N, C_in, S), record -> (N, C_out, 2S)``. Main branch: ``1^3`` conv to ``C_out`` (BN), then
    max-unpooling with the record of the downsampling bottleneck that had ``C_out`` input
    channels. Extension: ``1^3`` projection to ``C_in / ratio`` (BN, PReLU),
    ``ConvTranspose3d(3, stride 2, padding 1, output_padding 1)`` (BN, PReLU), ``1^3`` expansion to
    ``C_out`` (BN), dropout. Output: ``PReLU(main + ext)``.
    """

    def __init__(
        self, in_ch: int, out_ch: int, dropout: float = 0.1, ratio: int = 4, unpool: str = "mask"
    ) -> None:
        super().__init__()
        if unpool not in UNPOOL_MODES:
            raise ValueError(f"unknown unpool {unpool!r}; expected one of {UNPOOL_MODES}")
        self.unpool = unpool
        inner = max(1, in_ch // ratio)
        self.shortcut = nn.Sequential(nn.Conv3d(in_ch, out_ch, 1, bias=False), _bn(out_ch))
        self.proj = _conv_bn_prelu(nn.Conv3d(in_ch, inner, 1, bias=False), inner)
        up = nn.ConvTranspose3d(inner, inner, 3, stride=2, padding=1, output_padding=1, bias=False)
        self.main = _conv_bn_prelu(up, inner)
        self.expand = nn.Sequential(nn.Conv3d(inner, out_ch, 1, bias=False), _bn(out_ch))
        self.drop = _dropout(dropout)
        self.act = nn.PReLU(out_ch)

    def forward(self, x: torch.Tensor, record: torch.Tensor) -> torch.Tensor:
        short = self.shortcut(x)
        if self.unpool == "indices":
            size = [2 * int(s) for s in short.shape[2:]]
            main = F.max_unpool3d(short, record, 2, output_size=size)
        else:
            main = masked_unpool(short, record)
        ext = self.drop(self.expand(self.main(self.proj(x))))
        return self.act(main + ext)


def _stage23(channels: int, dropout: float, kernel: int) -> list[nn.Module]:
    """Regular, dilated 2, asymmetric, dilated 4, regular, dilated 8, asymmetric, dilated 16."""
    rb = RegularBottleneck3d
    return [
        rb(channels, dropout=dropout),
        rb(channels, dilation=2, dropout=dropout),
        rb(channels, asymmetric=True, kernel=kernel, dropout=dropout),
        rb(channels, dilation=4, dropout=dropout),
        rb(channels, dropout=dropout),
        rb(channels, dilation=8, dropout=dropout),
        rb(channels, asymmetric=True, kernel=kernel, dropout=dropout),
        rb(channels, dilation=16, dropout=dropout),
    ]


class ENet3D(SameShapeContract, nn.Module):
    """3D E-Net: ``(N, C_in, D, H, W)`` in [0, 1] -> logits ``(N, C_out, D, H, W)``.

    Args:
        width_mult: channel multiplier of the ``16, 64, 128`` widths (rounded to multiples of
            4; 0.25 gives ``4, 16, 32``).
        in_channels: input channels (1).
        out_channels: logit channels (1).
        dropout: ``Dropout3d`` probability from stage 2 on (E-Net: 0.1).
        dropout_stage1: probability in stage 1 (E-Net: 0.01).
        asymmetric_kernel: ``k`` of the factorised asymmetric convs (E-Net: 5).
        unpool: ``"mask"`` (exportable, default) or ``"indices"`` (torch's ``MaxUnpool3d``; does
            not convert to OpenVINO). Both give the same values.

    Sides must be multiples of :attr:`divisor` = 8 (voxels); ``margin`` = 0.

    Raises:
        ValueError: bad ``width_mult`` or ``unpool``; in ``forward``, a side that is not a
            multiple of 8.
    """

    #: output (= input) sides must be multiples of this (voxels)
    divisor = DIVISOR

    def __init__(
        self,
        width_mult: float = 1.0,
        in_channels: int = 1,
        out_channels: int = 1,
        dropout: float = 0.1,
        dropout_stage1: float = 0.01,
        asymmetric_kernel: int = 5,
        unpool: str = "mask",
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"ENet3D: width_mult must be > 0, got {width_mult}")
        if unpool not in UNPOOL_MODES:
            raise ValueError(f"unknown unpool {unpool!r}; expected one of {UNPOOL_MODES}")
        c0, c1, c2 = (scaled_channels(c, width_mult) for c in BASE_CHANNELS)
        c0 = max(c0, in_channels + 1)
        self.channels = (c0, c1, c2)
        self.initial = InitialBlock3d(in_channels, c0)
        self.down1 = DownsamplingBottleneck3d(c0, c1, dropout_stage1, unpool=unpool)
        self.stage1 = nn.Sequential(
            *(RegularBottleneck3d(c1, dropout=dropout_stage1) for _ in range(4))
        )
        self.down2 = DownsamplingBottleneck3d(c1, c2, dropout, unpool=unpool)
        self.stage2 = nn.Sequential(*_stage23(c2, dropout, asymmetric_kernel))
        self.stage3 = nn.Sequential(*_stage23(c2, dropout, asymmetric_kernel))
        self.up4 = UpsamplingBottleneck3d(c2, c1, dropout, unpool=unpool)
        self.stage4 = nn.Sequential(*(RegularBottleneck3d(c1, dropout=dropout) for _ in range(2)))
        self.up5 = UpsamplingBottleneck3d(c1, c0, dropout, unpool=unpool)
        self.stage5 = RegularBottleneck3d(c0, dropout=dropout)
        self.fullconv = nn.ConvTranspose3d(c0, out_channels, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing():
            check_sides(tuple(x.shape[2:]), self.divisor, "ENet3D input")
        y = self.initial(x)
        y, record1 = self.down1(y)
        y = self.stage1(y)
        y, record2 = self.down2(y)
        y = self.stage3(self.stage2(y))
        y = self.stage4(self.up4(y, record2))
        y = self.stage5(self.up5(y, record1))
        return self.fullconv(y)
