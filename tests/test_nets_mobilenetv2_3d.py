"""3D MobileNetV2 U-Net: channel rule, shapes, divisor, parameter counts, gradients, OpenVINO."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from net_checks import compile_f32
from torch import nn

from medrepro.nets import MODELS, build_model, count_parameters, load_bundle, save_bundle
from medrepro.nets.mobilenetv2_3d import (
    INVERTED_RESIDUAL_SETTING,
    InvertedResidual3d,
    MobileNetV2UNet3D,
    make_divisible,
)

torch.set_num_threads(1)


def test_registered_and_built_from_json_kwargs() -> None:
    assert MODELS["mobilenetv2"] is MobileNetV2UNet3D
    model = build_model("mobilenetv2", width_mult=0.25, upsample="trilinear")
    assert isinstance(model, MobileNetV2UNet3D)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(32.0, 32), (8.0, 8), (4.0, 8), (12.0, 16), (20.0, 24), (19.0, 24), (80.0, 80), (26.0, 24)],
)
def test_make_divisible(value: float, expected: int) -> None:
    # nearest multiple of 8, at least 8, never more than 10 % below the value (19 -> 16 < 17.1)
    assert make_divisible(value) == expected


@pytest.mark.parametrize(
    ("width", "expected"), [(1.0, 4_571_353), (0.5, 1_249_305), (0.25, 364_833)]
)
def test_parameter_counts(width: float, expected: int) -> None:
    assert count_parameters(MobileNetV2UNet3D(width_mult=width)) == expected


def test_encoder_follows_the_torchvision_table() -> None:
    model = MobileNetV2UNet3D()
    enc = model.encoder
    stem = enc.stages[0][0][0]
    assert stem.out_channels == 32 and stem.stride == (2, 2, 2)
    assert enc.widths == [c for _, c, _, _ in INVERTED_RESIDUAL_SETTING]
    blocks = [m for m in enc.modules() if isinstance(m, InvertedResidual3d)]
    assert len(blocks) == sum(n for _, _, n, _ in INVERTED_RESIDUAL_SETTING) == 17
    dw_strides = [b.conv[-3][0].stride[0] for b in blocks]  # the depthwise conv of each block
    assert dw_strides == [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
    # expansion 6 except the first block; residuals where stride 1 and widths match
    assert blocks[0].conv[0][0].groups == 32 and blocks[1].conv[0][0].out_channels == 16 * 6
    assert [b.use_residual for b in blocks].count(True) == 10
    assert enc.feature_channels == [16, 24, 32, 96, 320]
    assert [b.conv1.conv[-2].out_channels for b in model.decoder] == [96, 32, 24, 16]
    assert any(isinstance(m, nn.ReLU6) for m in model.modules())
    assert not any(type(m) in (nn.ReLU, nn.PReLU, nn.LeakyReLU) for m in model.modules())
    assert model.head.out_channels == 1 and model.head.kernel_size == (1, 1, 1)


@pytest.mark.parametrize("shape", [(32, 32, 32), (64, 32, 96), (32, 64, 32)])
def test_output_shape_matches_forward(shape: tuple[int, int, int]) -> None:
    model = MobileNetV2UNet3D(width_mult=0.25).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 1, *shape))
    assert y.shape == (1, 1, *shape) and y.dtype == torch.float32
    assert model.output_shape(shape) == shape == model.input_shape_for(shape)
    assert model.margin == 0 and model.divisor == 32


def test_divisor_is_enforced() -> None:
    model = MobileNetV2UNet3D(width_mult=0.25)
    for bad in [(16, 32, 32), (32, 32, 48)]:
        with pytest.raises(ValueError, match="multiples of 32"):
            model.output_shape(bad)
        with pytest.raises(ValueError, match="multiples of 32"):
            model.input_shape_for(bad)
        with pytest.raises(ValueError, match="multiples of 32"):
            model(torch.rand(1, 1, *bad))
    with pytest.raises(ValueError, match="width_mult"):
        MobileNetV2UNet3D(width_mult=-1.0)


def test_head_then_trilinear_equals_trilinear_then_head() -> None:
    """Upsampling the logit equals upsampling the features, then the 1^3 conv (both linear)."""
    torch.manual_seed(0)
    model = MobileNetV2UNet3D(width_mult=0.25).eval()
    with torch.no_grad():
        model.head.bias.fill_(0.3)
        f = torch.randn(1, model.head.in_channels, 4, 6, 5)
        a = model.upsample(model.head(f))
        b = model.head(nn.functional.interpolate(f, scale_factor=2.0, mode="trilinear"))
    assert torch.allclose(a, b, atol=1e-5)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = MobileNetV2UNet3D(width_mult=0.25).train()
    # a side of 64: with 32^3 the 1/32 level is one voxel, where a constant shift (a BN bias)
    # before a training-mode BN provably has zero gradient
    x = torch.rand(2, 1, 64, 32, 32, requires_grad=True)
    model(x).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_openvino_conversion_parity() -> None:
    ov = pytest.importorskip("openvino")
    torch.manual_seed(0)
    model = MobileNetV2UNet3D(width_mult=0.25)
    with torch.no_grad():  # non-trivial BN running statistics
        model.train()(torch.rand(2, 1, 32, 32, 32))
    model.eval()
    x = torch.rand(1, 1, 32, 64, 32)
    with torch.no_grad():
        ref = model(x).numpy()
    ir = ov.convert_model(model, example_input=x, input=[x.shape])
    compiled = compile_f32(ir)
    assert "Interpolate" in {op.get_type_name() for op in ir.get_ops()}  # trilinear x2
    out = compiled(x.numpy())[0]
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


def test_bundle_round_trip(tmp_path: Path) -> None:
    """JSON-able kwargs rebuild the same network (running statistics included).

    ``output_kind="logits"`` is the docs/lowres.md contract for every LowRes-paper bundle.
    """
    kwargs = json.loads(json.dumps({"width_mult": 0.25, "upsample": "deconv"}))
    torch.manual_seed(0)
    model = build_model("mobilenetv2", **kwargs)
    with torch.no_grad():
        model.train()(torch.rand(2, 1, 32, 32, 32))
    model.eval()
    x = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        ref = model(x)
    path = tmp_path / "model.pt"
    save_bundle(
        path,
        model,
        arch="mobilenetv2",
        kwargs=kwargs,
        input_shape=list(x.shape),
        output_kind="logits",
    )
    loaded, meta = load_bundle(path)
    assert meta["kwargs"] == kwargs
    with torch.no_grad():
        assert torch.equal(loaded(x), ref)
