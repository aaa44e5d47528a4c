"""Tests of the 2D face-landmark networks: ResNet encoder/classifier, SimpleBaselines, and the
2D stacked hourglass (shapes, ResNet-50 parameter count, encoder transfer, OpenVINO parity,
bundles)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from net_checks import compile_f32, randomize_bn
from torch import nn

from medrepro.nets import MODELS, build_model, count_parameters, load_bundle, save_bundle
from medrepro.nets.hourglass2d import StackedHourglass2D
from medrepro.nets.resnet2d import ResNetClassifier, ResNetEncoder, SimpleBaselines

torch.set_num_threads(1)

TINY = {"block_counts": (1, 1, 1, 1), "width": 8}


def resnet_encoder_parameters(block_counts: tuple[int, ...], width: int, in_ch: int = 3) -> int:
    """Parameters of a bottleneck ResNet encoder from the layer formula (convs without bias,
    2 per BN channel, a projection in the first block of every stage)."""
    total = 7 * 7 * in_ch * width + 2 * width  # stem conv + BN
    c_in = width
    for stage, n_blocks in enumerate(block_counts):
        w = width * 2**stage
        for block in range(n_blocks):
            total += c_in * w + 9 * w * w + w * 4 * w + 2 * (w + w + 4 * w)
            if block == 0:
                total += c_in * 4 * w + 2 * 4 * w
            c_in = 4 * w
    return total


def test_registry_has_the_face_networks() -> None:
    assert MODELS["resnet_classifier"] is ResNetClassifier
    assert MODELS["simple_baselines"] is SimpleBaselines
    assert MODELS["stacked_hourglass2d"] is StackedHourglass2D


def test_resnet50_parameter_count() -> None:
    clf = ResNetClassifier(1000)
    # torchvision resnet50: 25,557,032 parameters, of which the fc has 2048 * 1000 + 1000
    assert count_parameters(clf.encoder) == 23_508_032
    assert resnet_encoder_parameters((3, 4, 6, 3), 64) == 23_508_032
    assert count_parameters(clf) == 25_557_032
    assert clf.encoder.out_channels == 2048
    assert [len(getattr(clf.encoder, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]


def test_simple_baselines_resnet50_matches_paper_size() -> None:
    # Xiao et al. 2018, Table 1: ResNet-50, 3 deconvs of 256, 17 joints -> 34.0 M parameters
    model = SimpleBaselines(17)
    decoder = 2048 * 256 * 16 + 2 * (256 * 256 * 16) + 3 * 2 * 256 + 256 * 17 + 17
    assert count_parameters(model.decoder) == decoder
    assert count_parameters(model) == 23_508_032 + decoder == 33_999_697


@pytest.mark.parametrize("side", [64, 96])
def test_simple_baselines_and_classifier_shapes(side: int) -> None:
    x = torch.randn(2, 3, side, side)
    sb = SimpleBaselines(12, deconv_channels=16, **TINY).eval()
    clf = ResNetClassifier(5, **TINY).eval()
    with torch.no_grad():
        feats = sb.features(x)
        heat = sb(x)
        logits = clf(x)
    assert feats.shape == (2, 8 * 8 * 4, side // 32, side // 32)
    assert heat.shape == (2, 12, side // 4, side // 4)
    assert sb.stride == 4
    assert logits.shape == (2, 5)
    assert clf.features(x).shape == feats.shape


def test_resnet50_layout_at_narrow_width() -> None:
    sb = SimpleBaselines(12, block_counts=(3, 4, 6, 3), width=8, deconv_channels=16).eval()
    enc = sb.encoder
    assert [len(getattr(enc, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert count_parameters(enc) == resnet_encoder_parameters((3, 4, 6, 3), 8)
    # stride 2 in the 3x3 conv of the first block of stages 2-4 only
    assert enc.layer1[0].conv2.stride == (1, 1)
    for i in (2, 3, 4):
        layer = getattr(enc, f"layer{i}")
        assert layer[0].conv2.stride == (2, 2) and layer[0].conv1.stride == (1, 1)
        assert layer[0].downsample is not None and layer[1].downsample is None
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert sb(x).shape == (1, 12, 16, 16)
        assert sb.features(x).shape == (1, 256, 2, 2)


def test_encoder_transfers_from_classifier_to_simple_baselines() -> None:
    torch.manual_seed(0)
    clf = ResNetClassifier(5, **TINY)
    randomize_bn(clf, seed=1)
    sb = SimpleBaselines(12, deconv_channels=16, **TINY)
    x = torch.randn(2, 3, 64, 64)
    clf.eval()
    sb.eval()
    with torch.no_grad():
        assert not torch.equal(sb.features(x), clf.features(x))
        sb.encoder.load_state_dict(clf.encoder.state_dict(), strict=True)
        assert torch.equal(sb.features(x), clf.features(x))
        assert torch.allclose(clf.classify(clf.features(x)), clf(x))
        assert torch.allclose(sb.decode(sb.features(x)), sb(x))
    assert isinstance(sb.encoder, ResNetEncoder) and isinstance(clf.encoder, ResNetEncoder)


def test_simple_baselines_decoder_init() -> None:
    torch.manual_seed(0)
    sb = SimpleBaselines(12, deconv_channels=32, n_deconv=3, **TINY)
    deconvs = [m for m in sb.decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(deconvs) == 3
    first = deconvs[0]
    assert (first.kernel_size, first.stride, first.padding) == ((4, 4), (2, 2), (1, 1))
    assert first.bias is None
    # 256 * 32 * 16 = 131,072 weights: the sample std is within 1 % of 0.001
    assert first.weight.std().item() == pytest.approx(0.001, rel=0.01)
    final = sb.decoder.final
    assert final.kernel_size == (1, 1) and final.out_channels == 12
    assert torch.all(final.bias == 0)
    bns = [m for m in sb.decoder.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 3 and all(torch.all(b.weight == 1) and torch.all(b.bias == 0) for b in bns)


def test_hourglass_heads_start_near_zero() -> None:
    """Heads at N(0, 0.001): the first heatmaps are far below the peak-1 targets."""
    torch.manual_seed(0)
    model = StackedHourglass2D(12, n_stacks=2, channels=16, depth=2).eval()
    for head in model.heads:
        assert head.weight.std().item() < 0.002 and torch.all(head.bias == 0)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.abs().max().item() < 0.05


def test_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    for model in (
        SimpleBaselines(12, deconv_channels=16, **TINY),
        StackedHourglass2D(12, n_stacks=2, channels=16, depth=2),
        ResNetClassifier(5, **TINY),
    ):
        model.train()
        out = model.forward_stacks(x) if isinstance(model, StackedHourglass2D) else [model(x)]
        sum(o.square().sum() for o in out).backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing


@pytest.mark.parametrize(("side", "depth"), [(64, 4), (64, 2), (96, 3)])
def test_hourglass_shapes_and_stacks(side: int, depth: int) -> None:
    torch.manual_seed(0)
    model = StackedHourglass2D(12, n_stacks=3, channels=16, depth=depth)
    randomize_bn(model)
    model.eval()
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        stacks = model.forward_stacks(x)
        last = model(x)
    assert len(stacks) == 3
    assert all(s.shape == (2, 12, side // 4, side // 4) for s in stacks)
    assert torch.equal(stacks[-1], last)
    assert not torch.allclose(stacks[0], stacks[-1])


def test_bad_input_sides_raise() -> None:
    hg = StackedHourglass2D(12, n_stacks=1, channels=16, depth=4)
    with pytest.raises(ValueError, match="multiples of 64"):
        hg(torch.zeros(1, 3, 96, 96))
    with pytest.raises(ValueError, match="multiples of 32"):
        StackedHourglass2D(12, channels=16, depth=3)(torch.zeros(1, 3, 64, 80))
    with pytest.raises(ValueError, match="multiples of 32"):
        SimpleBaselines(12, deconv_channels=16, **TINY)(torch.zeros(1, 3, 80, 64))
    with pytest.raises(ValueError, match="multiple of 4"):
        StackedHourglass2D(12, channels=18)
    with pytest.raises(ValueError, match="block_counts"):
        ResNetClassifier(5, block_counts=(3, 4, 6))


def _openvino_relative_error(model: nn.Module, x: torch.Tensor) -> float:
    import openvino as ov

    model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = model(x).numpy()
        ir = ov.convert_model(model, example_input=x, input=[ov.PartialShape(list(x.shape))])
    got = compile_f32(ir)(x.numpy())[0]
    assert got.shape == expected.shape
    return float(abs(got - expected).max() / abs(expected).max())


def test_openvino_fp32_parity_simple_baselines() -> None:
    torch.manual_seed(0)
    model = SimpleBaselines(12, deconv_channels=16, **TINY)
    for m in model.decoder.modules():  # N(0, 0.001) would make the output ~1e-9
        if isinstance(m, nn.ConvTranspose2d | nn.Conv2d):
            m.reset_parameters()
    randomize_bn(model)
    assert _openvino_relative_error(model, torch.randn(1, 3, 64, 64)) < 1e-4


def test_openvino_fp32_parity_stacked_hourglass() -> None:
    torch.manual_seed(0)
    model = StackedHourglass2D(12, n_stacks=2, channels=16, depth=4)
    randomize_bn(model)
    assert _openvino_relative_error(model, torch.randn(1, 3, 64, 64)) < 1e-4


@pytest.mark.parametrize(
    ("arch", "kwargs", "output_kind"),
    [
        ("resnet_classifier", {"n_classes": 5, "block_counts": [1, 1, 1, 1], "width": 8}, "logits"),
        (
            "simple_baselines",
            {"n_landmarks": 12, "block_counts": [1, 1, 1, 1], "width": 8, "deconv_channels": 16},
            "heatmaps",
        ),
        (
            "stacked_hourglass2d",
            {"n_landmarks": 12, "n_stacks": 2, "channels": 16, "depth": 3},
            "heatmaps",
        ),
    ],
)
def test_bundle_round_trip(
    tmp_path: Path, arch: str, kwargs: dict[str, object], output_kind: str
) -> None:
    torch.manual_seed(0)
    model = build_model(arch, **kwargs)
    randomize_bn(model)
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    path = tmp_path / "model.pt"
    save_bundle(
        path, model, arch=arch, kwargs=kwargs, input_shape=[1, 3, 64, 64], output_kind=output_kind
    )
    loaded, meta = load_bundle(path)
    assert meta["arch"] == arch and meta["kwargs"] == kwargs
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
