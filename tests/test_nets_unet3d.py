"""LowRes-paper 3D U-Net: parameter count by hand, shapes, divisor, gradients, OpenVINO parity."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from net_checks import compile_f32, randomize_bn
from torch import nn

from medrepro.nets import MODELS, build_model, count_parameters
from medrepro.nets.unet3d import PreActivation3d, ResBlock3d, UNet3D

torch.set_num_threads(1)


def _conv(i: int, o: int, k: int, bias: bool) -> int:
    return i * o * k**3 + (o if bias else 0)


def expected_unet_params(b: int, depth: int) -> int:
    """Hand count of the dpipe U-Net layout (BN has 2 parameters per channel)."""
    n = _conv(1, b, 3, False) + 2 * b + _conv(b, 2 * b, 3, True)
    widths = [2 * b * 2**k for k in range(depth)]
    for c in widths:  # MaxPool, PreAct(c, c, no bias), PreAct(c, 2c)
        n += 2 * c + _conv(c, c, 3, False) + 2 * c + _conv(c, 2 * c, 3, True)
    for c in widths:  # ConvT(2c, 2c), PreAct(3c, c, no bias), PreAct(c, c)
        n += _conv(2 * c, 2 * c, 2, True) + 2 * 3 * c + _conv(3 * c, c, 3, False)
        n += 2 * c + _conv(c, c, 3, True)
    return n + 2 * 2 * b + _conv(2 * b, 1, 1, False) + 2


def test_parameter_count_at_paper_width() -> None:
    model = build_model("unet3d")
    n = count_parameters(model)
    print(f"UNet3D(32, depth 3) parameters: {n:,}")
    assert n == expected_unet_params(32, 3) == 19_073_634
    assert model.divisor == 8 and model.margin == 0
    # the channel ladder of the reference code: 64 -> 128 -> 256 -> 512 and back
    assert [d.conv2.conv.out_channels for d in model.down] == [128, 256, 512]
    assert [u.conv2.conv.out_channels for u in model.up] == [256, 128, 64]


@pytest.mark.parametrize(("b", "depth"), [(4, 2), (8, 3), (8, 4), (16, 3)])
def test_parameter_count_other_widths(b: int, depth: int) -> None:
    model = UNet3D(base_channels=b, depth=depth)
    assert count_parameters(model) == expected_unet_params(b, depth)
    assert model.divisor == 2**depth


@pytest.mark.parametrize("shape", [(16, 16, 16), (8, 24, 32), (32, 16, 8)])
def test_output_shape_same_size(shape: tuple[int, int, int]) -> None:
    model = UNet3D(base_channels=2, depth=3).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 1, *shape))
    assert y.shape == (1, 1, *shape)
    assert model.output_shape(shape) == shape == model.input_shape_for(shape)


def test_bad_sides_rejected() -> None:
    model = UNet3D(base_channels=2, depth=2)
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.rand(1, 1, 8, 8, 6))
    with pytest.raises(ValueError, match="multiples of 4"):
        model.output_shape((8, 10, 8))
    with pytest.raises(ValueError):
        UNet3D(depth=0)


def test_registered() -> None:
    assert MODELS["unet3d"] is UNet3D


def test_preactivation_order_and_resblock_crop() -> None:
    """PreAct is BN -> ReLU -> conv; a valid ResBlock crops its shortcut to the centre."""
    block = PreActivation3d(2, 3, kernel=1, padding=0)
    assert [type(m) for m in block] == [nn.BatchNorm3d, nn.ReLU, nn.Conv3d]
    res = ResBlock3d(2, 2, kernel=3, padding=0).eval()
    for p in res.path.parameters():
        p.data.zero_()  # conv path outputs 0: the block is a centre crop of its input
    x = torch.randn(1, 2, 7, 8, 9)
    with torch.no_grad():
        y = res(x)
    assert torch.equal(y, x[:, :, 2:-2, 2:-2, 2:-2])


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = UNet3D(base_channels=2, depth=2).train()
    y = model(torch.rand(2, 1, 8, 8, 8))
    (y**2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_openvino_fp32_parity() -> None:
    ov = pytest.importorskip("openvino")
    torch.manual_seed(0)
    model = UNet3D(base_channels=2, depth=2)
    randomize_bn(model)
    model.eval()
    x = torch.rand(1, 1, 16, 8, 12)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = model(x).numpy()
        ir = ov.convert_model(model, example_input=x, input=[ov.PartialShape(list(x.shape))])
    compiled = compile_f32(ir)
    out = compiled(x.numpy())[0]
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))
