"""2D stacked hourglass network (Newell, Yang, Deng, "Stacked hourglass networks for human pose
estimation", ECCV 2016), the ``hg`` baseline of the face landmark study (Fu et al., MLMI 2020).

Layout as the authors' code (``princeton-vl/pose-hg-train``, ported in
``princeton-vl/pytorch_stacked_hourglass``): pre-activation residual modules
``BN -> ReLU -> 1x1 (C/2) -> BN -> ReLU -> 3x3 (C/2) -> BN -> ReLU -> 1x1 (C)`` with a ``1x1``
skip conv when the channels change; stem ``conv 7x7 s2 -> BN -> ReLU -> residual -> maxpool 2
-> residual -> residual`` (widths ``C/4, C/2, C/2, C``, so ``C = 256`` gives the original
``64, 128, 128, 256``); each hourglass level is ``up(x) + upsample(low3(inner(low1(pool(x)))))``
with nearest ``x2`` upsampling and the same width ``C`` at every level; after each hourglass a
residual, a ``1x1 conv -> BN -> ReLU`` and a ``1x1`` conv to ``K`` heatmaps (no activation);
between stacks ``x + merge_preds(heatmaps) + merge_features(features)``. Output stride 4.

Convs followed by BN have no bias (the original has one; it is redundant), so parameter counts
are a few thousand lower than the port's. Initialisation is PyTorch's default (as the port).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from medrepro.nets.shapes import check_sides

__all__ = ["Residual2d", "Hourglass2d", "StackedHourglass2D"]


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """``Conv2d (no bias, 'same' padding) -> BN -> ReLU``."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, bias=False),
            bn=nn.BatchNorm2d(out_ch),
            relu=nn.ReLU(inplace=True),
        )
    )


class Residual2d(nn.Module):
    """Newell's pre-activation bottleneck residual module, ``(N, in_ch, H, W)`` ->
    ``(N, out_ch, H, W)``.

    Args:
        in_ch: input channels.
        out_ch: output channels; the bottleneck has ``max(1, out_ch // 2)``.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        mid = max(1, out_ch // 2)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_ch, 1)
        self.relu = nn.ReLU()
        self.skip: nn.Module = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(self.relu(self.bn1(x)))
        y = self.conv2(self.relu(self.bn2(y)))
        y = self.conv3(self.relu(self.bn3(y)))
        return y + self.skip(x)


class Hourglass2d(nn.Module):
    """One recursive hourglass of ``depth`` levels at constant width, ``(N, C, H, W)`` ->
    ``(N, C, H, W)``; ``H`` and ``W`` must be divisible by ``2**depth``.

    ``forward(x) = up(x) + upsample(low3(inner(low1(maxpool(x)))))`` where ``inner`` is the
    hourglass of ``depth - 1`` levels, or a residual at the bottom.

    Args:
        channels: ``C``.
        depth: number of ``x2`` poolings (4 in Newell et al.: 64 -> 4 pixels).
    """

    def __init__(self, channels: int, depth: int) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"hourglass depth must be >= 1, got {depth}")
        self.up = Residual2d(channels, channels)
        self.pool = nn.MaxPool2d(2, 2)
        self.low1 = Residual2d(channels, channels)
        self.inner: nn.Module = (
            Hourglass2d(channels, depth - 1) if depth > 1 else Residual2d(channels, channels)
        )
        self.low3 = Residual2d(channels, channels)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.low3(self.inner(self.low1(self.pool(x))))
        return self.up(x) + self.upsample(low)


class StackedHourglass2D(nn.Module):
    """Stacked hourglass, ``(N, C_in, H, W)`` -> heatmaps ``(N, K, H/4, W/4)``.

    Newell et al. use ``n_stacks=8, channels=256, depth=4`` at 256 x 256. Sides must be
    divisible by ``4 * 2**depth`` (``ValueError`` otherwise): 64 for depth 4, 32 for depth 3.

    Args:
        n_landmarks: ``K`` heatmaps per stack.
        n_stacks: number of hourglasses (each one's heatmaps are supervised).
        channels: width ``C`` of the hourglasses (a multiple of 4; the stem has ``C/4, C/2``).
        depth: poolings per hourglass.
        in_channels: input channels (3 for RGB).
    """

    #: input pixels per heatmap pixel
    stride: int = 4

    def __init__(
        self,
        n_landmarks: int,
        n_stacks: int = 2,
        channels: int = 64,
        depth: int = 4,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if n_stacks < 1 or depth < 1:
            raise ValueError(f"n_stacks ({n_stacks}) and depth ({depth}) must be >= 1")
        if channels < 4 or channels % 4:
            raise ValueError(f"channels must be a positive multiple of 4, got {channels}")
        self.n_stacks = n_stacks
        self.depth = depth
        c = channels
        self.stem = nn.Sequential(
            OrderedDict(
                conv=_conv_bn_relu(in_channels, c // 4, 7, stride=2),
                res1=Residual2d(c // 4, c // 2),
                pool=nn.MaxPool2d(2, 2),
                res2=Residual2d(c // 2, c // 2),
                res3=Residual2d(c // 2, c),
            )
        )
        self.hourglasses = nn.ModuleList(Hourglass2d(c, depth) for _ in range(n_stacks))
        self.features = nn.ModuleList(
            nn.Sequential(OrderedDict(res=Residual2d(c, c), conv=_conv_bn_relu(c, c, 1)))
            for _ in range(n_stacks)
        )
        self.heads = nn.ModuleList(nn.Conv2d(c, n_landmarks, 1) for _ in range(n_stacks))
        self.merge_features = nn.ModuleList(nn.Conv2d(c, c, 1) for _ in range(n_stacks - 1))
        self.merge_preds = nn.ModuleList(nn.Conv2d(n_landmarks, c, 1) for _ in range(n_stacks - 1))
        # Heads start near zero (N(0, 0.001), as the SimpleBaselines decoder): with PyTorch's
        # default init the first heatmaps are ~10x the targets' energy, and a short training
        # spends its steps shrinking them instead of localising.
        for head in self.heads:
            nn.init.normal_(head.weight, std=0.001)
            nn.init.zeros_(head.bias)

    @property
    def divisor(self) -> int:
        """Every input side must be a multiple of this: ``4 * 2**depth`` pixels."""
        return self.stride * 2**self.depth

    def check_input_shape(self, spatial_shape: Sequence[int]) -> None:
        """Raise ``ValueError`` unless both sides of ``(H, W)`` are multiples of :attr:`divisor`."""
        check_sides(
            tuple(spatial_shape),
            self.divisor,
            f"StackedHourglass2D(depth={self.depth}) input (stride 4 x 2**depth)",
        )

    def forward_stacks(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(N, C_in, H, W)`` -> every stack's heatmaps, a list of ``n_stacks``
        ``(N, K, H/4, W/4)`` tensors (for intermediate supervision)."""
        if not torch.jit.is_tracing():
            self.check_input_shape(x.shape[2:])
        x = self.stem(x)
        preds: list[torch.Tensor] = []
        for i in range(self.n_stacks):
            feat = self.features[i](self.hourglasses[i](x))
            pred = self.heads[i](feat)
            preds.append(pred)
            if i < self.n_stacks - 1:
                x = x + self.merge_preds[i](pred) + self.merge_features[i](feat)
        return preds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C_in, H, W)`` -> the last stack's heatmaps ``(N, K, H/4, W/4)``."""
        return self.forward_stacks(x)[-1]
