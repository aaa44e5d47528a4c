"""Export stage: ONNX (dynamic axes), OpenVINO IR FP32/FP16, parity with PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from medrepro.deployment.export import TOLERANCES, export_ir, export_onnx, main, parity
from medrepro.deployment.runtimes import OnnxRunner, OpenVINORunner, TorchRunner


class TinyNet3D(nn.Module):
    """Conv -> norm -> ReLU -> strided conv -> norm -> ReLU -> upsample -> 1x1 conv."""

    def __init__(self, norm: str = "instance", upsample: str = "trilinear") -> None:
        super().__init__()

        def make_norm(c: int) -> nn.Module:
            return nn.InstanceNorm3d(c, affine=True) if norm == "instance" else nn.GroupNorm(4, c)

        self.c1, self.n1 = nn.Conv3d(1, 8, 3, padding=1), make_norm(8)
        self.c2, self.n2 = nn.Conv3d(8, 16, 3, stride=2, padding=1), make_norm(16)
        if upsample == "trilinear":
            self.up: nn.Module = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)
        else:
            self.up = nn.ConvTranspose3d(16, 16, 2, stride=2)
        self.out = nn.Conv3d(16, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.n1(self.c1(x)))
        x = torch.relu(self.n2(self.c2(x)))
        return self.out(self.up(x))


VARIANTS = [("instance", "trilinear"), ("group", "convtranspose")]


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: "-".join(v))
def exported(request, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("-".join(request.param))
    torch.manual_seed(0)
    model = TinyNet3D(*request.param).eval()
    example = torch.randn(1, 1, 16, 16, 8)
    paths = {
        "onnx": tmp_path / "model.onnx",
        "ir_fp32": tmp_path / "fp32.xml",
        "ir_fp16": tmp_path / "fp16.xml",
    }
    export_onnx(model, example, paths["onnx"])
    export_ir(model, example, paths["ir_fp32"], compress_to_fp16=False)
    export_ir(model, example, paths["ir_fp16"], compress_to_fp16=True)
    return model, paths


def test_routes_match_pytorch(exported):
    model, paths = exported
    inputs = np.random.default_rng(1).standard_normal((2, 1, 16, 16, 8)).astype(np.float32)
    diffs = parity(model, paths, inputs)
    assert set(diffs) == {"onnxruntime", "openvino_fp32", "openvino_fp16", "openvino_from_onnx"}
    for name in ("onnxruntime", "openvino_fp32", "openvino_from_onnx"):
        assert diffs[name] < 1e-4, (name, diffs)
    assert (
        diffs["openvino_fp16"]
        < TOLERANCES["openvino_fp16"][0] + TOLERANCES["openvino_fp16"][1] * 10
    )


def test_onnx_runs_other_shapes(exported):
    model, paths = exported
    x = np.random.default_rng(2).standard_normal((2, 1, 24, 16, 32)).astype(np.float32)
    y = OnnxRunner(paths["onnx"]).infer(x)
    ref = TorchRunner(model).infer(x)
    assert y.shape == ref.shape == (2, 2, 24, 16, 32)
    assert np.abs(y - ref).max() < 1e-4


def test_openvino_reshape_and_precision(exported):
    model, paths = exported
    x = np.random.default_rng(3).standard_normal((2, 1, 16, 32, 16)).astype(np.float32)
    runner = OpenVINORunner(paths["ir_fp32"], threads=1, precision="f32", shape=x.shape)
    assert runner.properties()["INFERENCE_PRECISION_HINT"] == "f32"
    y = runner.infer(x)
    assert np.abs(y - TorchRunner(model).infer(x)).max() < 1e-4
    outs = runner.infer_async([x, x, x], nreq=2)
    assert len(outs) == 3 and all(np.array_equal(o, y) for o in outs)


def test_fp32_bin_is_twice_fp16(exported):
    _, paths = exported
    fp32 = paths["ir_fp32"].with_suffix(".bin").stat().st_size
    fp16 = paths["ir_fp16"].with_suffix(".bin").stat().st_size
    assert 1.7 < fp32 / fp16 < 2.2


def test_low_opset_refused(tmp_path):
    with pytest.raises(ValueError, match="opset"):
        export_onnx(TinyNet3D(), torch.zeros(1, 1, 8, 8, 8), tmp_path / "m.onnx", opset=10)


def test_main_writes_artefacts(tmp_path):
    from medrepro.nets import build_model, save_bundle

    torch.manual_seed(0)
    shape = [1, 1, 32, 32, 32]
    save_bundle(
        tmp_path / "model.pt",
        build_model("vgg_regressor", base_width=2),
        arch="vgg_regressor",
        kwargs={"base_width": 2},
        input_shape=shape,
        output_kind="coordinates",
    )
    inputs = np.random.default_rng(0).standard_normal((3, *shape[1:])).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", inputs=inputs, case_id=np.array(["a", "b", "c"]))
    out = tmp_path / "export"
    args = ["--bundle", str(tmp_path / "model.pt"), "--inputs", str(tmp_path / "inputs.npz")]
    assert main([*args, "--out-dir", str(out), "--max-items", "2"]) == 0
    for name in (
        "model.onnx",
        "model_fp32.xml",
        "model_fp32.bin",
        "model_fp16.xml",
        "model_fp16.bin",
    ):
        assert (out / name).is_file(), name
    report = json.loads((out / "parity.json").read_text())
    for key in ("onnxruntime", "openvino_fp32", "openvino_fp16", "openvino_from_onnx"):
        assert isinstance(report[key], float)
        assert report["tolerance_ok"][key], (key, report)
    assert report["opset"] == 17 and report["n_items"] == 2 and report["export_shape"] == shape
    assert not list(out.glob(".*")), "temporary files left behind"


class ResidualGroupNorm(nn.Module):
    """``h = ReLU(GN(conv(x))); GN(conv1x1(h)) + h``: crashed OpenVINO 2026.4 CPU at f32 (16x16x8)."""

    def __init__(self) -> None:
        super().__init__()
        self.c0, self.n0 = nn.Conv3d(1, 16, 3, padding=1, bias=False), nn.GroupNorm(8, 16)
        self.c1, self.n1 = nn.Conv3d(16, 16, 1, bias=False), nn.GroupNorm(8, 16)
        with torch.no_grad():
            for norm in (self.n0, self.n1):
                norm.weight.uniform_(0.5, 2.0)
                norm.bias.uniform_(-1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.n0(self.c0(x)))
        return self.n1(self.c1(h)) + h


def test_group_norm_is_decomposed(tmp_path):
    torch.manual_seed(0)
    model = ResidualGroupNorm().eval()
    x = torch.randn(1, 1, 16, 16, 8)
    ov_model = export_ir(model, x, tmp_path / "gn.xml", compress_to_fp16=False)
    types = {op.get_type_name() for op in ov_model.get_ops()}
    assert "GroupNormalization" not in types and "MVN" in types
    y = OpenVINORunner(tmp_path / "gn.xml", threads=1, precision="f32").infer(x.numpy())
    assert np.abs(y - TorchRunner(model).infer(x.numpy())).max() < 1e-4
