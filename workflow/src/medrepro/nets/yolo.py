"""YOLOv1 (24 conv + 2 FC) and tiny YOLOv1 (8 conv + 1 FC) for 2D detection.

Ramos, Olveres, Escalante-Ramírez, Arámbula Cosío 2020 (paper 004, cerebellum localisation)
train Darknet's YOLOv1 with ``S in {7, 9, 11, 13}``, ``B = 2``, ``C = 1`` (448 input) and tiny
YOLO (224 input). Redmon et al. 2016, "You only look once", Fig. 3 gives the 24-layer trunk.

Both networks map ``(N, 3, H, W)`` float images in [0, 1] to raw, linear outputs
``(N, S, S, 5 B + C)`` indexed ``[n, row (y), col (x), :]``; per cell
``[x, y, w, h, conf] * B + classes`` with ``x, y`` cell offsets and ``w, h`` relative to the
image (decoding: :mod:`medrepro.transforms.yolo_grid`).

Deviations from Darknet, documented:

- batch norm after every conv of YOLOv1 (Darknet's ``yolov1.cfg`` has none; tiny YOLO has it);
  convs followed by BN carry no bias, as in Darknet's ``batch_normalize=1`` layers;
- an adaptive average pool to ``S x S`` before the fully connected head, so one trunk serves
  every ``S`` and input size (Darknet's 448 input gives exactly 7 x 7; tiny YOLO at 224 ends at
  4 x 4 with ``ceil_mode`` pooling, Darknet's padded maxpool). Pooling that does not divide
  evenly (4 -> 7, 7 -> 11) is written as two constant matrix products, which equal
  ``F.adaptive_avg_pool2d`` and export to ONNX (torch's exporter rejects uneven adaptive pools);
- YOLOv1's head is ``Linear(c S^2, hidden) -> LeakyReLU -> Dropout -> Linear`` (the paper's FC
  4096 + dropout 0.5, not Darknet's locally connected layer).

Parameter count at ``width=1, S=7, hidden=4096`` (convs without bias): conv weights 60,142,784,
BN 26,368, FC1 205,524,992, FC2 ``4096 x 30 S^2 + 30 S^2``: **271,716,734 (271.7 M) for C = 20**
(1470 outputs), i.e. the ~271.7 M of the original YOLOv1 (Fig. 3 with the 4096-wide FC; with conv
biases instead of BN: 271,703,550); 267,902,427 (267.9 M) for the paper's ``C = 1`` (539 outputs). Tiny YOLOv1 at C = 20,
448 input (``yolov1-tiny.cfg``): 27.1 M.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "LEAKY_SLOPE",
    "YOLOV1_LAYERS",
    "TINY_YOLOV1_LAYERS",
    "YOLOv1",
    "TinyYOLOv1",
    "GridPool2d",
    "scaled_channels",
]

#: negative slope of every LeakyReLU (Darknet's ``leaky``)
LEAKY_SLOPE = 0.1

#: YOLOv1 trunk: ``(kernel, channels, stride)`` convs and ``"M"`` (maxpool 2x2/2); 24 convs
YOLOV1_LAYERS: tuple[tuple[int, int, int] | str, ...] = (
    (7, 64, 2),
    "M",
    (3, 192, 1),
    "M",
    (1, 128, 1),
    (3, 256, 1),
    (1, 256, 1),
    (3, 512, 1),
    "M",
    *((1, 256, 1), (3, 512, 1)) * 4,
    (1, 512, 1),
    (3, 1024, 1),
    "M",
    *((1, 512, 1), (3, 1024, 1)) * 2,
    (3, 1024, 1),
    (3, 1024, 2),
    (3, 1024, 1),
    (3, 1024, 1),
)

#: Darknet ``yolov1-tiny.cfg``: 6 x [conv 3x3, maxpool 2/2], conv 1024, conv 256; 8 convs
TINY_YOLOV1_LAYERS: tuple[tuple[int, int, int] | str, ...] = (
    (3, 16, 1),
    "M",
    (3, 32, 1),
    "M",
    (3, 64, 1),
    "M",
    (3, 128, 1),
    "M",
    (3, 256, 1),
    "M",
    (3, 512, 1),
    "M",
    (3, 1024, 1),
    (3, 256, 1),
)


def scaled_channels(channels: int, width: float) -> int:
    """``round(channels * width)``, at least 8 (the ``width`` multiplier of the quick scale)."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return max(8, int(round(channels * width)))


