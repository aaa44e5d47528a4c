"""lowres-export: IR FP32 + parity + plain INT8 for single-stage and LowRes stand-in networks.

The stand-ins follow the network contract of docs/lowres.md (``divisor``, ``margin``,
``input_shape_for``; LowRes ``stage1 -> (logits8, f2, f4, f8)`` and ``stage2(x, f2, f4, f8)``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from medrepro.data.lowres_studies import STUDY_COLUMNS, Study, write_studies
from medrepro.deployment.lowres_export import (
    crop_padded,
    input_patch_shape,
    is_two_stage,
    main,
    sample_patches,
)
from medrepro.io.errors import InputError


class TinyNet(nn.Module):
    """Same-size stand-in: conv 3^3 -> ReLU -> conv 1^3, one logit channel."""

    divisor = 4
    margin = 0

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 1, 1))

    def input_shape_for(self, output_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(output_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ValidNet(nn.Module):
    """Valid-convolution stand-in (DeepMedic-like): margin 2."""

    divisor = 1
    margin = 2

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv3d(1, 3, 3), nn.ReLU(), nn.Conv3d(3, 1, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _conv(cin: int, cout: int, weight: float, bias: float = 0.0) -> nn.Conv3d:
    conv = nn.Conv3d(cin, cout, 1)
    nn.init.constant_(conv.weight, weight)
    nn.init.constant_(conv.bias, bias)
    return conv


class TinyStage1(nn.Module):
    """f8 channels = 8-block means of x; logits8 = 10 * mean - 3 (fires where mean > 0.3)."""

    def __init__(self) -> None:
        super().__init__()
        self.c2, self.c4, self.c8 = _conv(1, 2, 1.0), _conv(2, 4, 0.5), _conv(4, 8, 0.25)
        self.out = _conv(8, 1, 1.25, -3.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        f2 = F.relu(self.c2(F.avg_pool3d(x, 2)))
        f4 = F.relu(self.c4(F.avg_pool3d(f2, 2)))
        f8 = F.relu(self.c8(F.avg_pool3d(f4, 2)))
        return self.out(f8), f2, f4, f8


class TinyDetail(nn.Module):
    """Top-down fusion of every input (nearest x2 upsampling), one logit channel."""

    def __init__(self) -> None:
        super().__init__()
        self.p8, self.p4, self.p2 = nn.Conv3d(8, 4, 1), nn.Conv3d(4, 2, 1), nn.Conv3d(2, 1, 1)
        self.head = nn.Conv3d(1, 1, 3, padding=1)

    def forward(self, x, f2, f4, f8):  # noqa: ANN001, ANN201
        h = F.interpolate(self.p8(f8), scale_factor=2.0) + f4
        h = F.interpolate(self.p4(h), scale_factor=2.0) + f2
        h = F.interpolate(self.p2(h), scale_factor=2.0) + x
        return self.head(h) * 4.0


class TinyLowRes(nn.Module):
    divisor = 8
    margin = 0

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stage1, self.stage2 = TinyStage1(), TinyDetail()

    def input_shape_for(self, output_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(output_shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits8, f2, f4, f8 = self.stage1(x)
        return logits8, self.stage2(x, f2, f4, f8)


STANDINS = {"_tiny_net": TinyNet, "_valid_net": ValidNet, "_tiny_lowres": TinyLowRes}


@pytest.fixture(scope="module")
def registry() -> Iterator[None]:
    """The stand-ins registered in ``medrepro.nets.MODELS`` for this module only."""
    from medrepro import nets

    with pytest.MonkeyPatch.context() as mp:
        for name, cls in STANDINS.items():
            mp.setitem(nets.MODELS, name, cls)
        yield


def write_bundle(path: Path, arch: str) -> Path:
    torch.manual_seed(0)
    model = STANDINS[arch]()
    payload = {
        "arch": arch, "kwargs": {}, "state_dict": model.state_dict(), "input_shape": [1, 1, 16, 16, 16],
        "output_kind": "logits", "extra": {},
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def write_container(out_dir: Path) -> tuple[Path, Path]:
    """Two train and two test studies (odd shapes), a bright cube object in three of them."""
    rng = np.random.default_rng(0)
    shapes = {"tr1": (20, 18, 13), "tr2": (17, 24, 16), "te1": (21, 19, 14), "te2": (16, 16, 16)}
    studies, rows = [], []
    for sid, shape in shapes.items():
        image = (rng.random(shape) * 0.15).astype(np.float32)
        mask = np.zeros(shape, np.uint8)
        if sid != "te2":
            mask[2:12, 3:13, 1:11] = 1
            image[mask > 0] = 0.9
        studies.append(Study(sid, image, mask, (1.0, 1.0, 1.0)))
        rows.append(
            {
                "study_id": sid,
                "split": "train" if sid.startswith("tr") else "test",
                "group": "",
                "shape_z": shape[0],
                "shape_y": shape[1],
                "shape_x": shape[2],
                "spacing_z": 1.0,
                "spacing_y": 1.0,
                "spacing_x": 1.0,
                "n_objects": int(mask.any()),
                "excluded": False,
                "reason": "",
            }  # fmt: skip
        )
    objects = pd.DataFrame(
        columns=[
            "study_id",
            "split",
            "object",
            "diameter_mm",
            "volume_mm3",
            "kind",
            "center_z",
            "center_y",
            "center_x",
            "inside_mask",
        ]  # fmt: skip
    )
    write_studies(out_dir, studies, pd.DataFrame(rows, columns=STUDY_COLUMNS), objects)
    return out_dir / "studies.npz", out_dir / "studies.csv"


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_container(tmp_path_factory.mktemp("lowres") / "preprocessed")


def run_export(tmp: Path, arch: str, container: tuple[Path, Path], patch: int) -> Path:
    torch.set_num_threads(1)
    bundle = write_bundle(tmp / arch / "model.pt", arch)
    out = tmp / arch / "openvino"
    argv = ["--bundle", str(bundle), "--studies", str(container[0]), "--table", str(container[1]),
            "--patch", str(patch), "--out-dir", str(out), "--subset-size", "4", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def exported(
    registry: None, container: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """``lowres-export`` outputs of the single-stage and LowRes stand-ins."""
    tmp = tmp_path_factory.mktemp("export")
    return {
        "_tiny_net": run_export(tmp, "_tiny_net", container, 8),
        "_tiny_lowres": run_export(tmp, "_tiny_lowres", container, 16),
    }


def test_crop_padded_known_answer() -> None:
    volume = np.arange(27).reshape(3, 3, 3)
    out = crop_padded(volume, (-1, 1, 2), (3, 3, 2))
    assert out.shape == (3, 3, 2)
    assert out[0].max() == 0 and out[1, 0, 0] == volume[0, 1, 2] and out[2, 1, 0] == volume[1, 2, 2]
    assert out[1, 0, 1] == 0 and out[1, 2].max() == 0


def test_input_patch_shape_contract() -> None:
    assert input_patch_shape(ValidNet(), 5) == (9, 9, 9)
    assert input_patch_shape(TinyNet(), 8) == (8, 8, 8)
    with pytest.raises(ValueError, match="multiple of the divisor 4"):
        input_patch_shape(TinyNet(), 6)


def test_half_of_calibration_patches_centred_on_objects(container: tuple[Path, Path]) -> None:
    patches = sample_patches(container[0], ["tr1", "tr2"], 6, (8, 8, 8), seed=1)
    assert len(patches) == 6 and [p.centred for p in patches] == [True] * 3 + [False] * 3
    for p in patches:
        assert p.image.shape == p.mask.shape == (8, 8, 8) and p.image.dtype == np.float16
    # a centred patch has an object voxel at its centre (index size // 2)
    assert all(p.mask[4, 4, 4] == 1 for p in patches if p.centred)


def test_single_stage_export(exported: dict[str, Path]) -> None:
    out = exported["_tiny_net"]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["net_fp32.bin", "net_fp32.xml", "net_int8.bin", "net_int8.xml",
                     "parity.json", "quantization.json"]  # fmt: skip
    parity = json.loads((out / "parity.json").read_text())
    assert list(parity) == ["net"] and parity["net"]["ok"] is True
    assert parity["net"]["max_abs_diff"] <= parity["net"]["tolerance"] < 1e-3
    quant = json.loads((out / "quantization.json").read_text())["net"]
    assert quant["mode"] == "default" and quant["subset_size"] == 4 and quant["fake_quantize"] > 0
    import openvino as ov

    model = ov.Core().read_model(str(out / "net_fp32.xml"))
    assert list(model.inputs[0].get_partial_shape().to_shape()) == [1, 1, 8, 8, 8]


def test_lowres_export_two_stages(exported: dict[str, Path]) -> None:
    import openvino as ov

    out = exported["_tiny_lowres"]
    for name in ("stage1_fp32", "stage1_int8", "stage2_fp32", "stage2_int8"):
        assert (out / f"{name}.xml").is_file() and (out / f"{name}.bin").is_file()
    parity = json.loads((out / "parity.json").read_text())
    assert set(parity) == {"stage1", "stage2"} and all(p["ok"] for p in parity.values())
    # stage 1 has four outputs; stage 2 takes the image and the three feature crops
    assert parity["stage1"]["output_shapes"] == [[1, 1, 2, 2, 2], [1, 2, 8, 8, 8],
                                                 [1, 4, 4, 4, 4], [1, 8, 2, 2, 2]]  # fmt: skip
    assert parity["stage2"]["input_shapes"] == [[1, 1, 16, 16, 16], [1, 2, 8, 8, 8],
                                                [1, 4, 4, 4, 4], [1, 8, 2, 2, 2]]  # fmt: skip
    stage2 = ov.Core().read_model(str(out / "stage2_fp32.xml"))
    assert [str(i.get_partial_shape()) for i in stage2.inputs] == [
        "[1,1,?,?,?]", "[1,2,?,?,?]", "[1,4,?,?,?]", "[1,8,?,?,?]"
    ]  # fmt: skip
    quant = json.loads((out / "quantization.json").read_text())
    assert all(q["fake_quantize"] > 0 for q in quant.values())


def test_bad_patch_leaves_no_output(
    registry: None, container: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle = write_bundle(tmp_path / "model.pt", "_tiny_lowres")
    out = tmp_path / "openvino"
    with pytest.raises(InputError, match="divisor 8"):
        main(["--bundle", str(bundle), "--studies", str(container[0]), "--table",
              str(container[1]), "--patch", "12", "--out-dir", str(out)])  # fmt: skip
    assert not out.exists()


def test_two_stage_detection_by_contract() -> None:
    class Staged(nn.Module):  # E-Net-like: submodules named stage1/stage2 with one input
        def __init__(self) -> None:
            super().__init__()
            self.stage1, self.stage2 = nn.Identity(), nn.Identity()

    assert is_two_stage(TinyLowRes()) and not is_two_stage(Staged())
    assert not is_two_stage(TinyNet())
