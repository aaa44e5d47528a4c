"""dpipe-style 3D U-Net of the LowRes paper, and the dpipe blocks the LowRes networks share.

Shirokikh et al., "LowRes: accelerating 3D medical image segmentation on CPU by adaptive
small-scale target localization", J. Imaging 7(2):35, 2021 (paper 003). The baseline 3D U-Net
follows the public ``neuro-ml/low-resolution`` code (``lowres/model/unet3d.py``), built from
``deep_pipe`` blocks:

- :class:`PreActivation3d`: ``BatchNorm3d(in) -> ReLU -> Conv3d(in, out)``;
- :class:`PostActivation3d`: ``Conv3d(in, out, bias=False) -> BatchNorm3d(out) -> ReLU``;
- :class:`ResBlock3d`: two pre-activation convs (the first without bias) plus a shortcut
  (identity, or a ``1^3`` conv when the channels change) cropped to the centre when the convs are
  valid (``padding < (kernel - 1) / 2``).

U-Net layout at ``base_channels = b = 32``, ``depth = 3`` (the paper; channels 32 -> 64 -> 128
-> 256 -> 512, 1/8 resolution at the bottom):

- input: ``Conv3d(1, b, 3, bias=False) -> PreAct(b, 2b, 3)``;
- ``depth`` down blocks: ``MaxPool3d(2) -> PreAct(c, c, 3, bias=False) -> PreAct(c, 2c, 3)``;
- ``depth`` up blocks: ``ConvTranspose3d(c, c, 2, stride=2)``, concatenate the skip (``c/2``
  channels), ``PreAct(c + c/2, c/2, 3, bias=False) -> PreAct(c/2, c/2, 3)``;
- output: ``PreAct(2b, 1, 1, bias=False) -> BatchNorm3d(1)`` (one logit channel).

At the paper's width this is 19,073,634 parameters. ``docs/lowres.md`` first listed
``depth=4``; the reference code (and notes: "to 512") has three down blocks, hence divisor 8.
"""

from __future__ import annotations

import torch
from torch import nn

from medrepro.nets.shapes import SameShapeContract, check_sides

__all__ = [
    "PreActivation3d",
    "PostActivation3d",
    "ResBlock3d",
    "UNet3D",
    "check_sides",
]


class PreActivation3d(nn.Sequential):
    """dpipe pre-activation: ``BatchNorm3d(in) -> ReLU -> Conv3d(in, out, kernel)``.

    ``(N, in, D, H, W) -> (N, out, D', H', W')`` with ``D' = D + 2 * padding - kernel + 1``.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        kernel: cubic kernel side (voxels).
        padding: zero padding per side (voxels); ``(kernel - 1) // 2`` keeps the size.
        bias: conv bias (dpipe's default is ``True``).
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int = 3, padding: int = 1, bias: bool = True
    ) -> None:
        super().__init__()
        self.bn = nn.BatchNorm3d(in_ch)
        self.act = nn.ReLU()
        self.conv = nn.Conv3d(in_ch, out_ch, kernel, padding=padding, bias=bias)


class PostActivation3d(nn.Sequential):
    """dpipe post-activation: ``Conv3d(in, out, kernel, bias=False) -> BatchNorm3d(out) -> ReLU``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_ch, out_ch, kernel, padding=padding, bias=False)
        self.bn = nn.BatchNorm3d(out_ch)
        self.act = nn.ReLU()


class ResBlock3d(nn.Module):
    """dpipe residual block: ``PreAct(in, out, bias=False) -> PreAct(out, out, bias)`` + shortcut.

    The shortcut is the identity, or ``Conv3d(in, out, 1, bias=bias)`` when the channels differ.
    With valid convs (``padding < (kernel - 1) // 2``) the shortcut is centre-cropped by
    :attr:`loss` voxels per side so it matches the conv path, as dpipe's ``crop_to_shape``.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        kernel: cubic kernel side (voxels).
        padding: zero padding per side of both convs (voxels).
        bias: bias of the second conv and of the shortcut conv (dpipe default ``False``).
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int = 3, padding: int = 1, bias: bool = False
    ) -> None:
        super().__init__()
        if 2 * padding > kernel - 1:
            raise ValueError(f"ResBlock3d: padding {padding} grows a kernel-{kernel} output")
        self.path = nn.Sequential(
            PreActivation3d(in_ch, out_ch, kernel, padding, bias=False),
            PreActivation3d(out_ch, out_ch, kernel, padding, bias=bias),
        )
        self.shortcut: nn.Module = (
            nn.Conv3d(in_ch, out_ch, 1, bias=bias) if in_ch != out_ch else nn.Identity()
        )
        #: voxels lost per side by the two convs
        self.loss = (kernel - 1) - 2 * padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.shortcut(x)
        c = self.loss
        if c:
            skip = skip[:, :, c:-c, c:-c, c:-c]
        return self.path(x) + skip


class _Down(nn.Sequential):
    """``MaxPool3d(2) -> PreAct(c, c, 3, bias=False) -> PreAct(c, 2c, 3)``: ``(N, c, S) -> (N, 2c, S/2)``."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool3d(2)
        self.conv1 = PreActivation3d(ch, ch, bias=False)
        self.conv2 = PreActivation3d(ch, 2 * ch)


class _Up(nn.Module):
    """``ConvT(c, c, 2, 2)``, concat skip (``c/2``), two PreActs: ``(N, c, S) -> (N, c/2, 2S)``."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        half = ch // 2
        self.up = nn.ConvTranspose3d(ch, ch, 2, stride=2)
        self.conv1 = PreActivation3d(ch + half, half, bias=False)
        self.conv2 = PreActivation3d(half, half)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(torch.cat([self.up(x), skip], dim=1)))


class UNet3D(SameShapeContract, nn.Module):
    """LowRes-paper 3D U-Net: ``(N, 1, D, H, W)`` in [0, 1] -> logits ``(N, 1, D, H, W)``.

    Args:
        base_channels: ``b``; the input conv gives ``b``, level 0 has ``2b`` channels, level
            ``k`` has ``2b * 2^k`` (paper ``b = 32``: 64, 128, 256, 512).
        depth: number of down/up blocks (paper 3); sides must be multiples of ``2^depth``.
        in_channels: input channels (1).
        out_channels: logit channels (1).

    Raises:
        ValueError: ``depth < 1`` or ``base_channels < 1``; in ``forward``, a side that is not a
            multiple of :attr:`divisor`.
    """

    def __init__(
        self,
        base_channels: int = 32,
        depth: int = 3,
        in_channels: int = 1,
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        if depth < 1 or base_channels < 1:
            raise ValueError(
                f"UNet3D: need depth >= 1 and base_channels >= 1, got {depth}, {base_channels}"
            )
        b = base_channels
        #: output (= input) sides must be multiples of this (voxels)
        self.divisor = 2**depth
        self.inconv = nn.Sequential(
            nn.Conv3d(in_channels, b, 3, padding=1, bias=False), PreActivation3d(b, 2 * b)
        )
        widths = [2 * b * 2**k for k in range(depth)]
        self.down = nn.ModuleList(_Down(c) for c in widths)
        self.up = nn.ModuleList(_Up(2 * c) for c in reversed(widths))
        self.outconv = nn.Sequential(
            PreActivation3d(2 * b, out_channels, 1, padding=0, bias=False),
            nn.BatchNorm3d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing():
            check_sides(tuple(x.shape[2:]), self.divisor, "UNet3D input")
        skips = [self.inconv(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.up:
            y = up(y, skips.pop())
        return self.outconv(y)
