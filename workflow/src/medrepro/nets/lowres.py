"""LowRes: a 1/8-resolution localisation stage and a full-resolution detail stage on crops.

Shirokikh et al., "LowRes: accelerating 3D medical image segmentation on CPU by adaptive
small-scale target localization", J. Imaging 7(2):35, 2021 (paper 003, Figure 3). The layers
follow the public ``neuro-ml/low-resolution`` code (``lowres/model/lowres/modelx8.py``,
``lowres.py``, ``structural_blocks.py``), with ``n = n_features`` (the configs use 16):

Stage 1 (:class:`LowResStage1`, the code's ``ModelX8``; dpipe BN pre-activation blocks):

- ``AvgPool3d(2)`` -> ``Conv3d(1, n, 3, bias=False) -> PreAct(n, n) -> ResBlock(n)`` = ``f2``;
- ``MaxPool3d(2) -> PreAct(n, 2n) -> 2 x ResBlock(2n)`` = ``f4``;
- ``AvgPool3d(2) -> PreAct(2n, 4n) -> 2 x ResBlock(4n) -> ResBlock(4n, kernel 1)`` = ``f8``;
- ``PreAct(4n, 1, 1, bias=False) -> BatchNorm3d(1)`` = ``logits8`` (1/8 resolution).

Stage 2 (:class:`LowResDetail`; BN-free pre-activation ``ReLU -> Conv``, residual blocks
``x + ReLU(Conv(ReLU(Conv(x))))``), top-down on a crop aligned to the 8-voxel grid:

- ``h8 = PreAct(4n, 2n, 1)(f8)``, trilinear x2;
- ``h4 = PreAct(2n, n + 1, 1)(f4 + up(h8))``, trilinear x2;
- ``h2 = [2 x Res(n + 1), PreAct(n + 1, n, 3)](cat(f2, AvgPool2(x)) + up(h4))``, trilinear x2;
- ``h1 = [2 x Res(n + 1), Res(n + 1, kernel 1)](cat(x, up(h2)))``;
- ``logits = Conv3d(n + 1, 1, 1)(h1)`` (with a bias, unlike the reference code: it carries the
  initial foreground prior of short runs, see ``training.lowres.init_output_prior``).

The reference fuses by addition (``f4 + up``, ``cat(f2, x2) + up``) and concatenates the raw
image crop at full resolution; that is kept here. Deviation: the reference upsamples with
``align_corners=True``, whose sampling grid depends on the crop size, so a component's output
would depend on its box; ``align_corners=False`` (default here) is translation-equivariant, so a
crop's output equals the whole-input output wherever the receptive field stays inside the crop.
``align_corners=True`` is available for the reference behaviour.

Parameters at ``n = 16``: stage 1 652,962, stage 2 73,126, total 726,088.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from medrepro.nets.shapes import SameShapeContract, check_sides
from medrepro.nets.unet3d import PreActivation3d, ResBlock3d

__all__ = [
    "SCALE",
    "LowResStage1",
    "LowResDetail",
    "LowRes",
    "freeze_stage1",
    "PreActNoBN3d",
    "ResBlockNoBN3d",
]

#: ratio of the full resolution to the stage-1 output resolution (voxels per axis)
SCALE = 8


class PreActNoBN3d(nn.Sequential):
    """BN-free pre-activation ``ReLU -> Conv3d(in, out, kernel, padding (kernel - 1) // 2)``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, bias: bool = False) -> None:
        super().__init__()
        self.act = nn.ReLU()
        self.conv = nn.Conv3d(in_ch, out_ch, kernel, padding=(kernel - 1) // 2, bias=bias)


class ResBlockNoBN3d(nn.Module):
    """``x + ReLU(Conv(ReLU(Conv(x))))`` with biased same-size convs, channels kept."""

    def __init__(self, ch: int, kernel: int = 3) -> None:
        super().__init__()
        pad = (kernel - 1) // 2
        self.path = nn.Sequential(
            nn.Conv3d(ch, ch, kernel, padding=pad),
            nn.ReLU(),
            nn.Conv3d(ch, ch, kernel, padding=pad),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.path(x)


class LowResStage1(nn.Module):
    """Localisation stage: ``(N, 1, D, H, W)`` -> ``(logits8, f2, f4, f8)``.

    Shapes: ``logits8 (N, 1, D/8, H/8, W/8)``, ``f2 (N, n, D/2, ...)``, ``f4 (N, 2n, D/4, ...)``,
    ``f8 (N, 4n, D/8, ...)``; sides must be multiples of 8 voxels.

    Args:
        n_features: ``n`` (the paper's configs: 16).
        in_channels: image channels (1).
        out_channels: logit channels (1).
    """

    divisor = SCALE

    def __init__(self, n_features: int = 16, in_channels: int = 1, out_channels: int = 1) -> None:
        super().__init__()
        n = int(n_features)
        self.n_features = n
        self.pool2 = nn.AvgPool3d(2)
        self.path_x2 = nn.Sequential(
            nn.Conv3d(in_channels, n, 3, padding=1, bias=False),
            PreActivation3d(n, n),
            ResBlock3d(n, n),
        )
        self.path_x4 = nn.Sequential(
            nn.MaxPool3d(2),
            PreActivation3d(n, 2 * n),
            ResBlock3d(2 * n, 2 * n),
            ResBlock3d(2 * n, 2 * n),
        )
        self.path_x8 = nn.Sequential(
            nn.AvgPool3d(2),
            PreActivation3d(2 * n, 4 * n),
            ResBlock3d(4 * n, 4 * n),
            ResBlock3d(4 * n, 4 * n),
            ResBlock3d(4 * n, 4 * n, kernel=1, padding=0),
        )
        self.output_x8 = nn.Sequential(
            PreActivation3d(4 * n, out_channels, 1, padding=0, bias=False),
            nn.BatchNorm3d(out_channels),
        )

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if not torch.jit.is_tracing():
            check_sides(tuple(x.shape[2:]), SCALE, "LowResStage1 input")
        f2 = self.path_x2(self.pool2(x))
        f4 = self.path_x4(f2)
        f8 = self.path_x8(f4)
        return self.output_x8(f8), f2, f4, f8


class LowResDetail(nn.Module):
    """Detail stage: ``(x, f2, f4, f8)`` crops -> full-resolution logits ``(N, 1, d, h, w)``.

    ``x (N, 1, d, h, w)`` is an image crop whose sides are multiples of 8 voxels and whose corner
    lies on the 8-voxel grid; ``f2, f4, f8`` are the matching crops of the stage-1 features
    (``(d/2, ...)``, ``(d/4, ...)``, ``(d/8, ...)``). Any crop size works (dynamic shapes).

    Args:
        n_features: ``n``, as for :class:`LowResStage1`.
        in_channels: image channels (1).
        out_channels: logit channels (1).
        align_corners: trilinear upsampling mode; ``False`` (default, crop-consistent) or
            ``True`` (the reference code).
    """

    divisor = SCALE

    def __init__(
        self,
        n_features: int = 16,
        in_channels: int = 1,
        out_channels: int = 1,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        n = int(n_features)
        x2_ch = n + in_channels
        x1_ch = n + in_channels
        self.align_corners = bool(align_corners)
        self.pool2 = nn.AvgPool3d(2)
        self.path_x8 = PreActNoBN3d(4 * n, 2 * n, 1)
        self.path_x4 = PreActNoBN3d(2 * n, x2_ch, 1)
        self.path_x2 = nn.Sequential(
            ResBlockNoBN3d(x2_ch), ResBlockNoBN3d(x2_ch), PreActNoBN3d(x2_ch, n, 3)
        )
        self.path_x1 = nn.Sequential(
            ResBlockNoBN3d(x1_ch), ResBlockNoBN3d(x1_ch), ResBlockNoBN3d(x1_ch, kernel=1)
        )
        self.output_x1 = nn.Conv3d(x1_ch, out_channels, 1, bias=True)

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(
            x, scale_factor=2.0, mode="trilinear", align_corners=self.align_corners
        )

    def forward(
        self, x: torch.Tensor, f2: torch.Tensor, f4: torch.Tensor, f8: torch.Tensor
    ) -> torch.Tensor:
        if not torch.jit.is_tracing():
            _check_crops(x, f2, f4, f8)
        h4 = self.path_x4(f4 + self._up(self.path_x8(f8)))
        h2 = self.path_x2(torch.cat([f2, self.pool2(x)], dim=1) + self._up(h4))
        h1 = self.path_x1(torch.cat([x, self._up(h2)], dim=1))
        return self.output_x1(h1)


def _check_crops(x: torch.Tensor, f2: torch.Tensor, f4: torch.Tensor, f8: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` sides are multiples of 8 and the features match."""
    shape = tuple(int(s) for s in x.shape[2:])
    check_sides(shape, SCALE, "LowResDetail crop")
    for name, f, k in (("f2", f2, 2), ("f4", f4, 4), ("f8", f8, 8)):
        want = tuple(s // k for s in shape)
        if tuple(int(s) for s in f.shape[2:]) != want:
            raise ValueError(
                f"LowResDetail: {name} spatial shape {tuple(f.shape[2:])} != crop {shape} / {k}"
            )


class LowRes(SameShapeContract, nn.Module):
    """Both stages: ``(N, 1, D, H, W)`` -> ``(logits8 (N, 1, D/8, ...), logits (N, 1, D, ...))``.

    ``forward`` runs the detail stage on the whole input (training); whole-volume inference
    crops components instead (``medrepro.transforms.lowres_components``).

    Args:
        n_features: ``n`` of both stages (16).
        in_channels: image channels (1).
        out_channels: logit channels (1).
        align_corners: upsampling mode of the detail stage (see :class:`LowResDetail`).
    """

    divisor = SCALE

    def __init__(
        self,
        n_features: int = 16,
        in_channels: int = 1,
        out_channels: int = 1,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.stage1 = LowResStage1(n_features, in_channels, out_channels)
        self.stage2 = LowResDetail(n_features, in_channels, out_channels, align_corners)
        self.stage1_frozen = False

    def train(self, mode: bool = True) -> LowRes:
        """Set train/eval mode; a frozen stage 1 stays in eval mode (fixed BN statistics)."""
        super().train(mode)
        if self.stage1_frozen:
            self.stage1.eval()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits8, f2, f4, f8 = self.stage1(x)
        return logits8, self.stage2(x, f2, f4, f8)


def freeze_stage1(model: LowRes) -> LowRes:
    """Freeze stage 1 for stage-2 training: no gradients, eval mode kept by ``model.train()``.

    Returns ``model`` (modified in place).
    """
    for p in model.stage1.parameters():
        p.requires_grad_(False)
    model.stage1_frozen = True
    model.stage1.eval()
    return model
