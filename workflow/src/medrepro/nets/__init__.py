"""Networks: a registry keyed by config strings, blocks, and bundle I/O.

Example:
    >>> from medrepro.nets import build_model, count_parameters
    >>> model = build_model("vgg_regressor", base_width=4)
    >>> count_parameters(model) > 0
    True
"""

from __future__ import annotations

from typing import Any

from torch import nn

from medrepro.nets.bundle import load_bundle, save_bundle
from medrepro.nets.deepmedic import DeepMedic
from medrepro.nets.enet3d import ENet3D
from medrepro.nets.hourglass import StackedHourglass3D
from medrepro.nets.hourglass2d import StackedHourglass2D
from medrepro.nets.lowres import LowRes
from medrepro.nets.mobilenetv2_3d import MobileNetV2UNet3D
from medrepro.nets.resnet2d import ResNetClassifier, ResNetEncoder, SimpleBaselines
from medrepro.nets.resunet import ResUNet3D
from medrepro.nets.unet3d import UNet3D
from medrepro.nets.vgg_regressor import VGGRegressor3D
from medrepro.nets.yolo import TinyYOLOv1, YOLOv1

__all__ = [
    "MODELS",
    "build_model",
    "count_parameters",
    "save_bundle",
    "load_bundle",
    "StackedHourglass3D",
    "ResUNet3D",
    "VGGRegressor3D",
    "YOLOv1",
    "TinyYOLOv1",
    "UNet3D",
    "DeepMedic",
    "LowRes",
    "MobileNetV2UNet3D",
    "ENet3D",
    "ResNetEncoder",
    "ResNetClassifier",
    "SimpleBaselines",
    "StackedHourglass2D",
]

#: architecture name (as written in configs and bundles) -> class
MODELS: dict[str, type[nn.Module]] = {
    "vgg_regressor": VGGRegressor3D,
    "stacked_hourglass": StackedHourglass3D,
    "resunet": ResUNet3D,
    "yolov1": YOLOv1,
    "tiny_yolov1": TinyYOLOv1,
    "unet3d": UNet3D,
    "deepmedic": DeepMedic,
    "lowres": LowRes,
    "mobilenetv2": MobileNetV2UNet3D,
    "enet": ENet3D,
    "resnet_classifier": ResNetClassifier,
    "simple_baselines": SimpleBaselines,
    "stacked_hourglass2d": StackedHourglass2D,
}


def build_model(arch: str, **kwargs: Any) -> nn.Module:
    """Instantiate the network registered as ``arch`` with ``kwargs``.

    Raises:
        KeyError: unknown ``arch`` (the message lists the known ones).
    """
    try:
        cls = MODELS[arch]
    except KeyError:
        raise KeyError(f"unknown arch {arch!r}; known: {sorted(MODELS)}") from None
    return cls(**kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
