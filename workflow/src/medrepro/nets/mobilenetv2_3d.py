"""3D MobileNetV2 encoder with a U-Net-like decoder (the LowRes paper's mobile baseline).

Sandler et al., "MobileNetV2: inverted residuals and linear bottlenecks", CVPR 2018; in 3D with a
U-Net decoder by Shirokikh et al. (2021, paper 003, ``neuro-ml/low-resolution``
``lowres/model/mobilenetv2unet3d``). Layout at ``width_mult = 1``:

- encoder (torchvision's MobileNetV2 table in 3D, without the final ``1^3`` conv to 1280): a
  ``3^3`` stride-2 conv to 32 channels (BN, ReLU6), then inverted residuals
  ``(t, c, n, s)`` = ``(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3,
  1), (6, 160, 3, 2), (6, 320, 1, 1)``: expansion ``t``, output channels ``c``, ``n`` repeats,
  first stride ``s``. An inverted residual is ``1^3`` expansion to ``t * C_in`` (BN, ReLU6;
  skipped when ``t = 1``), depthwise ``3^3`` conv with the stride (BN, ReLU6), linear ``1^3``
  projection (BN), plus the input when the stride is 1 and the channels match.
- skips: 16 @ 1/2, 24 @ 1/4, 32 @ 1/8, 96 @ 1/16; bottom 320 @ 1/32.
- decoder 320 -> 96 -> 32 -> 24 -> 16: each step ``ConvTranspose3d(C, C, 2, stride 2)``, concat
  the skip, two inverted residuals (``t = 6``) to the skip's width (the reference code).
- head: ``1^3`` conv to one logit at 1/2 resolution, then x2 upsampling
  (:class:`medrepro.nets.blocks.Upsample3d`, trilinear by default). Trilinear interpolation and
  a ``1^3`` conv are both linear per voxel (interpolation weights sum to 1), so upsampling the
  one-channel logits equals upsampling the 16 features first and then convolving, at 1/16 of
  the cost. (The reference head is an inverted residual ``16 -> 1`` with ``t = 1`` plus a
  BatchNorm; ours is the plain ``1^3`` conv the docs/lowres.md contract names.)

Channels are ``_make_divisible(c * width_mult, 8)`` as in torchvision (written here, not
imported from torchvision's private helper). Sides must be multiples of 32 (five stride-2
stages).
"""

from __future__ import annotations

import torch
from torch import nn

from medrepro.nets.blocks import Upsample3d
from medrepro.nets.shapes import SameShapeContract, check_sides

__all__ = [
    "DIVISOR",
    "INVERTED_RESIDUAL_SETTING",
    "MobileNetV2UNet3D",
    "MobileNetV2Encoder3d",
    "InvertedResidual3d",
    "ConvBNReLU63d",
    "UpBlock3d",
    "make_divisible",
]

