"""2D ResNet with bottleneck blocks, its classifier, and the SimpleBaselines landmark detector.

ResNet (He, Zhang, Ren, Sun, "Deep residual learning for image recognition", CVPR 2016) in the
torchvision ResNet-50 layout ("ResNet v1.5": the stride sits in the 3x3 conv of a bottleneck):
stem ``conv 7x7 s2 -> BN -> ReLU -> maxpool 3x3 s2``, then four stages of bottlenecks
``1x1 -> 3x3 -> 1x1`` (expansion 4) with stage widths ``width * (1, 2, 4, 8)``; the first block
of stages 2-4 has stride 2 and every block whose shape changes gets a ``conv 1x1 + BN``
projection shortcut. With ``width=64`` and ``block_counts=(3, 4, 6, 3)`` the encoder has exactly
torchvision's ResNet-50 parameters without the fc: **23,508,032**; output 2048 channels at
stride 32.

SimpleBaselines (Xiao, Wu, Wei, "Simple baselines for human pose estimation and tracking",
ECCV 2018; ``microsoft/human-pose-estimation.pytorch`` ``lib/models/pose_resnet.py``): the ResNet
encoder followed by ``n_deconv x [ConvTranspose2d(k=4, s=2, p=1, bias=False) -> BN -> ReLU]`` and
a ``1x1`` conv to ``K`` heatmaps (stride ``32 / 2**n_deconv`` = 4 by default). With ResNet-50,
256 deconv channels and ``K=17`` it has 33,999,697 parameters (the paper's 34.0 M).

Cross-task use (Fu et al., MLMI 2020): :class:`ResNetClassifier` and :class:`SimpleBaselines`
share :class:`ResNetEncoder` (same parameter names), so the source classifier's
``encoder.state_dict()`` loads strictly into the landmark model's ``encoder``.

Initialisation: convs of the encoder Kaiming normal (fan-out, ReLU), BN weight 1 / bias 0, fc
PyTorch's default (as torchvision); the last BN of each residual branch is **not** zero-initialised
(torchvision's default ``zero_init_residual=False``). Decoder as SimpleBaselines: deconv weights
and the final conv N(0, 0.001), final bias 0, BN 1 / 0.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from medrepro.nets.shapes import check_sides

__all__ = [
    "EXPANSION",
    "Bottleneck2d",
    "ResNetEncoder",
    "ResNetClassifier",
    "SimpleBaselines",
]

#: output channels of a bottleneck = its width x EXPANSION
EXPANSION = 4


def _block_counts(block_counts: Sequence[int]) -> tuple[int, int, int, int]:
    """Validate ``block_counts`` (a tuple or a list, as stored in bundles): 4 positive ints."""
    counts = tuple(int(b) for b in block_counts)
    if len(counts) != 4 or min(counts) < 1:
        raise ValueError(f"block_counts must be 4 positive integers, got {list(block_counts)}")
    return counts  # type: ignore[return-value]


class Bottleneck2d(nn.Module):
    """ResNet bottleneck ``1x1 -> BN -> ReLU -> 3x3 (stride) -> BN -> ReLU -> 1x1 -> BN``,
    ``+ shortcut -> ReLU``; output ``width * 4`` channels.

    Parameter names follow torchvision (``conv1..3``, ``bn1..3``, ``downsample.0/1``).

    Args:
        in_ch: input channels.
        width: bottleneck width (channels of the 1x1 and 3x3 convs).
        stride: stride of the 3x3 conv and of the projection shortcut.
    """

    def __init__(self, in_ch: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = width * EXPANSION
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_ch, H, W)`` -> ``(N, 4 width, H / stride, W / stride)``."""
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(y + shortcut)


def _stage(in_ch: int, width: int, n_blocks: int, stride: int) -> nn.Sequential:
    """``n_blocks`` bottlenecks; the first has ``stride`` (and the projection)."""
    blocks = [Bottleneck2d(in_ch, width, stride)]
    blocks += [Bottleneck2d(width * EXPANSION, width) for _ in range(n_blocks - 1)]
    return nn.Sequential(*blocks)


