"""BrainMaGe 3D ResU-Net: parameter count vs the paper, shapes, norms, Dice loss, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medrepro.losses.segmentation import dice_loss
from medrepro.nets import MODELS, build_model, count_parameters
from medrepro.nets.resunet import ResUNet3D

torch.set_num_threads(1)

PAPER_PARAMS = 8.288e6


def _conv_biases(model: nn.Module) -> int:
    return sum(m.bias.numel() for m in model.modules() if isinstance(m, nn.Conv3d))


def test_parameter_count_matches_brainmage() -> None:
    model = build_model("resunet")
    n = count_parameters(model)
    # BrainMaGe's code layout (every conv with a bias), counted by hand:
    assert n == 8_290_417
    assert abs(n - PAPER_PARAMS) / PAPER_PARAMS < 0.005
    # without the conv biases the count is the paper's 8.288 M to the last digit
    assert round((n - _conv_biases(model)) / 1e6, 3) == 8.288


@pytest.mark.parametrize(("base", "expected"), [(4, 519_613), (8, 2_074_553)])
def test_parameter_count_scales_with_base_filters(base: int, expected: int) -> None:
    assert count_parameters(ResUNet3D(base_filters=base)) == expected


def test_registered_and_channel_layout() -> None:
    assert MODELS["resunet"] is ResUNet3D
    model = ResUNet3D(base_filters=4)
    assert [d.conv.out_channels for d in model.down] == [8, 16, 32, 64]
    assert [u.conv.out_channels for u in model.up] == [32, 16, 8, 4]
    assert model.out_conv.out_channels == 1 and model.out_conv.kernel_size == (1, 1, 1)
    norms = [m for m in model.modules() if isinstance(m, nn.InstanceNorm3d)]
    assert norms and all(m.affine and m.track_running_stats for m in norms)


def test_forward_shape_and_range() -> None:
    torch.manual_seed(0)
    model = ResUNet3D(base_filters=4)
    x = torch.randn(2, 1, 32, 16, 48)
    model.train()
    y = model(x).detach()
    assert y.shape == (2, 1, 32, 16, 48)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    model.eval()
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 1, 32, 16, 48) and float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_eval_uses_running_stats() -> None:
    """In eval mode the output of one item does not depend on the other items' scale."""
    torch.manual_seed(0)
    model = ResUNet3D(base_filters=4).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        a = model(x)
        b = model(2.0 * x)
    # instance statistics would make IN(2 conv(x)) ~ IN(conv(x)); running stats do not
    assert float((a - b).abs().max()) > 1e-3
    running = model.ins.pre1.norm.running_mean.clone()
    model.train()  # training needs > 1 voxel at the 1/16 level: 32 x 16 x 16
    model(torch.randn(1, 1, 32, 16, 16))
    assert not torch.equal(running, model.ins.pre1.norm.running_mean)


@pytest.mark.parametrize("norm", ["group", "batch", "none"])
def test_other_norms(norm: str) -> None:
    model = ResUNet3D(base_filters=8, norm=norm).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 16, 16, 16)).shape == (1, 1, 16, 16, 16)


def test_bad_input_side_and_norm() -> None:
    with pytest.raises(ValueError, match="divisible by 16"):
        ResUNet3D(base_filters=4)(torch.randn(1, 1, 16, 16, 24))
    with pytest.raises(ValueError, match="unknown norm"):
        ResUNet3D(norm="layer")


def test_dice_loss_hand_case() -> None:
    p = torch.tensor([0.5, 1.0, 0.0])
    t = torch.tensor([1.0, 1.0, 0.0])
    # 1 - (2 * 1.5) / (1.5 + 2) = 1 - 6/7
    assert float(dice_loss(p, t, eps=0.0)) == pytest.approx(1.0 / 7.0, abs=1e-7)
    assert float(dice_loss(p, t)) == pytest.approx(1.0 - (3.0 + 1e-7) / (3.5 + 1e-7), abs=1e-7)


