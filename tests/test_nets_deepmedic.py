"""DeepMedic-39: geometry (87 -> 39, margin 24), patch tiling, parameter count, OpenVINO parity."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from net_checks import compile_f32, randomize_bn

from medrepro.nets import MODELS, build_model, count_parameters
from medrepro.nets.deepmedic import DeepMedic

torch.set_num_threads(1)

TINY = {"widths": (2, 3, 3), "head": 4}


def _conv(i: int, o: int, k: int) -> int:
    return i * o * k**3  # every DeepMedic conv is bias-free


def _res(a: int, b: int, k: int) -> int:
    """dpipe ResBlock: BN(a), conv(a, b), BN(b), conv(b, b), 1^3 shortcut when a != b."""
    return 2 * a + _conv(a, b, k) + 2 * b + _conv(b, b, k) + (_conv(a, b, 1) if a != b else 0)


def expected_deepmedic_params(widths: tuple[int, ...], head: int) -> int:
    path = _conv(1, widths[0], 3) + 2 * widths[0] + _conv(widths[0], widths[0], 3)
    path += sum(_res(a, b, 3) for a, b in zip(widths[:-1], widths[1:], strict=True))
    return 2 * path + _res(2 * widths[-1], head, 1) + 2 * head + _conv(head, 1, 1) + 2


def test_paper_geometry_and_parameters() -> None:
    model = build_model("deepmedic")
    n = count_parameters(model)
    print(f"DeepMedic-39 parameters: {n:,}")
    assert n == expected_deepmedic_params((30, 40, 40, 50), 150) == 678_152
    assert (model.margin, model.crop, model.divisor) == (24, 16, 3)
    assert model.input_shape_for((39, 39, 39)) == (87, 87, 87)
    assert model.output_shape((87, 87, 87)) == (39, 39, 39)
    assert model.output_shape((93, 93, 99)) == (45, 45, 51)
    assert MODELS["deepmedic"] is DeepMedic


def test_tiny_parameter_count() -> None:
    assert count_parameters(DeepMedic(**TINY)) == expected_deepmedic_params((2, 3, 3), 4)


@pytest.mark.parametrize("out", [(3, 3, 3), (9, 6, 12), (39, 3, 3)])
def test_output_shapes_match_contract(out: tuple[int, int, int]) -> None:
    model = DeepMedic(**TINY).eval()
    # two residual blocks: L = 2 + 2 * 2 = 6 per side, crop 12, margin 18
    assert (model.margin, model.crop) == (18, 12)
    shape = model.input_shape_for(out)
    assert shape == tuple(s + 36 for s in out)
    with torch.no_grad():
        y = model(torch.rand(1, 1, *shape))
    assert tuple(y.shape) == (1, 1, *out) == (1, 1, *model.output_shape(shape))


def test_bad_shapes_rejected() -> None:
    model = DeepMedic(**TINY)
    with pytest.raises(ValueError, match="multiples of 3"):
        model.input_shape_for((40, 39, 39))
    with pytest.raises(ValueError, match="multiples of 3"):
        model(torch.rand(1, 1, 40, 39, 39))
    with pytest.raises(ValueError):  # too small for one output voxel
        model.output_shape((36, 39, 39))


def test_patches_tile_the_whole_volume_output() -> None:
    """Two patches whose inputs start 0 and 12 voxels apart give the matching output slabs."""
    torch.manual_seed(0)
    model = DeepMedic(**TINY)
    randomize_bn(model)
    model.eval()
    x = torch.rand(1, 1, 39, 39, 39 + 12)
    with torch.no_grad():
        whole = model(x)  # output (3, 3, 15)
        left = model(x[..., :39])  # output columns 0..2
        right = model(x[..., 12:])  # output columns 12..14
    assert whole.shape[2:] == (3, 3, 15)
    torch.testing.assert_close(left, whole[..., :3], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(right, whole[..., 12:], rtol=1e-5, atol=1e-6)


def test_low_resolution_pathway_is_upsampled_by_three() -> None:
    """With the full-resolution pathway silenced, the output is constant on 3^3 blocks."""
    torch.manual_seed(0)
    model = DeepMedic(widths=(4, 4, 4), head=4).eval()
    with torch.no_grad():
        model.full.post.conv.weight.zero_()  # full pathway now sees a constant image
        x = torch.rand(1, 1, 42, 42, 42)
        y = model(x)[0, 0]  # (6, 6, 6)
    blocks = y.reshape(2, 3, 2, 3, 2, 3)
    assert torch.allclose(blocks, blocks[:, :1, :, :1, :, :1].expand_as(blocks))
    assert float(y.std()) > 0  # and not constant overall


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = DeepMedic(**TINY).train()
    y = model(torch.rand(2, 1, 39, 39, 39))
    (y**2).mean().backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]


def test_openvino_fp32_parity() -> None:
    ov = pytest.importorskip("openvino")
    torch.manual_seed(0)
    model = DeepMedic(**TINY)
    randomize_bn(model)
    model.eval()
    x = torch.rand(1, 1, 39, 42, 45)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = model(x).numpy()
        ir = ov.convert_model(model, example_input=x, input=[ov.PartialShape(list(x.shape))])
    compiled = compile_f32(ir)
    out = compiled(x.numpy())[0]
    assert out.shape == ref.shape == (1, 1, 3, 6, 9)
    assert np.abs(out - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))
