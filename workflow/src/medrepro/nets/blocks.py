"""Reusable 3D building blocks: Conv-Norm-Act factory, ResNeXt bottleneck, upsampling.

All blocks take and return ``(N, C, X, Y, Z)`` tensors (see ``docs/architecture.md``). The norm
layer is a string switch (``"instance"``, ``"group"``, ``"batch"``, ``"none"``) so that one
architecture can be built with BN, IN or GN for the OpenVINO norm/INT8 study.

References:
    Vasiliev, Lachinov, Getmanskaya. "Performance analysis of deep learning models for
    cephalometric landmark detection on CPU", GraphiCon 2020, Sec. 4.4 (InstanceNorm VGG
    regressor; stacked hourglass with ResNeXt blocks and GroupNorm; trilinear upscaling replaced
    by a deconvolution for OpenVINO).

    Xie et al. "Aggregated residual transformations for deep neural networks", CVPR 2017
    (ResNeXt bottleneck); Hu et al. "Squeeze-and-excitation networks", CVPR 2018 (SE).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "NORM_KINDS",
    "ACT_KINDS",
    "UPSAMPLE_MODES",
    "norm_layer",
    "act_layer",
    "ConvNormAct",
    "SqueezeExcitation3d",
    "ResNeXtBlock3d",
    "Upsample3d",
    "linear_upsampling_kernel",
]

NORM_KINDS = ("instance", "group", "batch", "none")
ACT_KINDS = ("relu", "leaky_relu", "none")
UPSAMPLE_MODES = ("trilinear", "deconv", "deconv2")

#: negative slope of every LeakyReLU (Lachinov's ResNeXt blocks)
LEAKY_SLOPE = 0.01


def norm_layer(kind: str, channels: int, groups: int = 8) -> nn.Module:
    """Build a 3D normalisation layer from its name.

    Args:
        kind: ``"instance"`` (``InstanceNorm3d(affine=True)``, no running stats, so it behaves
            the same in train and eval mode and converts to OpenVINO MVN), ``"group"``
            (``GroupNorm(groups, channels)``), ``"batch"`` (``BatchNorm3d``, folds into the
            preceding conv at OpenVINO conversion) or ``"none"`` (identity).
        channels: number of channels ``C`` of the ``(N, C, X, Y, Z)`` input.
        groups: number of groups for ``"group"``; ``channels`` must be divisible by it.

    Returns:
        The normalisation module.

    Raises:
        ValueError: unknown ``kind`` or ``channels`` not divisible by ``groups``.
    """
    kind = kind.lower()
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind == "group":
        if groups < 1 or channels % groups:
            raise ValueError(
                f"GroupNorm: channels ({channels}) must be divisible by groups ({groups})"
            )
        return nn.GroupNorm(groups, channels)
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; expected one of {NORM_KINDS}")


def act_layer(kind: str | None) -> nn.Module:
    """Build an activation from its name: ``"relu"``, ``"leaky_relu"`` (slope 0.01) or ``"none"``."""
    kind = "none" if kind is None else kind.lower()
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {kind!r}; expected one of {ACT_KINDS}")


class ConvNormAct(nn.Sequential):
    """``Conv3d -> norm -> activation`` with "same"-style padding ``(kernel - 1) // 2``.

    With ``kernel=3, stride=2`` this is the paper's strided ("red") VGG block; with
    ``kernel=2, stride=2`` (padding 0) it is Lachinov's learned downsampling. The spatial output
    size is ``floor((S + 2 * pad - kernel) / stride) + 1`` per axis.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        kernel: cubic kernel size (voxels).
        stride: stride (voxels) along X, Y and Z.
        norm: see :func:`norm_layer`.
        act: ``"relu"``, ``"leaky_relu"`` or ``"none"``/``None``.
        groups: convolution groups (grouped conv); ``in_ch`` and ``out_ch`` must be divisible.
        bias: conv bias; ``None`` means "only when there is no norm" (a bias before a norm is
            redundant).
        norm_groups: GroupNorm groups (ignored for other norms).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int = 3,
        stride: int = 1,
        norm: str = "instance",
        act: str | None = "relu",
        groups: int = 1,
        bias: bool | None = None,
        norm_groups: int = 8,
    ) -> None:
        if in_ch % groups or out_ch % groups:
            raise ValueError(
                f"conv groups ({groups}) must divide in ({in_ch}) and out ({out_ch}) channels"
            )
        if bias is None:
            bias = norm.lower() == "none"
        super().__init__()
        self.conv = nn.Conv3d(
            in_ch,
            out_ch,
            kernel,
            stride=stride,
            padding=(kernel - 1) // 2,
            groups=groups,
            bias=bias,
        )
        self.norm = norm_layer(norm, out_ch, norm_groups)
        self.act = act_layer(act)


