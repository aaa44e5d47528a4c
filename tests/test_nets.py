"""Tests for medrepro.nets: paper parameter counts, shapes, norm switch, bundles."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from medrepro.nets import MODELS, build_model, count_parameters, load_bundle, save_bundle
from medrepro.nets.blocks import ConvNormAct, ResNeXtBlock3d, norm_layer
from medrepro.nets.hourglass import StackedHourglass3D
from medrepro.nets.vgg_regressor import VGGRegressor3D, decode_coordinates, encode_coordinates

torch.set_num_threads(1)

SMALL_HG = {"width": 16, "depth": 3, "n_stacks": 2}


@pytest.mark.parametrize(
    ("arch", "paper_count"),
    [("vgg_regressor", 1.33e6), ("stacked_hourglass", 25.5e6)],
)
def test_parameter_counts_match_paper(arch: str, paper_count: float) -> None:
    n = count_parameters(build_model(arch))
    assert abs(n - paper_count) / paper_count < 0.05, n


def test_count_parameters_trainable_only() -> None:
    model = StackedHourglass3D(**SMALL_HG, upsample="deconv", upsample_learnable=False)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert frozen > 0
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - frozen


@pytest.mark.parametrize(
    ("kwargs", "shape"),
    [
        ({"base_width": 4}, (2, 1, 32, 32, 16)),
        ({"base_width": 4, "n_landmarks": 2, "in_channels": 2}, (1, 2, 16, 16, 16)),
        (
            {"widths": (8, 16), "convs_per_stage": (1, 2), "strides": (2, 2), "hidden": 8},
            (2, 1, 20, 18, 17),
        ),
    ],
)
def test_vgg_output_shape(kwargs: dict, shape: tuple[int, ...]) -> None:
    model = VGGRegressor3D(**kwargs)
    k = kwargs.get("n_landmarks", 4)
    x = torch.randn(shape)
    for train in (True, False):
        model.train(train)
        assert model(x).shape == (shape[0], 3 * k)


@pytest.mark.parametrize("upsample", ["trilinear", "deconv", "deconv2"])
def test_hourglass_output_shapes(upsample: str) -> None:
    model = StackedHourglass3D(n_landmarks=3, upsample=upsample, **SMALL_HG)
    x = torch.randn(2, 1, 32, 32, 16)
    model.train()
    out = model(x)
    assert isinstance(out, list) and len(out) == SMALL_HG["n_stacks"]
    for hm in out:
        assert hm.shape == (2, 3, 16, 16, 8)
        assert float(hm.detach().min()) >= 0.0 and float(hm.detach().max()) <= 1.0
    model.eval()
    with torch.no_grad():
        last = model(x)
    assert isinstance(last, torch.Tensor) and last.shape == (2, 3, 16, 16, 8)
    assert StackedHourglass3D.stride == 2 and model.stride == 2


def test_hourglass_maxpool_and_se() -> None:
    model = StackedHourglass3D(
        width=16, depth=2, n_stacks=1, downsample="maxpool", norm="instance"
    ).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 16, 16, 8)).shape == (1, 4, 8, 8, 4)
    block = ResNeXtBlock3d(16, 32, se=True, stride=2)
    assert block(torch.randn(1, 16, 8, 8, 8)).shape == (1, 32, 4, 4, 4)


def test_hourglass_backward_reaches_stem() -> None:
    model = StackedHourglass3D(**SMALL_HG).train()
    out = model(torch.randn(1, 1, 16, 16, 16))
    sum(o.mean() for o in out).backward()
    assert model.stem[0].conv.weight.grad is not None
    assert float(model.stem[0].conv.weight.grad.abs().sum()) > 0


@pytest.mark.parametrize(
    ("spatial", "depth"),
    [((32, 32, 12), 3), ((30, 32, 16), 3), ((64, 64, 32), 5)],
)
def test_hourglass_divisibility_error(spatial: tuple[int, int, int], depth: int) -> None:
    model = StackedHourglass3D(width=16, depth=depth, n_stacks=1, max_width=64)
    with pytest.raises(ValueError, match="divisible by"):
        model(torch.zeros(1, 1, *spatial))


def test_hourglass_channel_divisibility_error() -> None:
    with pytest.raises(ValueError, match="divisible"):
        StackedHourglass3D(width=24, depth=2)
    with pytest.raises(ValueError, match="ResNeXt groups"):
        StackedHourglass3D(width=16, depth=2, groups=3)


@pytest.mark.parametrize(
    ("norm", "cls"),
    [
        ("instance", nn.InstanceNorm3d),
        ("group", nn.GroupNorm),
        ("batch", nn.BatchNorm3d),
        ("none", nn.Identity),
    ],
)
def test_norm_switch(norm: str, cls: type[nn.Module]) -> None:
    layer = norm_layer(norm, 16)
    assert isinstance(layer, cls)
    if norm == "instance":
        assert layer.affine and not layer.track_running_stats
    block = ConvNormAct(4, 16, norm=norm)
    assert isinstance(block.norm, cls)
    assert (block.conv.bias is not None) == (norm == "none")
    vgg = VGGRegressor3D(base_width=8, norm=norm)
    hg = StackedHourglass3D(norm=norm, **SMALL_HG)
    assert any(isinstance(m, cls) for m in vgg.modules())
    assert any(isinstance(m, cls) for m in hg.modules())
    assert vgg(torch.randn(2, 1, 16, 16, 16)).shape == (2, 12)
    # depth 3: the innermost level is 1/16 of the input; InstanceNorm needs > 1 voxel there
    x = torch.randn(2, 1, 32, 32, 16)
    assert [o.shape for o in hg.train()(x)] == [(2, 4, 16, 16, 8)] * SMALL_HG["n_stacks"]
    with torch.no_grad():
        assert hg.eval()(x).shape == (2, 4, 16, 16, 8)


def test_norm_layer_errors() -> None:
    with pytest.raises(ValueError, match="divisible"):
        norm_layer("group", 12, groups=8)
    with pytest.raises(ValueError, match="unknown norm"):
        norm_layer("layer", 16)


def test_build_model_unknown_arch() -> None:
    with pytest.raises(KeyError, match="stacked_hourglass"):
        build_model("unet")
    assert set(MODELS) == {
        "vgg_regressor",
        "stacked_hourglass",
        "stacked_hourglass2d",
        "resnet_classifier",
        "simple_baselines",
        "resunet",
        "yolov1",
        "tiny_yolov1",
        "unet3d",
        "deepmedic",
        "mobilenetv2",
        "enet",
        "lowres",
    }


def test_coordinate_encoding_round_trip() -> None:
    spatial = (128, 128, 64)
    vox = torch.tensor([[[0.0, 0.0, 0.0], [127.0, 127.0, 63.0], [63.5, 10.25, 31.5]]])
    enc = encode_coordinates(vox, spatial)
    assert enc.shape == (1, 9)
    torch.testing.assert_close(enc[0, :6], torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]))
    assert abs(float(enc[0, 6])) < 1e-7
    torch.testing.assert_close(decode_coordinates(enc, spatial), vox)
    back = decode_coordinates(encode_coordinates(vox.numpy(), spatial), spatial)
    assert back.shape == (1, 3, 3) and abs(back - vox.numpy()).max() < 1e-4


@pytest.mark.parametrize(
    ("arch", "kwargs", "kind"),
    [
        ("vgg_regressor", {"base_width": 4, "widths": (4, 8, 8, 16)}, "coordinates"),
        ("stacked_hourglass", {**SMALL_HG, "upsample": "deconv", "norm": "batch"}, "heatmaps"),
    ],
)
def test_bundle_round_trip(tmp_path: Path, arch: str, kwargs: dict, kind: str) -> None:
    torch.manual_seed(0)
    model = build_model(arch, **kwargs)
    if kwargs.get("norm") == "batch":  # non-trivial running stats must survive too
        model.train()
        model(torch.randn(2, 1, 16, 16, 16))
    model.eval()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        ref = model(x)
    path = tmp_path / "sub" / "model.pt"
    save_bundle(
        path,
        model,
        arch=arch,
        kwargs=kwargs,
        input_shape=x.shape,
        output_kind=kind,
        extra={"heatmap_stride": 2},
    )
    assert path.is_file() and not list(path.parent.glob(".*tmp*"))
    loaded, meta = load_bundle(path)
    assert not loaded.training
    assert meta == {
        "arch": arch,
        "kwargs": kwargs,
        "input_shape": [1, 1, 16, 16, 16],
        "output_kind": kind,
        "extra": {"heatmap_stride": 2},
    }
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), ref, rtol=0, atol=0)


def test_save_bundle_rejects_unknown_output_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="output_kind"):
        save_bundle(
            tmp_path / "m.pt",
            VGGRegressor3D(base_width=4),
            arch="vgg_regressor",
            kwargs={},
            input_shape=[1, 1, 16, 16, 16],
            output_kind="log_probabilities",
        )
    assert not (tmp_path / "m.pt").exists()