def test_dice_loss_is_batch_global() -> None:
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    t = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    # global: 1 - 2*3/(3+4) = 1/7; a mean of per-row losses would be (1/3 + 0)/2
    assert float(dice_loss(p, t, eps=0.0)) == pytest.approx(1.0 / 7.0, abs=1e-7)


def test_dice_loss_perfect_empty_and_disjoint() -> None:
    t = (torch.rand(1, 1, 8, 8, 8) > 0.5).float()
    assert float(dice_loss(t, t)) == pytest.approx(0.0, abs=1e-6)
    z = torch.zeros(1, 1, 4, 4, 4)
    assert float(dice_loss(z, z)) == pytest.approx(0.0, abs=1e-6)
    assert float(dice_loss(t, 1 - t)) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError):
        dice_loss(t, t[..., :4])


def test_dice_loss_gradient() -> None:
    p = torch.tensor([0.5, 1.0, 0.0], requires_grad=True)
    dice_loss(p, torch.tensor([1.0, 1.0, 0.0]), eps=0.0).backward()
    # d/dp_i [1 - 2I/S] = -(2 t_i S - 2I) / S^2 with I = 1.5, S = 3.5
    expected = -(2 * np.array([1.0, 1.0, 0.0]) * 3.5 - 3.0) / 3.5**2
    np.testing.assert_allclose(p.grad.numpy(), expected, atol=1e-6)


def test_onnx_and_openvino_export_match(tmp_path) -> None:
    ov = pytest.importorskip("openvino")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = ResUNet3D(base_filters=4)
    model.train()
    with torch.no_grad():  # non-trivial running statistics
        for _ in range(2):
            model(2.0 * torch.randn(1, 1, 32, 32, 32) + 1.0)
    model.eval()
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        ref = model(x).numpy()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
    onnx_out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x.numpy()}
    )[0]
    assert np.abs(onnx_out - ref).max() < 1e-4
    ir = ov.convert_model(model, example_input=x, input=[x.shape])
    compiled = ov.Core().compile_model(ir, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert np.abs(compiled(x.numpy())[0] - ref).max() < 1e-4
    # eval-mode IN with running statistics is a fixed affine map: no MVN in the IR
    assert "MVN" not in {op.get_type_name() for op in ir.get_ops()}


def test_running_stats_instance_norm_equals_torch_instance_norm() -> None:
    """The exportable norm is numerically torch's InstanceNorm3d (train and eval) with its keys."""
    from medrepro.nets.resunet import RunningStatsInstanceNorm3d

    torch.manual_seed(0)
    ours = RunningStatsInstanceNorm3d(3, affine=True, track_running_stats=True)
    ref = nn.InstanceNorm3d(3, affine=True, track_running_stats=True)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2.0)
        ours.bias.uniform_(-1.0, 1.0)
    ref.load_state_dict(ours.state_dict())
    x = 3.0 * torch.randn(2, 3, 6, 5, 4) + 2.0
    assert torch.allclose(ours.train()(x), ref.train()(x), atol=1e-5)
    assert torch.allclose(ours.running_var, ref.running_var)
    y = torch.randn(2, 3, 7, 6, 5)
    assert torch.allclose(ours.eval()(y), ref.eval()(y), atol=1e-5)
    assert set(ours.state_dict()) == set(ref.state_dict())


def test_onnx_export_with_dynamic_axes_runs_other_shapes(tmp_path) -> None:
    """The project's exporter (dynamic batch and spatial axes) serves a shape it did not trace."""
    ort = pytest.importorskip("onnxruntime")
    from medrepro.deployment.export import export_onnx

    torch.manual_seed(0)
    model = ResUNet3D(base_filters=4)
    with torch.no_grad():
        model.train()(2.0 * torch.randn(1, 1, 32, 32, 32) + 1.0)
    model.eval()
    path = export_onnx(model, torch.randn(1, 1, 32, 32, 32), tmp_path / "m.onnx")
    x = torch.randn(2, 1, 48, 32, 16)
    with torch.no_grad():
        ref = model(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": x.numpy()})[0]
    assert np.abs(out - ref).max() < 1e-4
