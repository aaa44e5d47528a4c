"""VGG-like direct 3D landmark regression (the paper's "direct regression" model).

Vasiliev, Lachinov, Getmanskaya, GraphiCon 2020, Sec. 4.4 and Fig. 2: a series of
``3^3 conv -> InstanceNorm -> ReLU`` blocks, some with strided convolutions (the red blocks),
global average pooling, two fully connected layers, and ``K * 3 = 12`` outputs (4 landmarks).
1.33 M parameters, 3.8 GFLOP at ``1 x 1 x 128 x 128 x 64``.

The widths, depth, output normalisation and hidden FC width are not given in the paper; they
are reconstructed here (see :class:`VGGRegressor3D`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from medrepro.nets.blocks import ConvNormAct

__all__ = ["VGGRegressor3D", "decode_coordinates", "encode_coordinates"]


def _sizes_like(ref: Any, spatial_shape: Sequence[int]) -> Any:
    """``spatial_shape - 1`` as an array/tensor that broadcasts against ``(..., 3)`` ``ref``."""
    if len(spatial_shape) != 3:
        raise ValueError(f"spatial_shape must have 3 entries (X, Y, Z), got {tuple(spatial_shape)}")
    if isinstance(ref, torch.Tensor):
        dtype = ref.dtype if ref.is_floating_point() else torch.float32
        return torch.as_tensor([s - 1 for s in spatial_shape], dtype=dtype, device=ref.device)
    return np.asarray([s - 1 for s in spatial_shape], dtype=np.float64)


def decode_coordinates(out: Any, spatial_shape: Sequence[int]) -> Any:
    """Map normalised network outputs to continuous voxel indices.

    ``coord_vox = (out + 1) / 2 * (size - 1)`` per axis, so -1 is the centre of the first voxel
    and +1 the centre of the last one (voxel centres at integer indices).

    Args:
        out: ``(N, K * 3)`` (landmark-major: ``x0, y0, z0, x1, ...``) or ``(N, K, 3)``, a
            tensor or an array.
        spatial_shape: input size ``(X, Y, Z)`` in voxels.

    Returns:
        ``(N, K, 3)`` voxel coordinates ``(x, y, z)``, same type as ``out`` (float64 for
        numpy input).
    """
    if isinstance(out, torch.Tensor):
        out = out.reshape(out.shape[0], -1, 3)
    else:
        out = np.asarray(out, dtype=np.float64)
        out = out.reshape(out.shape[0], -1, 3)
    return (out + 1.0) * 0.5 * _sizes_like(out, spatial_shape)


def encode_coordinates(vox: Any, spatial_shape: Sequence[int]) -> Any:
    """Inverse of :func:`decode_coordinates`: voxel indices ``(N, K, 3)`` to ``(N, K * 3)`` in [-1, 1].

    Args:
        vox: ``(N, K, 3)`` continuous voxel indices ``(x, y, z)``, tensor or array.
        spatial_shape: input size ``(X, Y, Z)`` in voxels.

    Returns:
        ``(N, K * 3)`` normalised coordinates (float32 for numpy input, the training dtype).
    """
    if not isinstance(vox, torch.Tensor):
        vox = np.asarray(vox, dtype=np.float64)
    out = vox / _sizes_like(vox, spatial_shape) * 2.0 - 1.0
    out = out.reshape(out.shape[0], -1)
    return out if isinstance(out, torch.Tensor) else out.astype(np.float32)


class VGGRegressor3D(nn.Module):
    """VGG-like 3D CNN regressing ``K`` landmark coordinates directly.

    Stage ``s`` has ``convs_per_stage[s]`` blocks of ``3^3 conv -> norm -> ReLU`` with
    ``widths[s]`` channels; the first block of stage ``s`` has stride ``strides[s]`` (stride 2:
    the paper's red blocks). Then global average pooling, ``Linear(widths[-1], hidden) -> ReLU
    -> Linear(hidden, 3 K)``. The output is linear (no squashing) and is trained against
    coordinates normalised to [-1, 1], see :func:`encode_coordinates` /
    :func:`decode_coordinates`.

    Reconstructed defaults (paper: 1.33 M parameters, 3.8 GFLOP): ``widths = base_width *
    (1, 2, 4, 8) = (16, 32, 64, 128)``, ``convs_per_stage = (2, 2, 2, 3)``, ``strides = (2, 2,
    2, 1)`` (128x128x64 -> 64x64x32 -> 32x32x16 -> 16x16x8, the last stage stays at 16x16x8),
    ``hidden = widths[-1] // 2 = 64``. Conv weights ``27 * sum(c_in * c_out)`` = 1,320,624,
    InstanceNorm affine 1,216, FC 8,256 + 780: **1,330,876 parameters**; 4.25 G multiply-adds at
    ``128x128x64``. Parameters scale roughly with ``base_width^2`` (``base_width=8``: 0.33 M;
    ``4``: 0.08 M).

    Works for any input side (global pooling); with the default total stride 8, sides >= 16
    leave at least 2 voxels per axis in the last stage, which InstanceNorm needs in training
    mode (a 1x1x1 map has no spatial statistics).

    Args:
        in_channels: input channels ``C`` of ``(N, C, X, Y, Z)``.
        n_landmarks: ``K``; the output is ``(N, 3 K)``.
        base_width: channels of the first stage; scales all default widths.
        widths: explicit per-stage channels (overrides ``base_width``).
        convs_per_stage: number of conv blocks per stage; same length as ``widths``.
        strides: stride of the first conv block of each stage; same length as ``widths``.
        norm: ``"instance"`` (paper), ``"group"``, ``"batch"`` or ``"none"``.
        hidden: width of the first FC layer; default ``widths[-1] // 2``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_landmarks: int = 4,
        base_width: int = 16,
        widths: Sequence[int] | None = None,
        norm: str = "instance",
        hidden: int | None = None,
        convs_per_stage: Sequence[int] = (2, 2, 2, 3),
        strides: Sequence[int] = (2, 2, 2, 1),
    ) -> None:
        super().__init__()
        widths = tuple(base_width * m for m in (1, 2, 4, 8)) if widths is None else tuple(widths)
        convs_per_stage = tuple(convs_per_stage)
        strides = tuple(strides)
        if not len(widths) == len(convs_per_stage) == len(strides) or min(convs_per_stage) < 1:
            raise ValueError(
                f"widths {widths}, convs_per_stage {convs_per_stage} and strides {strides} must have "
                "the same length, with at least one conv per stage"
            )
        hidden = max(1, widths[-1] // 2) if hidden is None else hidden
        self.n_landmarks = n_landmarks
        layers: list[nn.Module] = []
        ch = in_channels
        for width, n, stride in zip(widths, convs_per_stage, strides, strict=True):
            for i in range(n):
                first_stride = stride if i == 0 else 1
                layers.append(ConvNormAct(ch, width, 3, stride=first_stride, norm=norm, act="relu"))
                ch = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(ch, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 3 * n_landmarks),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, C, X, Y, Z)`` volumes to ``(N, 3 K)`` normalised coordinates."""
        return self.head(self.pool(self.features(x)))
