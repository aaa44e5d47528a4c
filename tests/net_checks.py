"""Shared checks of the network tests: non-trivial BatchNorm state, and compiling a converted
model on OpenVINO's CPU plugin in FP32 (the parity tests compare it with PyTorch)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm (1D, 2D, 3D) non-trivial affine parameters and running statistics."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=g)
            m.bias.data = 0.2 * torch.randn(c, generator=g)
            m.running_mean.data = 0.1 * torch.randn(c, generator=g)
            m.running_var.data = 0.5 + torch.rand(c, generator=g)


def compile_f32(ov_model: Any) -> Any:
    """``ov_model`` compiled for the CPU with FP32 inference precision on one thread."""
    import openvino as ov

    return ov.Core().compile_model(
        ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
    )
