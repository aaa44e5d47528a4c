"""BrainMaGe 3D residual U-Net (ResU-Net) for brain extraction.

Thakur et al., "Optimization of deep learning based brain extraction in MRI for low resource
environments", BrainLes 2021 (paper 001): a 3D ResU-Net with 1 input channel, 16 base filters,
8.288 M parameters and input ``(1, 1, 128, 128, 128)``. The layout follows the public BrainMaGe
code (``BrainMaGe/models/networks.py::resunet``, ``seg_modules.py``):

- 5 levels with ``b, 2b, 4b, 8b, 16b`` channels at ``S, S/2, S/4, S/8, S/16`` voxels per axis;
- ``in_conv`` (level 0): ``conv -> [skip] IN -> LReLU -> conv -> Dropout3d -> IN -> LReLU -> conv
  -> + skip``;
- levels 1..4: a :class:`DownsamplingModule` (``3^3`` stride-2 conv -> IN -> LReLU) then a
  pre-activation residual :class:`EncodingModule` (``IN -> LReLU -> conv -> Dropout3d -> IN ->
  LReLU -> conv``, + identity);
- decoder levels 3..1: an :class:`UpsamplingModule` (trilinear x2, ``align_corners=True``, then a
  ``1^3`` conv halving the channels) and a :class:`DecodingModule` (concatenate the skip ->
  ``IN -> LReLU -> conv`` -> [skip] -> 2 x ``[IN -> LReLU -> conv]`` -> + skip);
- level 0: an upsampling module, then the output block (a decoding module followed by
  ``IN -> LReLU -> 1^3 conv -> sigmoid``) with ``n_classes - 1 = 1`` output channel.

Every conv has a bias (BrainMaGe's ``conv_bias=True``) and a ``3^3`` kernel (padding 1) except
the ``1^3`` upsampling and output convs. With ``base_filters=16`` this layout has 8,290,417
parameters, 0.03 % above the paper's 8.288 M; its 2,449 conv biases aside it has 8,287,968, which
is the paper's figure to the digit (the paper's count apparently leaves the conv biases out).

Normalisation: ``InstanceNorm3d(affine=True, track_running_stats=True)`` as in BrainMaGe. In
training mode it normalises with each instance's statistics and updates running averages; in
**eval mode it uses the running mean/variance** (a fixed per-channel affine map, so OpenVINO
folds it into Multiply/Add instead of an MVN). Export and evaluate in ``eval()``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from medrepro.nets.blocks import NORM_KINDS, norm_layer

__all__ = [
    "ResUNet3D",
    "InputModule",
    "DownsamplingModule",
    "EncodingModule",
    "UpsamplingModule",
    "DecodingModule",
    "RunningStatsInstanceNorm3d",
    "brainmage_norm",
]

#: the input side must be divisible by this (4 stride-2 downsamplings)
DIVISOR = 16


class RunningStatsInstanceNorm3d(nn.InstanceNorm3d):
    """BrainMaGe's ``InstanceNorm3d(affine=True, track_running_stats=True)``, exportable.

    Training mode is plain instance norm (per-instance statistics, running averages updated).
    In eval mode instance norm with running statistics is the per-channel affine map
    ``(x - running_mean) / sqrt(running_var + eps) * weight + bias``, i.e. eval-mode batch norm;
    computing it as ``F.batch_norm`` gives the same numbers and the same state-dict keys, but
    the TorchScript ONNX exporter then emits one ``BatchNormalization`` node with dynamic batch
    and spatial axes. Exported as ``InstanceNorm3d`` it refuses a dynamic batch ("ONNX export of
    instance_norm training for unknown batch size") and with a static batch bakes the traced
    shape into a ``Reshape`` to ``(1, N*C, X, Y, Z)``, so the ONNX model runs at that shape only.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )


def brainmage_norm(kind: str, channels: int) -> nn.Module:
    """Normalisation layer: ``"instance"`` is BrainMaGe's IN with running statistics.

    ``"instance"`` -> :class:`RunningStatsInstanceNorm3d` (``InstanceNorm3d(channels,
    affine=True, track_running_stats=True)`` whose eval mode uses the running statistics);
    other kinds (``"group"``, ``"batch"``, ``"none"``) come from
    :func:`medrepro.nets.blocks.norm_layer`.
    """
    if kind.lower() == "instance":
        return RunningStatsInstanceNorm3d(channels, affine=True, track_running_stats=True)
    return norm_layer(kind, channels)


def _conv3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv3d:
    """``3^3`` conv with padding 1 and bias (BrainMaGe's ``conv_bias=True``)."""
    return nn.Conv3d(in_ch, out_ch, 3, stride=stride, padding=1, bias=True)


class _PreAct(nn.Sequential):
    """``norm -> LeakyReLU`` (the pre-activation of a conv)."""

    def __init__(self, channels: int, norm: str, slope: float) -> None:
        super().__init__()
        self.norm = brainmage_norm(norm, channels)
        self.act = nn.LeakyReLU(slope, inplace=True)