class SqueezeExcitation3d(nn.Module):
    """Channel attention: ``x * sigmoid(W2 relu(W1 GAP(x)))`` (Hu et al. 2018).

    Args:
        channels: channels ``C`` of the ``(N, C, X, Y, Z)`` input.
        reduction: hidden width is ``max(1, C // reduction)``.
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv3d(channels, hidden, 1)
        self.fc2 = nn.Conv3d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3, 4), keepdim=True)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


class ResNeXtBlock3d(nn.Module):
    """3D ResNeXt bottleneck, as in Lachinov's BraTS 2019 / cephalometry networks.

    ``1^3 conv -> norm -> LReLU(0.01) -> grouped 3^3 conv (stride) -> norm -> LReLU ->
    1^3 conv -> norm -> [SE] -> + shortcut -> LReLU``. The shortcut is the identity, or a
    ``1^3 conv (stride) -> norm`` projection when channels or stride change. Convs have no bias.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        mid_ch: bottleneck width; default ``out_ch // 2`` (ResNeXt's bottleneck ratio 2).
        groups: cardinality of the 3^3 conv; default ``max(1, out_ch // 16)`` (so with the
            default ``mid_ch`` every group has 8 channels). ``mid_ch`` must be divisible by it.
        stride: stride of the 3^3 conv (and of the projection).
        norm: see :func:`norm_layer`; the paper's hourglass uses ``"group"``.
        norm_groups: GroupNorm groups (8 in the paper's code); ``mid_ch`` and ``out_ch`` must be
            divisible by it when ``norm="group"``.
        se: append a squeeze-and-excitation gate before the residual add (off by default).

    Raises:
        ValueError: inconsistent channel counts.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        *,
        mid_ch: int | None = None,
        groups: int | None = None,
        stride: int = 1,
        norm: str = "group",
        norm_groups: int = 8,
        se: bool = False,
    ) -> None:
        super().__init__()
        mid_ch = max(1, out_ch // 2) if mid_ch is None else mid_ch
        groups = max(1, out_ch // 16) if groups is None else groups
        if groups < 1 or mid_ch % groups:
            raise ValueError(
                f"ResNeXt block {in_ch}->{out_ch}: bottleneck width {mid_ch} not divisible by groups {groups}"
            )
        self.conv1 = ConvNormAct(
            in_ch, mid_ch, 1, norm=norm, act="leaky_relu", norm_groups=norm_groups
        )
        self.conv2 = ConvNormAct(
            mid_ch,
            mid_ch,
            3,
            stride=stride,
            norm=norm,
            act="leaky_relu",
            groups=groups,
            norm_groups=norm_groups,
        )
        self.conv3 = ConvNormAct(mid_ch, out_ch, 1, norm=norm, act="none", norm_groups=norm_groups)
        self.se = SqueezeExcitation3d(out_ch) if se else nn.Identity()
        if in_ch != out_ch or stride != 1:
            self.shortcut: nn.Module = ConvNormAct(
                in_ch, out_ch, 1, stride=stride, norm=norm, act="none", norm_groups=norm_groups
            )
        else:
            self.shortcut = nn.Identity()
        self.act = act_layer("leaky_relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.conv3(self.conv2(self.conv1(x))))
        return self.act(y + self.shortcut(x))


def linear_upsampling_kernel(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ``4 x 4 x 4`` kernel ``[1/4, 3/4, 3/4, 1/4]^{(x)3}`` of trilinear x2 upsampling.

    Used by a depthwise ``ConvTranspose3d(kernel_size=4, stride=2, padding=1)``: output voxel
    ``2m`` gets ``3/4 x[m] + 1/4 x[m-1]`` and ``2m+1`` gets ``3/4 x[m] + 1/4 x[m+1]`` per axis,
    which is exactly ``F.interpolate(scale_factor=2, mode="trilinear", align_corners=False)``
    except at the first and last output voxel of each axis, where interpolation replicates the
    edge (``x[0]``) and the transposed conv zero-pads (``3/4 x[0]``).
    """
    w1 = torch.tensor([0.25, 0.75, 0.75, 0.25], dtype=dtype)
    return w1[:, None, None] * w1[None, :, None] * w1[None, None, :]


class Upsample3d(nn.Module):
    """x2 upsampling of ``(N, C, X, Y, Z)`` to ``(N, C, 2X, 2Y, 2Z)``; channels are unchanged.

    Modes:
        ``"trilinear"``: ``F.interpolate(scale_factor=2, mode="trilinear", align_corners=False)``,
        no parameters (the paper's original hourglass).

        ``"deconv"``: depthwise ``ConvTranspose3d(C, C, 4, stride=2, padding=1, groups=C,
        bias=False)`` initialised with :func:`linear_upsampling_kernel`, so at initialisation it
        equals trilinear x2 in the interior and differs only in the outer layer of voxels
        (``64 C`` parameters). This is the OpenVINO workaround the paper adopted
        (openvinotoolkit/openvino#1191: the 2020 CPU plugin had no fast 5D linear Interpolate).

        ``"deconv2"``: a plain learned ``ConvTranspose3d(C, C, 2, stride=2, bias=False)`` with
        PyTorch's default initialisation (``8 C^2`` parameters; the MONAI-style "deconv").

    Args:
        channels: channels ``C``.
        mode: one of ``"trilinear"``, ``"deconv"``, ``"deconv2"``.
        learnable: for ``"deconv"``, whether the interpolation kernel is trained
            (``False`` keeps it equal to trilinear; the weight stays in the ``state_dict``).
    """

    def __init__(self, channels: int, mode: str = "trilinear", learnable: bool = True) -> None:
        super().__init__()
        self.mode = mode
        self.up: nn.Module | None
        if mode == "trilinear":
            self.up = None
        elif mode == "deconv":
            self.up = nn.ConvTranspose3d(
                channels, channels, kernel_size=4, stride=2, padding=1, groups=channels, bias=False
            )
            with torch.no_grad():
                self.up.weight.copy_(linear_upsampling_kernel().expand(channels, 1, 4, 4, 4))
            self.up.weight.requires_grad_(learnable)
        elif mode == "deconv2":
            self.up = nn.ConvTranspose3d(channels, channels, kernel_size=2, stride=2, bias=False)
        else:
            raise ValueError(f"unknown upsample mode {mode!r}; expected one of {UPSAMPLE_MODES}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up is None:
            return F.interpolate(x, scale_factor=2.0, mode="trilinear", align_corners=False)
        return self.up(x)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"