def _trunk(
    layers: tuple[tuple[int, int, int] | str, ...], width: float, ceil_mode: bool
) -> tuple[nn.Sequential, int]:
    """Conv -> BN -> LeakyReLU(0.1) stack (maxpool 2x2/2 at ``"M"``) and its output channels."""
    modules: list[nn.Module] = []
    ch = 3
    for spec in layers:
        if spec == "M":
            modules.append(nn.MaxPool2d(2, 2, ceil_mode=ceil_mode))
            continue
        k, c, stride = spec  # type: ignore[misc]
        out = scaled_channels(c, width)
        modules += [
            nn.Conv2d(ch, out, k, stride=stride, padding=k // 2, bias=False),
            nn.BatchNorm2d(out),
            nn.LeakyReLU(LEAKY_SLOPE),
        ]
        ch = out
    return nn.Sequential(*modules), ch


@lru_cache(maxsize=64)
def _pool_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` averaging matrix of adaptive pooling along one axis.

    Bin ``i`` covers ``[floor(i n_in / n_out), ceil((i + 1) n_in / n_out))``, torch's bins.
    """
    m = np.zeros((n_out, n_in), dtype=np.float32)
    for i in range(n_out):
        start = (i * n_in) // n_out
        end = -((-(i + 1) * n_in) // n_out)
        m[i, start:end] = 1.0 / (end - start)
    return m


class GridPool2d(nn.Module):
    """Adaptive average pooling of ``(N, C, H, W)`` to ``(N, C, S, S)`` that always exports.

    Evenly divisible sizes use ``F.adaptive_avg_pool2d`` (ONNX ``AveragePool``); otherwise the
    pooling is ``P_h @ x @ P_w^T`` with constant bin-averaging matrices (numerically the same).
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool ``(N, C, H, W)`` to ``(N, C, S, S)``."""
        h, w = int(x.shape[-2]), int(x.shape[-1])
        s = self.size
        if h % s == 0 and w % s == 0:
            return F.adaptive_avg_pool2d(x, s)
        ph = torch.from_numpy(_pool_matrix(h, s)).to(device=x.device, dtype=x.dtype)
        pw_t = torch.from_numpy(np.ascontiguousarray(_pool_matrix(w, s).T)).to(
            device=x.device, dtype=x.dtype
        )
        return torch.matmul(torch.matmul(ph, x), pw_t)

    def extra_repr(self) -> str:
        return f"size={self.size}"


#: initial confidence of every predictor and initial box side (fraction of the image)
PRIOR_CONF = 0.1
PRIOR_SIZE = 0.2


def init_output_layer(layer: nn.Linear, S: int, B: int, C: int) -> None:
    """Start the detector from a neutral guess: small weights, conf 0.1, boxes 0.2 wide.

    With zero biases every one of the ``S^2 B`` confidences starts at sigmoid(0) = 0.5, so the
    no-object term of the loss (and its gradient) is huge at the first step and plain SGD at the
    paper's learning rates diverges; a low confidence prior (as in RetinaNet) removes that (0.1, not
    lower: the sigmoid's slope must leave the IoU-valued confidence target learnable), and
    the ``sqrt(w)``, ``sqrt(h)`` outputs start at ``sqrt(0.2)``. Weights are scaled by 0.01.
    """
    depth = 5 * B + C
    with torch.no_grad():
        layer.weight.mul_(0.01)
        bias = layer.bias.view(S, S, depth)
        bias.zero_()
        for b in range(B):
            bias[..., 5 * b + 2 : 5 * b + 4] = math.sqrt(PRIOR_SIZE)
            bias[..., 5 * b + 4] = math.log(PRIOR_CONF / (1.0 - PRIOR_CONF))


def _check_grid(S: int, B: int, C: int) -> None:
    if S < 1 or B < 1 or C < 0:
        raise ValueError(f"need S >= 1, B >= 1, C >= 0; got S={S}, B={B}, C={C}")


class YOLOv1(nn.Module):
    """YOLOv1: 24 conv layers + 2 fully connected layers (Redmon et al. 2016, Fig. 3).

    Trunk (``features``), each conv followed by BN and LeakyReLU(0.1): 7x7/2 64, maxpool,
    3x3 192, maxpool, 1x1 128, 3x3 256, 1x1 256, 3x3 512, maxpool, 4 x [1x1 256, 3x3 512],
    1x1 512, 3x3 1024, maxpool, 2 x [1x1 512, 3x3 1024], 3x3 1024, 3x3 1024/2, 3x3 1024,
    3x3 1024 (total stride 64: 448 -> 7 x 7). ``head``: adaptive pool to ``S x S``, Flatten,
    ``Linear(c S^2, hidden)``, LeakyReLU(0.1), Dropout, ``Linear(hidden, S^2 (5B + C))``.

    Args:
        S: grid side (cells per axis).
        B: boxes (predictors) per cell.
        C: classes (1: cerebellum).
        input_size: nominal square input side in pixels (kept for bundles; any side >= 64
            works).
        width: multiplies every conv's channels (``round``, at least 8).
        hidden: width of the first fully connected layer (paper: 4096).
        dropout: dropout probability after the first fully connected layer.
    """

    def __init__(
        self,
        S: int = 7,
        B: int = 2,
        C: int = 1,
        input_size: int = 448,
        width: float = 1.0,
        hidden: int = 4096,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        _check_grid(S, B, C)
        self.S, self.B, self.C = int(S), int(B), int(C)
        self.input_size = int(input_size)
        self.features, ch = _trunk(YOLOV1_LAYERS, width, ceil_mode=False)
        self.feature_channels = ch
        self.head = nn.Sequential(
            GridPool2d(S),
            nn.Flatten(1),
            nn.Linear(ch * S * S, hidden),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Dropout(dropout),
            nn.Linear(hidden, S * S * (5 * B + C)),
        )
        init_output_layer(self.head[-1], S, B, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, 3, H, W)`` images in [0, 1] to raw ``(N, S, S, 5B + C)`` outputs."""
        out = self.head(self.features(x))
        return out.reshape(-1, self.S, self.S, 5 * self.B + self.C)


class TinyYOLOv1(nn.Module):
    """Tiny YOLOv1, Darknet's ``yolov1-tiny.cfg`` (8 conv layers, the paper's 224 input).

    ``features``: 6 x [conv 3x3 (16, 32, 64, 128, 256, 512), BN, LeakyReLU(0.1), maxpool 2/2
    with ``ceil_mode`` (Darknet pads odd maps: 224 -> 112 -> 56 -> 28 -> 14 -> 7 -> 4)], conv
    3x3 1024, conv 3x3 256 (each with BN and LeakyReLU). ``head``: adaptive pool to ``S x S``,
    Flatten, one linear ``Linear(c S^2, S^2 (5B + C))`` (Darknet's ``connected``, linear).

    Args:
        S: grid side.
        B: boxes per cell.
        C: classes.
        input_size: nominal square input side in pixels (kept for bundles).
        width: multiplies every conv's channels (``round``, at least 8).
    """

    def __init__(
        self, S: int = 7, B: int = 2, C: int = 1, input_size: int = 224, width: float = 1.0
    ) -> None:
        super().__init__()
        _check_grid(S, B, C)
        self.S, self.B, self.C = int(S), int(B), int(C)
        self.input_size = int(input_size)
        self.features, ch = _trunk(TINY_YOLOV1_LAYERS, width, ceil_mode=True)
        self.feature_channels = ch
        self.head = nn.Sequential(
            GridPool2d(S),
            nn.Flatten(1),
            nn.Linear(ch * S * S, S * S * (5 * B + C)),
        )
        init_output_layer(self.head[-1], S, B, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, 3, H, W)`` images in [0, 1] to raw ``(N, S, S, 5B + C)`` outputs."""
        out = self.head(self.features(x))
        return out.reshape(-1, self.S, self.S, 5 * self.B + self.C)
