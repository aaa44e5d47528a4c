"""3D E-Net: shapes, divisor, parameter counts, gradients, exportable unpooling, OpenVINO parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from net_checks import compile_f32
from torch import nn
from torch.nn import functional as F

from medrepro.nets import MODELS, build_model, count_parameters, load_bundle, save_bundle
from medrepro.nets.enet3d import ENet3D, first_max_mask, masked_unpool, scaled_channels

torch.set_num_threads(1)


def _warm_bn(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """Non-trivial BN running statistics and PReLU slopes, then eval mode."""
    torch.manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.PReLU):
                m.weight.uniform_(0.05, 0.5)
        model.train()
        model(torch.rand(*shape))
    return model.eval()


def test_registered_and_built_from_json_kwargs() -> None:
    assert MODELS["enet"] is ENet3D
    model = build_model("enet", width_mult=0.25, unpool="mask")
    assert isinstance(model, ENet3D) and model.channels == (4, 16, 32)


@pytest.mark.parametrize(("width", "expected"), [(1.0, 661_142), (0.5, 168_518), (0.25, 43_736)])
def test_parameter_counts(width: float, expected: int) -> None:
    # counted by hand for this layout; E-Net 2D has 0.37 M, the 3D kernels (27 vs 9 taps,
    # 2^3 projections, 3 factorised asymmetric convs) give 0.66 M at the paper's width
    assert count_parameters(ENet3D(width_mult=width)) == expected


def test_channel_layout_at_paper_width() -> None:
    model = ENet3D()
    assert model.channels == (16, 64, 128)
    assert model.initial.conv.out_channels == 15  # + 1 max-pooled input channel = 16
    assert model.down1.expand[0].out_channels == 64 and model.down2.expand[0].out_channels == 128
    cubic = [b.main[0] for b in model.stage2 if b.main[0].kernel_size == (3, 3, 3)]
    assert [c.dilation[0] for c in cubic] == [1, 2, 4, 1, 8, 16]
    assert [c.padding[0] for c in cubic] == [1, 2, 4, 1, 8, 16]
    asym = model.stage3[2].main
    assert [c.kernel_size for c in asym[:3]] == [(5, 1, 1), (1, 5, 1), (1, 1, 5)]
    assert model.fullconv.out_channels == 1 and model.fullconv.stride == (2, 2, 2)
    assert len(model.stage1) == 4 and len(model.stage2) == 8 and len(model.stage3) == 8
    assert sum(isinstance(m, nn.PReLU) for m in model.modules()) > 0
    assert not any(isinstance(m, (nn.ReLU, nn.MaxUnpool3d)) for m in model.modules())


@pytest.mark.parametrize("shape", [(8, 8, 8), (16, 24, 32), (40, 8, 16)])
def test_output_shape_matches_forward(shape: tuple[int, int, int]) -> None:
    model = ENet3D(width_mult=0.25).eval()
    with torch.no_grad():
        y = model(torch.rand(2, 1, *shape))
    assert y.shape == (2, 1, *shape) and y.dtype == torch.float32
    assert model.output_shape(shape) == shape == model.input_shape_for(shape)
    assert model.margin == 0 and model.divisor == 8


def test_divisor_is_enforced() -> None:
    model = ENet3D(width_mult=0.25)
    for bad in [(12, 16, 16), (16, 16, 4)]:
        with pytest.raises(ValueError, match="multiples of 8"):
            model.output_shape(bad)
        with pytest.raises(ValueError, match="multiples of 8"):
            model.input_shape_for(bad)
        with pytest.raises(ValueError, match="multiples of 8"):
            model(torch.rand(1, 1, *bad))
    with pytest.raises(ValueError, match="unpool"):
        ENet3D(unpool="nearest")
    with pytest.raises(ValueError, match="width_mult"):
        ENet3D(width_mult=0)


def test_scaled_channels() -> None:
    assert [scaled_channels(c, 0.25) for c in (16, 64, 128)] == [4, 16, 32]
    assert [scaled_channels(c, 0.5) for c in (16, 64, 128)] == [8, 32, 64]
    assert scaled_channels(16, 0.1) == 4  # never below the multiple


def test_first_max_mask_hand_case() -> None:
    # one 2x2x2 window in (z, y, x) raster order: values 0..7 with ties of the max at 2 and 5
    x = torch.tensor([1.0, 0.0, 3.0, 2.0, 1.0, 3.0, 0.0, 3.0]).reshape(1, 1, 2, 2, 2)
    mask = first_max_mask(x, F.max_pool3d(x, 2))
    assert mask.flatten().tolist() == [0, 0, 1, 0, 0, 0, 0, 0]
    y = masked_unpool(torch.full((1, 1, 1, 1, 1), 7.0), mask)
    assert y.flatten().tolist() == [0, 0, 7, 0, 0, 0, 0, 0]


@pytest.mark.parametrize("levels", [2, 3, 1000])
def test_masked_unpool_equals_torch_max_unpool(levels: int) -> None:
    """Same values as MaxUnpool3d, with many ties (levels=2: mostly ties, 1000: few)."""
    torch.manual_seed(levels)
    x = torch.randint(0, levels, (2, 3, 8, 6, 4)).float()
    pooled, idx = F.max_pool3d(x, 2, return_indices=True)
    mask = first_max_mask(x, F.max_pool3d(x, 2))
    assert torch.equal(mask.reshape(2, 3, 4, 2, 3, 2, 2, 2).sum((3, 5, 7)), torch.ones_like(pooled))
    values = torch.randn_like(pooled)
    assert torch.equal(masked_unpool(values, mask), nn.MaxUnpool3d(2)(values, idx))
    # constant input: every window ties everywhere; torch takes the first voxel
    const = torch.zeros(1, 2, 4, 4, 4)
    p, i = F.max_pool3d(const, 2, return_indices=True)
    v = torch.randn_like(p)
    got = masked_unpool(v, first_max_mask(const, p))
    assert torch.equal(got, F.max_unpool3d(v, i, 2))
    assert torch.equal(got[:, :, ::2, ::2, ::2], v)


def test_mask_and_indices_networks_agree_with_gradients() -> None:
    """The exportable network equals the MaxUnpool3d network, forward and backward."""
    torch.manual_seed(0)
    ours = ENet3D(width_mult=0.25, dropout=0.0, dropout_stage1=0.0)
    ref = ENet3D(width_mult=0.25, dropout=0.0, dropout_stage1=0.0, unpool="indices")
    ref.load_state_dict(ours.state_dict())
    x = torch.rand(2, 1, 16, 16, 24)
    x[:, :, :8] = 0.0  # exact ties in the max-pool windows, as in padded volumes
    y_ours, y_ref = ours(x), ref(x)
    assert torch.equal(y_ours, y_ref)
    y_ours.square().mean().backward()
    y_ref.square().mean().backward()
    for (name, a), b in zip(ours.named_parameters(), ref.parameters(), strict=True):
        assert a.grad is not None and torch.allclose(a.grad, b.grad, atol=1e-6), name


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = ENet3D(width_mult=0.25).train()
    x = torch.rand(2, 1, 16, 16, 16, requires_grad=True)
    model(x).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    model = ENet3D(width_mult=0.25, dropout=0.5)
    x = torch.rand(1, 1, 16, 16, 16)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))


def test_openvino_conversion_parity() -> None:
    ov = pytest.importorskip("openvino")
    model = _warm_bn(ENet3D(width_mult=0.25), (2, 1, 16, 16, 16))
    x = torch.rand(1, 1, 16, 24, 32)
    x[..., :8] = 0.0  # constant region: tied windows must unpool to the same voxel
    with torch.no_grad():
        ref = model(x).numpy()
    ir = ov.convert_model(model, example_input=x, input=[x.shape])
    ops = {op.get_type_name() for op in ir.get_ops()}
    assert "MaxPool" in ops and "PRelu" in ops
    compiled = compile_f32(ir)
    out = compiled(x.numpy())[0]
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


def test_bundle_round_trip(tmp_path: Path) -> None:
    """JSON-able kwargs rebuild the same network (running statistics included).

    ``output_kind="logits"`` is the docs/lowres.md contract for every LowRes-paper bundle.
    """
    kwargs = json.loads(json.dumps({"width_mult": 0.25, "dropout": 0.05}))
    torch.manual_seed(0)
    model = build_model("enet", **kwargs)
    with torch.no_grad():
        model.train()(torch.rand(2, 1, 16, 16, 16))
    model.eval()
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        ref = model(x)
    path = tmp_path / "model.pt"
    save_bundle(
        path, model, arch="enet", kwargs=kwargs, input_shape=list(x.shape), output_kind="logits"
    )
    loaded, meta = load_bundle(path)
    assert meta["kwargs"] == kwargs
    with torch.no_grad():
        assert torch.equal(loaded(x), ref)