class ResNetEncoder(nn.Module):
    """ResNet stem + 4 bottleneck stages: ``(N, C, H, W)`` -> ``(N, 32 width, H/32, W/32)``.

    Args:
        block_counts: bottlenecks per stage (ResNet-50: ``(3, 4, 6, 3)``); a list is accepted.
        width: stem channels and first-stage bottleneck width (64 in ResNet-50); the stages have
            widths ``width * (1, 2, 4, 8)`` and outputs 4 times those.
        in_channels: input channels ``C`` (3 for RGB).

    Attributes:
        stem: ``conv 7x7 s2 -> BN -> ReLU -> maxpool 3x3 s2`` (stride 4).
        layer1 .. layer4: the stages (strides 1, 2, 2, 2).
        out_channels: ``width * 8 * 4``.
    """

    #: input pixels per output pixel
    stride: int = 32

    def __init__(
        self, block_counts: Sequence[int] = (3, 4, 6, 3), width: int = 64, in_channels: int = 3
    ) -> None:
        super().__init__()
        counts = _block_counts(block_counts)
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
                bn=nn.BatchNorm2d(width),
                relu=nn.ReLU(inplace=True),
                pool=nn.MaxPool2d(3, stride=2, padding=1),
            )
        )
        widths = [width * 2**i for i in range(4)]
        in_chs = [width] + [w * EXPANSION for w in widths[:-1]]
        self.layer1 = _stage(in_chs[0], widths[0], counts[0], 1)
        self.layer2 = _stage(in_chs[1], widths[1], counts[1], 2)
        self.layer3 = _stage(in_chs[2], widths[2], counts[2], 2)
        self.layer4 = _stage(in_chs[3], widths[3], counts[3], 2)
        self.out_channels = widths[3] * EXPANSION
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> features ``(N, out_channels, ceil-ish H/32, W/32)``."""
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ResNetClassifier(nn.Module):
    """ResNet classifier: :class:`ResNetEncoder` -> global average pool -> ``fc`` logits.

    The cross-task source network (Fu et al.: a ResNet-50 face identity classifier). Any input
    size works (global pooling).

    Args:
        n_classes: number of classes (logits).
        block_counts: see :class:`ResNetEncoder`.
        width: see :class:`ResNetEncoder`.
        in_channels: input channels.
    """

    def __init__(
        self,
        n_classes: int,
        block_counts: Sequence[int] = (3, 4, 6, 3),
        width: int = 64,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.encoder = ResNetEncoder(block_counts, width, in_channels)
        self.fc = nn.Linear(self.encoder.out_channels, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> encoder map ``(N, out_channels, H/32, W/32)``."""
        return self.encoder(x)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder map ``(N, out_channels, h, w)`` -> logits ``(N, n_classes)`` (GAP + fc)."""
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(features, 1), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> logits ``(N, n_classes)``."""
        return self.classify(self.features(x))


def _decoder(in_ch: int, channels: int, n_deconv: int, n_out: int) -> nn.Sequential:
    """SimpleBaselines head: ``n_deconv x [deconv 4x4 s2 -> BN -> ReLU]`` then ``1x1`` conv."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(n_deconv):
        deconv = nn.ConvTranspose2d(
            in_ch if i == 0 else channels,
            channels,
            4,
            stride=2,
            padding=1,
            output_padding=0,
            bias=False,
        )
        nn.init.normal_(deconv.weight, std=0.001)
        bn = nn.BatchNorm2d(channels)
        layers[f"deconv{i}"] = nn.Sequential(
            OrderedDict(deconv=deconv, bn=bn, relu=nn.ReLU(inplace=True))
        )
    final = nn.Conv2d(channels if n_deconv else in_ch, n_out, 1)
    nn.init.normal_(final.weight, std=0.001)
    nn.init.zeros_(final.bias)
    layers["final"] = final
    return nn.Sequential(layers)


class SimpleBaselines(nn.Module):
    """SimpleBaselines landmark detector: :class:`ResNetEncoder` -> deconv decoder -> heatmaps.

    ``(N, C, H, W)`` -> ``(N, K, H / stride, W / stride)`` with ``stride = 32 / 2**n_deconv``
    (4 by default); input sides must be multiples of 32 (checked, ``ValueError``).

    Args:
        n_landmarks: ``K`` heatmaps.
        block_counts: see :class:`ResNetEncoder`.
        width: see :class:`ResNetEncoder`.
        deconv_channels: channels of every deconvolution (256 in SimpleBaselines).
        n_deconv: number of ``x2`` deconvolution blocks (3 in SimpleBaselines), 0 to 5.
        in_channels: input channels.

    Attributes:
        encoder: the :class:`ResNetEncoder` (loads the source classifier's ``encoder``).
        decoder: ``deconv0 .. deconv{n-1}`` (each ``deconv``, ``bn``, ``relu``) and ``final``
            (the ``1x1`` conv with bias), i.e. every parameter after the encoder.
    """

    def __init__(
        self,
        n_landmarks: int,
        block_counts: Sequence[int] = (3, 4, 6, 3),
        width: int = 64,
        deconv_channels: int = 256,
        n_deconv: int = 3,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if not 0 <= n_deconv <= 5:
            raise ValueError(f"n_deconv must be in 0..5 (stride 32 / 2**n), got {n_deconv}")
        self.encoder = ResNetEncoder(block_counts, width, in_channels)
        self.decoder = _decoder(self.encoder.out_channels, deconv_channels, n_deconv, n_landmarks)
        self.stride = ResNetEncoder.stride // 2**n_deconv

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> encoder map ``(N, 32 width, H/32, W/32)``."""
        if not torch.jit.is_tracing():
            check_sides(tuple(x.shape[2:]), ResNetEncoder.stride, "SimpleBaselines input")
        return self.encoder(x)

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder map ``(N, 32 width, h, w)`` -> heatmaps ``(N, K, h 2**n, w 2**n)``."""
        return self.decoder(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> heatmaps ``(N, K, H / stride, W / stride)``."""
        return self.decode(self.features(x))
