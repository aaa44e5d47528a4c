"""Tests for medrepro.nets.yolo: layer lists, parameter counts, shapes, pooling, export parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from medrepro.nets import MODELS, build_model, count_parameters, load_bundle, save_bundle
from medrepro.nets.yolo import GridPool2d, TinyYOLOv1, YOLOv1, scaled_channels

torch.set_num_threads(1)


def _convs(module: nn.Module) -> list[tuple[int, int, int]]:
    """``(kernel, out_channels, stride)`` of every conv in order."""
    return [
        (m.kernel_size[0], m.out_channels, m.stride[0])
        for m in module.modules()
        if isinstance(m, nn.Conv2d)
    ]


def test_yolov1_layer_list_is_the_paper_trunk() -> None:
    with torch.device("meta"):
        model = YOLOv1()
    expected = (
        [(7, 64, 2), (3, 192, 1), (1, 128, 1), (3, 256, 1), (1, 256, 1), (3, 512, 1)]
        + [(1, 256, 1), (3, 512, 1)] * 4
        + [(1, 512, 1), (3, 1024, 1)]
        + [(1, 512, 1), (3, 1024, 1)] * 2
        + [(3, 1024, 1), (3, 1024, 2), (3, 1024, 1), (3, 1024, 1)]
    )
    assert _convs(model.features) == expected
    assert len(expected) == 24
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == 24
    slopes = {m.negative_slope for m in model.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.1}
    linears = [m for m in model.head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1024 * 49, 4096), (4096, 539)]
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in model.head)


def test_tiny_layer_list_is_darknet_cfg() -> None:
    with torch.device("meta"):
        model = TinyYOLOv1()
    expected = [(3, c, 1) for c in (16, 32, 64, 128, 256, 512, 1024, 256)]
    assert _convs(model.features) == expected
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 6 and all(p.ceil_mode for p in pools)
    linears = [m for m in model.head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(256 * 49, 539)]


def test_yolov1_parameter_count_matches_original() -> None:
    # conv weights 60,142,784 + BN 2 x 13,184 + FC 50176*4096+4096 + 4096*1470+1470
    with torch.device("meta"):
        voc = YOLOv1(C=20)
        ours = YOLOv1(C=1)
    n_voc = count_parameters(voc)
    assert n_voc == 60_142_784 + 26_368 + 205_524_992 + 6_022_590 == 271_716_734
    assert abs(n_voc - 271.7e6) / 271.7e6 < 1e-3  # the ~271.7 M usually quoted for YOLOv1
    assert count_parameters(ours) == 271_716_734 - 4096 * (1470 - 539) - (1470 - 539)


@pytest.mark.parametrize(
    ("c", "width", "expected"),
    [(64, 1.0, 64), (1024, 0.25, 256), (64, 0.125, 8), (16, 0.25, 8), (192, 0.3, 58)],
)
def test_scaled_channels(c: int, width: float, expected: int) -> None:
    assert scaled_channels(c, width) == expected


@pytest.mark.parametrize("S", [7, 9, 11, 13])
def test_yolov1_output_shape_per_grid(S: int) -> None:
    model = YOLOv1(S=S, width=0.125, hidden=16)
    x = torch.rand(2, 3, 128, 128)
    for train in (True, False):
        model.train(train)
        assert model(x).shape == (2, S, S, 11)


def test_tiny_feature_map_at_224_is_4x4_and_head_pools_to_grid() -> None:
    model = TinyYOLOv1(S=7, B=2, C=3, width=0.125).eval()
    x = torch.rand(1, 3, 224, 224)
    assert model.features(x).shape == (1, 32, 4, 4)
    assert model(x).shape == (1, 7, 7, 13)


def test_forward_is_head_of_features_reshaped() -> None:
    model = TinyYOLOv1(S=5, B=2, C=1, width=0.125).eval()
    x = torch.rand(2, 3, 96, 96)
    flat = model.head(model.features(x))
    out = model(x)
    assert torch.equal(out, flat.reshape(2, 5, 5, 11))
    # cell (row 1, col 2) predictor 0 is element (1 * 5 + 2) * 11 of the flat output
    assert torch.equal(out[1, 1, 2, :], flat[1, 77:88])


@pytest.mark.parametrize(
    ("h", "w", "s"), [(4, 4, 7), (7, 7, 11), (7, 7, 7), (14, 14, 7), (1, 1, 7), (5, 3, 4)]
)
def test_grid_pool_equals_adaptive_avg_pool(h: int, w: int, s: int) -> None:
    x = torch.randn(2, 3, h, w)
    assert torch.allclose(GridPool2d(s)(x), F.adaptive_avg_pool2d(x, s), atol=1e-6)


def test_registry_and_bundle_round_trip(tmp_path) -> None:
    assert MODELS["yolov1"] is YOLOv1 and MODELS["tiny_yolov1"] is TinyYOLOv1
    kwargs = {"S": 5, "B": 2, "C": 1, "input_size": 64, "width": 0.125}
    model = build_model("tiny_yolov1", **kwargs).eval()
    path = tmp_path / "model.pt"
    save_bundle(
        path,
        model,
        arch="tiny_yolov1",
        kwargs=kwargs,
        input_shape=[1, 3, 64, 64],
        output_kind="yolo",
        extra={"S": 5, "B": 2, "C": 1},
    )
    loaded, meta = load_bundle(path)
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(loaded(x), model(x))
    assert meta["output_kind"] == "yolo" and meta["extra"] == {"S": 5, "B": 2, "C": 1}


def _trained_stats(model: nn.Module, side: int) -> nn.Module:
    """Non-trivial BN running statistics, then eval mode."""
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(2.0 * torch.rand(2, 3, side, side))
    return model.eval()


@pytest.mark.parametrize(
    ("arch", "kwargs"),
    [
        ("yolov1", {"S": 7, "width": 0.125, "hidden": 32, "input_size": 64}),
        ("tiny_yolov1", {"S": 7, "width": 0.125, "input_size": 64}),
        ("tiny_yolov1", {"S": 4, "width": 0.125, "input_size": 64}),
    ],
)
def test_onnx_and_openvino_export_match(tmp_path, arch: str, kwargs: dict) -> None:
    ov = pytest.importorskip("openvino")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = _trained_stats(build_model(arch, **kwargs), 64)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x).numpy()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_out = sess.run(None, {"x": x.numpy()})[0]
    assert onnx_out.shape == ref.shape
    assert np.abs(onnx_out - ref).max() < 1e-4
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    for ir in (ov.convert_model(model, example_input=x, input=[x.shape]), core.read_model(path)):
        out = core.compile_model(ir, "CPU", config)(x.numpy())[0]
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() < 1e-4
