"""3D stacked hourglass with ResNeXt blocks and GroupNorm (the paper's heatmap model).

Vasiliev, Lachinov, Getmanskaya, GraphiCon 2020, Sec. 4.4 and Fig. 3: 3 stacked hourglass
networks (Newell, Yang, Deng, ECCV 2016) built from ResNeXt blocks with GroupNorm; the output
layer of every stack is a single convolution + sigmoid giving one heatmap per landmark, with a
loss on every stack; 25.5 M parameters, 6.9 GFLOP at ``1 x 1 x 128 x 128 x 64``. For OpenVINO
the trilinear upscaling was replaced by an equivalent deconvolution
(:class:`~medrepro.nets.blocks.Upsample3d` ``mode="deconv"``).

Widths, depth, stem and heads are reconstructed (no official code); the block design follows
Lachinov's ``lachinov/brats2019`` (ResNeXt bottleneck, GN(8), LeakyReLU(0.01), no conv bias,
``Conv3d(k=2, s=2)`` downsampling) and the hourglass/stack wiring follows
``princeton-vl/pytorch_stacked_hourglass`` (``up1 + upsample(inner(pool(x)))``,
``x + merge_preds + merge_features`` between stacks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from medrepro.nets.blocks import ConvNormAct, ResNeXtBlock3d, Upsample3d

__all__ = ["Hourglass3d", "StackedHourglass3D", "hourglass_widths"]


def hourglass_widths(width: int, depth: int, max_width: int | None = None) -> tuple[int, ...]:
    """Per-level channels ``min(width * 2**l, max_width)`` for levels ``l = 0 .. depth``."""
    out = tuple(width * 2**level for level in range(depth + 1))
    return out if max_width is None else tuple(min(c, max_width) for c in out)


class Hourglass3d(nn.Module):
    """One recursive hourglass: ``skip(x) + upsample(post(inner(pre(down(x)))))``.

    Level 0 works at the input resolution with ``channels[0]``; each recursion halves every
    side (learned ``Conv3d(k=2, s=2)`` -> norm -> LReLU, or max pooling) and switches to the next
    entry of ``channels``; the innermost level is one ResNeXt block. ``post`` projects back to
    ``channels[0]`` before the (channel-wise) upsampling, so the deconvolution variant stays
    depthwise.

    Args:
        channels: per-level channels, ``len(channels) = depth + 1``.
        norm: norm of every block (``"group"`` in the paper).
        norm_groups: GroupNorm groups.
        groups: ResNeXt cardinality (``None``: ``out // 16`` per block).
        upsample: :class:`~medrepro.nets.blocks.Upsample3d` mode.
        upsample_learnable: whether the ``"deconv"`` interpolation kernel is trained.
        downsample: ``"conv"`` (``Conv3d(k=2, s=2)``) or ``"maxpool"``.
        se: squeeze-and-excitation in the ResNeXt blocks.
    """

    def __init__(
        self,
        channels: Sequence[int],
        *,
        norm: str = "group",
        norm_groups: int = 8,
        groups: int | None = None,
        upsample: str = "trilinear",
        upsample_learnable: bool = True,
        downsample: str = "conv",
        se: bool = False,
    ) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError("an hourglass needs at least two levels (depth >= 1)")
        c, c_next = channels[0], channels[1]
        bkw: dict[str, Any] = {"norm": norm, "norm_groups": norm_groups, "groups": groups, "se": se}
        self.skip = ResNeXtBlock3d(c, c, **bkw)
        if downsample == "conv":
            self.down: nn.Module = ConvNormAct(
                c, c_next, 2, stride=2, norm=norm, act="leaky_relu", norm_groups=norm_groups
            )
            self.pre = ResNeXtBlock3d(c_next, c_next, **bkw)
        elif downsample == "maxpool":
            self.down = nn.MaxPool3d(2)
            self.pre = ResNeXtBlock3d(c, c_next, **bkw)
        else:
            raise ValueError(f"unknown downsample {downsample!r}; expected 'conv' or 'maxpool'")
        if len(channels) > 2:
            self.inner: nn.Module = Hourglass3d(
                channels[1:],
                norm=norm,
                norm_groups=norm_groups,
                groups=groups,
                upsample=upsample,
                upsample_learnable=upsample_learnable,
                downsample=downsample,
                se=se,
            )
        else:
            self.inner = ResNeXtBlock3d(c_next, c_next, **bkw)
        self.post = ResNeXtBlock3d(c_next, c, **bkw)
        self.up = Upsample3d(c, upsample, learnable=upsample_learnable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.up(self.post(self.inner(self.pre(self.down(x)))))


class StackedHourglass3D(nn.Module):
    """3D stacked hourglass producing ``K`` sigmoid heatmaps at half the input resolution.

    Layout: stem (``3^3`` stride-2 ``ConvNormAct`` + ResNeXt block, ``channels[0]``), then per
    stack ``i``: hourglass -> features (ResNeXt block + ``1^3`` ConvNormAct) -> head (one
    ``1^3`` conv + sigmoid, ``K`` channels); between stacks
    ``x = x + merge_features(features) + merge_preds(heatmaps)`` (``1^3`` convs). The head bias
    is initialised to -4 (sigmoid 0.018) so the initial heatmaps are close to the mostly-zero
    targets.

    Reconstructed defaults (paper: 25.5 M parameters, 6.9 GFLOP): ``width=32, depth=5,
    max_width=832, n_stacks=3`` -> per-level channels ``(32, 64, 128, 256, 512, 832)`` at
    ``1/2 .. 1/64`` of the input (``64x64x32 .. 2x2x1`` for ``128x128x64``), ResNeXt
    cardinality ``out // 16`` (8-channel groups), GN(8): **25,461,420 parameters** with
    ``K=4``. The parameters sit in the cheap low-resolution levels (the cap 832 on the deepest
    level was chosen to hit 25.5 M), so the network costs about 8.8 G multiply-adds (17.5 GFLOP
    at 2 per MAC) at ``128x128x64``. ``upsample="deconv"`` adds ``64 C`` parameters per
    upsampling (25,651,884 in total); ``"deconv2"`` adds ``8 C^2`` (33.8 M).

    Small configurations: ``width=16, depth=3`` (0.65 M parameters, 0.41 G MAC at
    ``64x64x32``) and ``width=32, depth=3`` (2.2 M, 1.06 G MAC); inputs must then be
    multiples of 16 per side.

    Args:
        in_channels: input channels ``C`` of ``(N, C, X, Y, Z)``.
        n_landmarks: ``K`` heatmaps per stack.
        n_stacks: number of hourglasses (3 in the paper).
        width: channels at the top level (half input resolution); doubles per level.
        depth: downsamplings inside each hourglass; input sides must be divisible by
            ``2 * 2**depth``.
        norm: ``"group"`` (paper), ``"instance"``, ``"batch"`` or ``"none"``
            (``"instance"`` needs more than one voxel at the innermost level, i.e. an input
            larger than ``2 * 2**depth`` along some axis).
        upsample: ``"trilinear"`` (paper), ``"deconv"`` (OpenVINO workaround, trilinear at
            initialisation) or ``"deconv2"`` (plain learned ``ConvTranspose3d(k=2, s=2)``).
        groups: ResNeXt cardinality; ``None`` uses ``out // 16`` in each block.
        max_width: cap on the per-level channels (832 only bites at ``depth >= 5``;
            ``None``: no cap).
        norm_groups: GroupNorm groups (8 in Lachinov's code); channels must be divisible by it.
        downsample: ``"conv"`` (``Conv3d(k=2, s=2)``, Lachinov) or ``"maxpool"`` (Newell).
        upsample_learnable: whether the ``"deconv"`` kernel is trained.
        se: squeeze-and-excitation in the ResNeXt blocks (off in the paper).

    Returns (forward):
        In training mode a list of ``n_stacks`` heatmap tensors ``(N, K, X/2, Y/2, Z/2)`` (one
        per stack, for intermediate supervision); in eval mode only the last one, so an exported
        graph has a single output.
    """

    #: heatmap voxel ``h`` covers input voxels ``[2h, 2h + 1]`` per axis
    stride: int = 2

    def __init__(
        self,
        in_channels: int = 1,
        n_landmarks: int = 4,
        n_stacks: int = 3,
        width: int = 32,
        depth: int = 5,
        norm: str = "group",
        upsample: str = "trilinear",
        groups: int | None = None,
        max_width: int | None = 832,
        norm_groups: int = 8,
        downsample: str = "conv",
        upsample_learnable: bool = True,
        se: bool = False,
    ) -> None:
        super().__init__()
        if depth < 1 or n_stacks < 1:
            raise ValueError(f"depth ({depth}) and n_stacks ({n_stacks}) must be >= 1")
        self.channels = hourglass_widths(width, depth, max_width)
        self.depth = depth
        self.n_stacks = n_stacks
        self.n_landmarks = n_landmarks
        for c in self.channels:
            mid = c // 2
            card = max(1, c // 16) if groups is None else groups
            if norm == "group" and (c % norm_groups or mid % norm_groups):
                raise ValueError(
                    f"channels {self.channels} and their halves (ResNeXt bottlenecks) must be divisible "
                    f"by the GroupNorm groups ({norm_groups}); use multiples of {2 * norm_groups}"
                )
            if mid < 1 or mid % card:
                raise ValueError(
                    f"bottleneck width {mid} (channels {c}) is not divisible by the ResNeXt groups ({card})"
                )
        c0 = self.channels[0]
        bkw: dict[str, Any] = {"norm": norm, "norm_groups": norm_groups, "groups": groups, "se": se}
        self.stem = nn.Sequential(
            ConvNormAct(
                in_channels, c0, 3, stride=2, norm=norm, act="leaky_relu", norm_groups=norm_groups
            ),
            ResNeXtBlock3d(c0, c0, **bkw),
        )
        self.hourglasses = nn.ModuleList(
            Hourglass3d(
                self.channels,
                norm=norm,
                norm_groups=norm_groups,
                groups=groups,
                upsample=upsample,
                upsample_learnable=upsample_learnable,
                downsample=downsample,
                se=se,
            )
            for _ in range(n_stacks)
        )
        self.features = nn.ModuleList(
            nn.Sequential(
                ResNeXtBlock3d(c0, c0, **bkw),
                ConvNormAct(c0, c0, 1, norm=norm, act="leaky_relu", norm_groups=norm_groups),
            )
            for _ in range(n_stacks)
        )
        self.heads = nn.ModuleList(nn.Conv3d(c0, n_landmarks, 1) for _ in range(n_stacks))
        for head in self.heads:
            nn.init.constant_(head.bias, -4.0)
        self.merge_features = nn.ModuleList(nn.Conv3d(c0, c0, 1) for _ in range(n_stacks - 1))
        self.merge_preds = nn.ModuleList(nn.Conv3d(n_landmarks, c0, 1) for _ in range(n_stacks - 1))

    @property
    def divisor(self) -> int:
        """Every input side must be a multiple of this (stem stride x ``2**depth``)."""
        return self.stride * 2**self.depth

    def check_input_shape(self, spatial_shape: Sequence[int]) -> None:
        """Raise ``ValueError`` unless every side of ``(X, Y, Z)`` is divisible by :attr:`divisor`."""
        bad = [int(s) for s in spatial_shape if int(s) % self.divisor]
        if bad or len(spatial_shape) != 3:
            raise ValueError(
                f"StackedHourglass3D(depth={self.depth}) needs 3 spatial sides divisible by "
                f"{self.divisor} (stem stride 2 x 2**depth); got {tuple(int(s) for s in spatial_shape)}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """``(N, C, X, Y, Z)`` -> per-stack heatmaps (train) or last heatmaps (eval), ``(N, K, X/2, Y/2, Z/2)``."""
        if not torch.jit.is_tracing():
            self.check_input_shape(x.shape[2:])
        x = self.stem(x)
        preds: list[torch.Tensor] = []
        for i in range(self.n_stacks):
            feat = self.features[i](self.hourglasses[i](x))
            pred = torch.sigmoid(self.heads[i](feat))
            preds.append(pred)
            if i < self.n_stacks - 1:
                x = x + self.merge_features[i](feat) + self.merge_preds[i](pred)
        return preds if self.training else preds[-1]
