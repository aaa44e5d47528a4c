"""LowRes: stage shapes, parameter counts by hand, freezing, crop consistency, OpenVINO parity."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from net_checks import compile_f32, randomize_bn

from medrepro.nets import MODELS, build_model, count_parameters
from medrepro.nets.lowres import LowRes, LowResDetail, LowResStage1, freeze_stage1

torch.set_num_threads(1)

#: detail-stage receptive half-width (full-resolution voxels): path_x1 4, up(h2) 2, path_x2
#: 5 half-res convs 10, up(h4) 4, up(h8) 8
DETAIL_REACH = 28


def _conv(i: int, o: int, k: int, bias: bool) -> int:
    return i * o * k**3 + (o if bias else 0)


def _res_bn(c: int, k: int) -> int:
    """dpipe ResBlock(c, c): BN, conv (no bias), BN, conv (no bias), identity shortcut."""
    return 2 * (2 * c + _conv(c, c, k, False))


def _res_nobn(c: int, k: int) -> int:
    return 2 * _conv(c, c, k, True)


def expected_stage1(n: int) -> int:
    p = _conv(1, n, 3, False) + 2 * n + _conv(n, n, 3, True) + _res_bn(n, 3)
    p += 2 * n + _conv(n, 2 * n, 3, True) + 2 * _res_bn(2 * n, 3)
    p += 4 * n + _conv(2 * n, 4 * n, 3, True) + 2 * _res_bn(4 * n, 3) + _res_bn(4 * n, 1)
    return p + 8 * n + _conv(4 * n, 1, 1, False) + 2


def expected_stage2(n: int) -> int:
    c = n + 1  # features + the image channel
    p = _conv(4 * n, 2 * n, 1, False) + _conv(2 * n, c, 1, False)
    p += 2 * _res_nobn(c, 3) + _conv(c, n, 3, False)
    p += 2 * _res_nobn(c, 3) + _res_nobn(c, 1)
    return p + _conv(c, 1, 1, True)  # the logit conv has a bias (the prior)


def _crop(t: torch.Tensor, start: tuple[int, ...], stop: tuple[int, ...], k: int) -> torch.Tensor:
    """Crop a full-resolution box ``[start, stop)`` (voxels) out of a 1/k-resolution tensor."""
    idx = tuple(slice(a // k, b // k) for a, b in zip(start, stop, strict=True))
    return t[(slice(None), slice(None), *idx)]


def test_parameter_counts_at_paper_width() -> None:
    model = build_model("lowres")
    n1, n2 = count_parameters(model.stage1), count_parameters(model.stage2)
    print(f"LowRes(16) parameters: stage 1 {n1:,}, stage 2 {n2:,}, total {n1 + n2:,}")
    assert (n1, n2) == (expected_stage1(16), expected_stage2(16)) == (652_962, 73_126)
    assert count_parameters(model) == 726_088
    assert MODELS["lowres"] is LowRes
    assert (model.divisor, model.margin) == (8, 0)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_parameter_counts_other_widths(n: int) -> None:
    assert count_parameters(LowResStage1(n)) == expected_stage1(n)
    assert count_parameters(LowResDetail(n)) == expected_stage2(n)


@pytest.mark.parametrize("shape", [(8, 8, 8), (16, 24, 32), (40, 8, 16)])
def test_stage_shapes(shape: tuple[int, int, int]) -> None:
    n = 3
    model = LowRes(n).eval()
    x = torch.rand(2, 1, *shape)
    with torch.no_grad():
        logits8, f2, f4, f8 = model.stage1(x)
        y8, y = model(x)
    s = np.array(shape)
    assert logits8.shape == (2, 1, *(s // 8)) and f8.shape == (2, 4 * n, *(s // 8))
    assert f2.shape == (2, n, *(s // 2)) and f4.shape == (2, 2 * n, *(s // 4))
    assert torch.equal(y8, logits8) and y.shape == (2, 1, *shape)
    assert model.output_shape(shape) == shape == model.input_shape_for(shape)


def test_bad_shapes_rejected() -> None:
    model = LowRes(2).eval()
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.rand(1, 1, 8, 12, 8))
    with pytest.raises(ValueError, match="multiples of 8"):
        model.input_shape_for((8, 8, 4))
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        _, f2, f4, f8 = model.stage1(x)
        with pytest.raises(ValueError, match="f4"):
            model.stage2(x, f2, f4[..., :2], f8)


def test_freeze_stage1_keeps_eval_and_trains_stage2_only() -> None:
    torch.manual_seed(0)
    model = LowRes(2)
    freeze_stage1(model)
    model.train()  # the trainer calls this; stage 1 must stay in eval mode
    assert not model.stage1.training and model.stage2.training
    bn = model.stage1.output_x8[1]
    before = bn.running_mean.clone()
    _, y = model(torch.rand(2, 1, 16, 16, 16))
    (y**2).mean().backward()
    assert torch.equal(bn.running_mean, before)  # no BN statistics update
    assert all(p.grad is None for p in model.stage1.parameters())
    assert all(p.grad is not None and p.grad.any() for p in model.stage2.parameters())


def test_gradients_reach_stage1_when_not_frozen() -> None:
    torch.manual_seed(0)
    model = LowRes(2).train()
    logits8, y = model(torch.rand(2, 1, 16, 16, 16))
    (logits8.square().mean() + y.square().mean()).backward()
    assert all(p.grad is not None and p.grad.any() for p in model.parameters())


def test_detail_on_crop_equals_whole_input_inside_receptive_field() -> None:
    """A grid-aligned crop reproduces the whole-input detail output >= 28 voxels from its edges.

    With the reference's ``align_corners=True`` the trilinear grid depends on the crop size and
    the interior differs (why the default here is ``False``).
    """
    torch.manual_seed(0)
    x = torch.rand(1, 1, 8, 16, 128)
    start, stop = (0, 0, 16), (8, 16, 112)  # 96 wide along x, aligned to the 8-voxel grid
    r = DETAIL_REACH
    diffs = {}
    for align in (False, True):
        model = LowRes(2, align_corners=align)
        randomize_bn(model)
        model.eval()
        with torch.no_grad():
            _, f2, f4, f8 = model.stage1(x)
            whole = model.stage2(x, f2, f4, f8)
            crop = model.stage2(
                _crop(x, start, stop, 1),
                _crop(f2, start, stop, 2),
                _crop(f4, start, stop, 4),
                _crop(f8, start, stop, 8),
            )
        assert crop.shape == (1, 1, 8, 16, 96)
        inner = (crop - _crop(whole, start, stop, 1))[..., r:-r].abs()
        diffs[align] = float(inner.max() / whole.abs().max())
    assert diffs[False] < 1e-5
    assert diffs[True] > 1e-4


def test_openvino_stage1_parity() -> None:
    ov = pytest.importorskip("openvino")
    torch.manual_seed(0)
    model = LowResStage1(2)
    randomize_bn(model)
    model.eval()
    x = torch.rand(1, 1, 16, 24, 32)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refs = [t.numpy() for t in model(x)]
        ir = ov.convert_model(model, example_input=x, input=[ov.PartialShape(list(x.shape))])
    compiled = compile_f32(ir)
    outs = compiled(x.numpy())
    assert len(outs) == 4
    for i, ref in enumerate(refs):
        out = outs[compiled.outputs[i]]
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))


def test_openvino_detail_dynamic_crops_parity() -> None:
    ov = pytest.importorskip("openvino")
    torch.manual_seed(0)
    n = 2
    model = LowResDetail(n).eval()
    g = torch.Generator().manual_seed(1)

    def inputs(shape: tuple[int, int, int]) -> list[torch.Tensor]:
        s = np.array(shape)
        return [
            torch.rand(1, 1, *s, generator=g),
            torch.randn(1, n, *(s // 2), generator=g),
            torch.randn(1, 2 * n, *(s // 4), generator=g),
            torch.randn(1, 4 * n, *(s // 8), generator=g),
        ]

    dyn = [ov.PartialShape([1, c, -1, -1, -1]) for c in (1, n, 2 * n, 4 * n)]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ir = ov.convert_model(model, example_input=tuple(inputs((16, 16, 16))), input=dyn)
    compiled = compile_f32(ir)
    for shape in [(8, 24, 16), (32, 16, 40)]:
        args = inputs(shape)
        with torch.no_grad():
            ref = model(*args).numpy()
        out = compiled([a.numpy() for a in args])[0]
        assert out.shape == (1, 1, *shape)
        assert np.abs(out - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))