class InputModule(nn.Module):
    """BrainMaGe ``in_conv`` (residual): ``(N, C_in, S) -> (N, b, S)``, spatial size kept."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float, norm: str, slope: float) -> None:
        super().__init__()
        self.conv0 = _conv3(in_ch, out_ch)
        self.pre1 = _PreAct(out_ch, norm, slope)
        self.conv1 = _conv3(out_ch, out_ch)
        self.dropout = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()
        self.pre2 = _PreAct(out_ch, norm, slope)
        self.conv2 = _conv3(out_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.conv0(x)
        y = self.dropout(self.conv1(self.pre1(skip)))
        return self.conv2(self.pre2(y)) + skip


class DownsamplingModule(nn.Sequential):
    """``3^3`` stride-2 conv -> norm -> LeakyReLU: ``(N, C, S) -> (N, C', S/2)``."""

    def __init__(self, in_ch: int, out_ch: int, norm: str = "instance", slope: float = 0.01):
        super().__init__()
        self.conv = _conv3(in_ch, out_ch, stride=2)
        self.norm = brainmage_norm(norm, out_ch)
        self.act = nn.LeakyReLU(slope, inplace=True)


class EncodingModule(nn.Module):
    """Pre-activation residual block: ``x + conv(pre(dropout(conv(pre(x)))))``, channels kept."""

    def __init__(
        self, channels: int, dropout: float = 0.3, norm: str = "instance", slope: float = 0.01
    ) -> None:
        super().__init__()
        self.pre0 = _PreAct(channels, norm, slope)
        self.conv0 = _conv3(channels, channels)
        self.dropout = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()
        self.pre1 = _PreAct(channels, norm, slope)
        self.conv1 = _conv3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dropout(self.conv0(self.pre0(x)))
        return x + self.conv1(self.pre1(y))


class UpsamplingModule(nn.Module):
    """Trilinear x2 (``align_corners=True``) then a ``1^3`` conv: ``(N, C, S) -> (N, C', 2S)``."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_ch, out_ch, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=2.0, mode="trilinear", align_corners=True)
        return self.conv(up)


class DecodingModule(nn.Module):
    """Concatenate ``(x, skip)`` then 3 x ``[norm -> LReLU -> 3^3 conv]``, residual on the last 2.

    ``(N, C, S), (N, C, S) -> (N, C_out, S)``: ``h = conv0(pre0(cat))``,
    ``out = h + conv2(pre2(conv1(pre1(h))))``.
    """

    def __init__(
        self, in_ch: int, out_ch: int, norm: str = "instance", slope: float = 0.01
    ) -> None:
        super().__init__()
        self.pre0 = _PreAct(in_ch, norm, slope)
        self.conv0 = _conv3(in_ch, out_ch)
        self.pre1 = _PreAct(out_ch, norm, slope)
        self.conv1 = _conv3(out_ch, out_ch)
        self.pre2 = _PreAct(out_ch, norm, slope)
        self.conv2 = _conv3(out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        h = self.conv0(self.pre0(torch.cat([x, skip], dim=1)))
        return h + self.conv2(self.pre2(self.conv1(self.pre1(h))))


class ResUNet3D(nn.Module):
    """BrainMaGe 3D ResU-Net: ``(N, C_in, X, Y, Z)`` -> sigmoid probabilities ``(N, C_out, X, Y, Z)``.

    Args:
        in_channels: input channels (1: one MRI modality, modality-agnostic training).
        out_channels: output channels (BrainMaGe's ``n_classes - 1`` = 1, brain probability).
        base_filters: channels ``b`` of level 0; levels have ``b, 2b, 4b, 8b, 16b``. The paper
            uses 16 (8,288,465 parameters).
        dropout: ``Dropout3d`` probability in the input and encoding modules (0.3).
        norm: ``"instance"`` (BrainMaGe: ``InstanceNorm3d(affine=True,
            track_running_stats=True)``, running statistics in eval mode), or ``"group"``,
            ``"batch"``, ``"none"`` (see :func:`medrepro.nets.blocks.norm_layer`).
        leaky_slope: LeakyReLU negative slope (0.01).

    Every spatial side ``X, Y, Z`` must be divisible by 16 (voxels). In training mode instance
    normalisation also needs more than one voxel per channel at the 1/16 level, e.g. at least
    ``32 x 16 x 16``.

    Raises:
        ValueError: unknown ``norm``; in ``forward``, a side not divisible by 16.
    """

    #: the spatial divisor an input must respect
    divisor = DIVISOR

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        base_filters: int = 16,
        dropout: float = 0.3,
        norm: str = "instance",
        leaky_slope: float = 0.01,
    ) -> None:
        super().__init__()
        if norm.lower() not in NORM_KINDS:
            raise ValueError(f"unknown norm {norm!r}; expected one of {NORM_KINDS}")
        b, s = base_filters, leaky_slope
        ch = [b, 2 * b, 4 * b, 8 * b, 16 * b]
        self.ins = InputModule(in_channels, b, dropout, norm, s)
        self.down = nn.ModuleList(DownsamplingModule(ch[i], ch[i + 1], norm, s) for i in range(4))
        self.enc = nn.ModuleList(EncodingModule(ch[i + 1], dropout, norm, s) for i in range(4))
        # decoder, deepest first: up[k] maps ch[4-k] -> ch[3-k], dec[k] fuses with level 3-k
        self.up = nn.ModuleList(UpsamplingModule(ch[i + 1], ch[i]) for i in reversed(range(4)))
        self.dec = nn.ModuleList(DecodingModule(2 * ch[i], ch[i], norm, s) for i in (3, 2, 1, 0))
        self.out_pre = _PreAct(b, norm, s)
        self.out_conv = nn.Conv3d(b, out_channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and any(int(n) % DIVISOR for n in x.shape[2:]):
            raise ValueError(
                f"ResUNet3D input sides must be divisible by {DIVISOR}, got {tuple(x.shape[2:])}"
            )
        skips = [self.ins(x)]
        for down, enc in zip(self.down, self.enc, strict=True):
            skips.append(enc(down(skips[-1])))
        y = skips.pop()
        for up, dec in zip(self.up, self.dec, strict=True):
            y = dec(up(y), skips.pop())
        return torch.sigmoid(self.out_conv(self.out_pre(y)))