#: sides must be multiples of this (five stride-2 stages)
DIVISOR = 32
#: torchvision MobileNetV2: (expansion t, channels c, repeats n, first stride s)
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
#: channels of the stem conv at ``width_mult = 1``
STEM_CHANNELS = 32
#: indices of the table rows whose output is a skip (1/2, 1/4, 1/8, 1/16) and the bottom (1/32)
SKIP_ROWS = (0, 1, 2, 4)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, not below ``min_value``
    (default ``divisor``) and not more than 10 % below ``value`` (MobileNet channel rule).

    >>> make_divisible(32 * 0.25), make_divisible(24 * 0.5), make_divisible(20), make_divisible(19)
    (8, 16, 24, 24)
    """
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBNReLU63d(nn.Sequential):
    """``Conv3d(k, stride, groups, no bias) -> BatchNorm3d -> ReLU6``, padding ``(k - 1) // 2``."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1
    ) -> None:
        padding = (kernel - 1) // 2
        super().__init__(
            nn.Conv3d(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm3d(out_ch),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual3d(nn.Module):
    """MobileNetV2 block: ``(N, C_in, S) -> (N, C_out, S / stride)``.

    ``1^3`` expansion to ``round(C_in * t)`` (BN, ReLU6; none if ``t = 1``), depthwise ``3^3``
    conv with ``stride`` (BN, ReLU6), linear ``1^3`` projection (BN); residual if ``stride = 1``
    and ``C_in = C_out``.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual3d: stride must be 1 or 2, got {stride}")
        hidden = int(round(in_ch * expand_ratio))
        self.use_residual = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU63d(in_ch, hidden, kernel=1))
        layers += [
            ConvBNReLU63d(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv3d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm3d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2Encoder3d(nn.Module):
    """3D MobileNetV2 features: ``(N, C_in, S) -> [f2, f4, f8, f16, f32]``.

    ``f_k`` has ``S / k`` voxels per side; channels (``width_mult = 1``) 16, 24, 32, 96, 320.
    ``stages[i]`` holds row ``i`` of :data:`INVERTED_RESIDUAL_SETTING` (the stem is in
    ``stages[0]``).
    """

    def __init__(self, in_channels: int = 1, width_mult: float = 1.0, round_nearest: int = 8):
        super().__init__()
        ch = make_divisible(STEM_CHANNELS * width_mult, round_nearest)
        stages: list[nn.Sequential] = []
        self.widths: list[int] = []
        for row, (t, c, n, s) in enumerate(INVERTED_RESIDUAL_SETTING):
            out = make_divisible(c * width_mult, round_nearest)
            blocks: list[nn.Module] = [ConvBNReLU63d(in_channels, ch, stride=2)] if row == 0 else []
            for i in range(n):
                blocks.append(InvertedResidual3d(ch, out, s if i == 0 else 1, t))
                ch = out
            stages.append(nn.Sequential(*blocks))
            self.widths.append(out)
        self.stages = nn.ModuleList(stages)

    @property
    def feature_channels(self) -> list[int]:
        """Channels of ``f2, f4, f8, f16, f32``."""
        return [self.widths[i] for i in SKIP_ROWS] + [self.widths[-1]]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for row, stage in enumerate(self.stages):
            x = stage(x)
            if row in SKIP_ROWS:
                features.append(x)
        features.append(x)
        return features


class UpBlock3d(nn.Module):
    """``ConvTranspose3d(C, C, 2, 2)``, concat skip, two inverted residuals: ``-> (N, C_out, 2S)``."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, expand_ratio: int = 6) -> None:
        super().__init__()
        self.up = nn.ConvTranspose3d(in_ch, in_ch, 2, stride=2)
        self.conv1 = InvertedResidual3d(in_ch + skip_ch, out_ch, 1, expand_ratio)
        self.conv2 = InvertedResidual3d(out_ch, out_ch, 1, expand_ratio)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(torch.cat([self.up(x), skip], dim=1)))


class MobileNetV2UNet3D(SameShapeContract, nn.Module):
    """3D MobileNetV2 U-Net: ``(N, C_in, D, H, W)`` in [0, 1] -> logits ``(N, C_out, D, H, W)``.

    Args:
        width_mult: MobileNetV2 width multiplier (channels ``make_divisible(c * w, 8)``; 0.25
            gives encoder widths 8, 8, 8, 8, 16, 24, 40, 80 and decoder 80 -> 24 -> 8 -> 8 -> 8).
        in_channels: input channels (1).
        out_channels: logit channels (1).
        round_nearest: channel rounding of :func:`make_divisible` (8).
        decoder_expand_ratio: expansion ``t`` of the decoder's inverted residuals (6).
        upsample: final x2 upsampling of the logits, an
            :class:`~medrepro.nets.blocks.Upsample3d` mode (``"trilinear"``, ``"deconv"``,
            ``"deconv2"``).

    Sides must be multiples of :attr:`divisor` = 32 (voxels); ``margin`` = 0.
    """

    #: output (= input) sides must be multiples of this (voxels)
    divisor = DIVISOR

    def __init__(
        self,
        width_mult: float = 1.0,
        in_channels: int = 1,
        out_channels: int = 1,
        round_nearest: int = 8,
        decoder_expand_ratio: int = 6,
        upsample: str = "trilinear",
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"MobileNetV2UNet3D: width_mult must be > 0, got {width_mult}")
        self.encoder = MobileNetV2Encoder3d(in_channels, width_mult, round_nearest)
        c2, c4, c8, c16, c32 = self.encoder.feature_channels
        self.decoder = nn.ModuleList(
            UpBlock3d(a, b, b, decoder_expand_ratio)
            for a, b in ((c32, c16), (c16, c8), (c8, c4), (c4, c2))
        )
        self.head = nn.Conv3d(c2, out_channels, 1)
        self.upsample = Upsample3d(out_channels, mode=upsample)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's MobileNetV2 init: Kaiming-normal (fan out) convs, BN weight 1, bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing():
            check_sides(tuple(x.shape[2:]), self.divisor, "MobileNetV2UNet3D input")
        *skips, y = self.encoder(x)
        for block in self.decoder:
            y = block(y, skips.pop())
        return self.upsample(self.head(y))
