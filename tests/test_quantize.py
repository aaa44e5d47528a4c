"""Quantize stage: NNCF accuracy-aware INT8 PTQ on a toy segmentation task."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from medrepro.deployment.quantize import accuracy_drop, count_fake_quantize, quantize_accuracy_aware
from medrepro.deployment.runtimes import OpenVINORunner
from medrepro.tasks.base import TaskItems

SIDE = 16


class ToySeg(nn.Module):
    """Two-level 3D U-Net-like net: InstanceNorm, trilinear upsampling, skip concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.n1 = nn.Conv3d(1, 8, 3, padding=1), nn.InstanceNorm3d(8, affine=True)
        self.c2, self.n2 = (
            nn.Conv3d(8, 8, 3, stride=2, padding=1),
            nn.InstanceNorm3d(8, affine=True),
        )
        self.up = nn.Upsample(scale_factor=2, mode="trilinear")
        self.c3, self.out = nn.Conv3d(16, 8, 3, padding=1), nn.Conv3d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.n1(self.c1(x)))
        b = torch.relu(self.n2(self.c2(a)))
        return self.out(torch.relu(self.c3(torch.cat([a, self.up(b)], 1))))


def spheres(n: int, rng: np.random.Generator) -> np.ndarray:
    """Noisy balls, ``(n, 1, SIDE, SIDE, SIDE)`` float32."""
    grid = np.stack(np.meshgrid(*[np.arange(SIDE)] * 3, indexing="ij"))
    vols = []
    for _ in range(n):
        centre, radius = rng.uniform(5, 11, 3), rng.uniform(3, 6)
        ball = np.linalg.norm(grid - centre[:, None, None, None], axis=0) < radius
        vols.append(ball + 0.3 * rng.standard_normal(ball.shape))
    return np.stack(vols)[:, None].astype(np.float32)


def dice_validate(outputs, items, index, meta):
    """Dice of the foreground argmax against ``items.extra["target"]``; higher is better."""
    per_item = []
    for out, i in zip(outputs, index, strict=True):
        pred, target = out[0].argmax(0) == 1, items.extra["target"][i] == 1
        per_item.append(float(2 * (pred & target).sum() / max(pred.sum() + target.sum(), 1)))
    return float(np.mean(per_item)), per_item


@pytest.fixture(scope="module")
def toy():
    import openvino as ov

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = ToySeg().eval()
    calibration, val = spheres(12, rng), spheres(6, rng)
    with torch.no_grad():  # targets: the FP32 model's own segmentation
        target = model(torch.from_numpy(val)).argmax(1).numpy()
    items = TaskItems(val, [f"case{i}" for i in range(len(val))], {"target": target})
    shape = [1, 1, SIDE, SIDE, SIDE]
    ov_model = ov.convert_model(
        model, example_input=torch.zeros(shape), input=[ov.PartialShape(shape)]
    )
    return ov_model, calibration, items


FIELDS = {"metric_fp32", "metric_int8", "drop", "max_drop", "fake_quantize_total", "fake_quantize_kept",
          "reverted", "seconds", "float_operations", "target_reached"}  # fmt: skip


def test_accuracy_control(toy):
    ov_model, calibration, items = toy
    max_drop = 0.005
    int8, report = quantize_accuracy_aware(
        ov_model, calibration, items, dice_validate, max_drop=max_drop, subset_size=8, threads=1
    )
    assert FIELDS <= set(report)
    json.dumps(report)  # serialisable
    assert report["metric_fp32"] == pytest.approx(1.0, abs=1e-6)
    assert report["drop"] == pytest.approx(
        accuracy_drop(report["metric_fp32"], report["metric_int8"])
    )
    assert report["drop"] <= max_drop or (
        not report["target_reached"] and "could not reach" in report["note"]
    )
    assert report["fake_quantize_total"] > 0
    assert (
        report["fake_quantize_kept"] == count_fake_quantize(int8) <= report["fake_quantize_total"]
    )
    assert report["reverted"] == report["fake_quantize_total"] - report["fake_quantize_kept"]
    if report["reverted"]:
        assert all({"name", "type"} <= set(op) for op in report["float_operations"])
    y = OpenVINORunner(int8, threads=1, precision="int8").infer(items.inputs[:1])
    assert y.shape == (1, 2, SIDE, SIDE, SIDE) and np.isfinite(y).all()


def test_default_mode_quantizes_everything(toy):
    ov_model, calibration, items = toy
    int8, report = quantize_accuracy_aware(
        ov_model, calibration, items, dice_validate, mode="default", subset_size=4
    )
    assert (
        report["reverted"] == 0
        and report["fake_quantize_kept"] == report["fake_quantize_total"] > 0
    )
    assert count_fake_quantize(ov_model) == 0  # the input model is left untouched


def test_main_writes_artefacts(toy, tmp_path, monkeypatch):
    import openvino as ov

    import medrepro.tasks as tasks
    from medrepro.deployment.quantize import main
    from medrepro.nets import build_model, save_bundle

    ov_model, calibration, items = toy

    class ToyTask:
        name, metric_name, metric_unit = "toy", "Dice", ""

        def load_items(self, dataset, splits, split):
            return (
                TaskItems(calibration, [str(i) for i in range(len(calibration))])
                if split == "train"
                else items
            )

        validate = staticmethod(dice_validate)

    monkeypatch.setattr(tasks, "get_task", lambda name: ToyTask())
    save_bundle(tmp_path / "model.pt", build_model("vgg_regressor", base_width=2), arch="vgg_regressor",
                kwargs={"base_width": 2}, input_shape=[1, 1, SIDE, SIDE, SIDE], output_kind="coordinates")  # fmt: skip
    ov.save_model(ov_model, tmp_path / "model_fp32.xml", compress_to_fp16=False)
    for name in ("dataset.npz", "splits.csv"):
        (tmp_path / name).write_text("unused by the toy task")
    out = tmp_path / "int8"
    argv = ["--bundle", str(tmp_path / "model.pt"), "--ir", str(tmp_path / "model_fp32.xml"), "--task", "toy",
            "--dataset", str(tmp_path / "dataset.npz"), "--splits", str(tmp_path / "splits.csv"),
            "--max-drop", "0.02", "--subset-size", "8", "--threads", "1", "--out-dir", str(out)]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "quantization.json").read_text())
    assert FIELDS <= set(report) and report["task"] == "toy"
    assert (out / "model_int8.bin").is_file()
    model = ov.Core().read_model(out / "model_int8.xml")
    assert count_fake_quantize(model) == report["fake_quantize_kept"]
