"""Brain extraction task: dataset reading, network-grid Dice, and the native-space evaluation chain.

The native-space test builds a small synthetic world (4 mm atlas grid, 3 mm native grid, a known
rigid transform saved as .tfm, an ellipsoid brain), feeds a "network" that returns the exact
ground truth on the network grid and checks that the mask mapped back into native space matches
the native ground truth.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from medrepro.io.errors import InputError
from medrepro.io.images import array_to_image, image_to_array, read_image
from medrepro.metrics.segmentation import dice
from medrepro.tasks import brain_extraction_evaluate as ev
from medrepro.tasks import get_task
from medrepro.tasks.base import TaskItems
from medrepro.tasks.brain_extraction import TASK

ATLAS_SIZE, ATLAS_SPACING, ATLAS_ORIGIN = (40, 40, 32), (4.0, 4.0, 4.0), (-78.0, -78.0, -62.0)
NET_SHAPE = (32, 32, 24)
NATIVE_SIZE, NATIVE_SPACING, NATIVE_ORIGIN = (52, 48, 40), (3.0, 3.0, 3.0), (-70.0, -80.0, -55.0)
BRAIN_CENTRE, BRAIN_RADII = np.array([2.0, -3.0, 4.0]), np.array([50.0, 40.0, 35.0])


# -- network grid stand-in (contract of preprocessing/brain_dataset.py::from_network) ----------


def _net_grid(atlas: sitk.Image) -> sitk.Image:
    """A grid of NET_SHAPE voxels covering the atlas field of view (edges coincide)."""
    size = np.asarray(atlas.GetSize(), float)
    sp = np.asarray(atlas.GetSpacing())
    net_sp = size * sp / np.asarray(NET_SHAPE)
    d = np.asarray(atlas.GetDirection()).reshape(3, 3)
    origin = np.asarray(atlas.GetOrigin()) + d @ (0.5 * (net_sp - sp))
    img = sitk.Image(list(NET_SHAPE), sitk.sitkFloat32)
    img.SetOrigin(origin.tolist())
    img.SetSpacing(net_sp.tolist())
    img.SetDirection(atlas.GetDirection())
    return img


def to_network_mask(mask_atlas: sitk.Image) -> np.ndarray:
    out = sitk.Resample(
        sitk.Cast(mask_atlas, sitk.sitkFloat32),
        _net_grid(mask_atlas),
        sitk.Transform(),
        sitk.sitkLinear,
        0.0,
        sitk.sitkFloat32,
    )
    return (image_to_array(out) >= 0.5).astype(np.float32)


def from_network_standin(arr: np.ndarray, reference: sitk.Image) -> sitk.Image:
    grid = _net_grid(reference)
    img = array_to_image(
        arr.astype(np.float32), grid.GetOrigin(), grid.GetSpacing(), grid.GetDirection()
    )
    return sitk.Resample(img, reference, sitk.Transform(), sitk.sitkBSpline, 0.0, sitk.sitkFloat32)


# -- synthetic world ----------------------------------------------------------------------------


def _atlas_to_native() -> sitk.Euler3DTransform:
    """Maps atlas points to native points: 15 deg about an oblique axis + (9, -6, 7) mm."""
    tx = sitk.Euler3DTransform()
    tx.SetCenter((0.0, 0.0, 0.0))
    tx.SetRotation(0.15, -0.12, 0.2)
    tx.SetTranslation((9.0, -6.0, 7.0))
    return tx


def _native_gt(tx: sitk.Euler3DTransform) -> sitk.Image:
    """Ellipsoid defined in atlas space, drawn analytically on the native grid."""
    ref = sitk.Image(list(NATIVE_SIZE), sitk.sitkUInt8)
    ref.SetOrigin(NATIVE_ORIGIN)
    ref.SetSpacing(NATIVE_SPACING)
    idx = np.indices(NATIVE_SIZE).reshape(3, -1).T.astype(float)
    pts = np.asarray(NATIVE_ORIGIN) + idx * np.asarray(NATIVE_SPACING)
    rot = np.asarray(tx.GetMatrix()).reshape(3, 3)
    c, t = np.asarray(tx.GetCenter()), np.asarray(tx.GetTranslation())
    atlas_pts = (pts - c - t) @ rot + c  # R^T (p - c - t) + c, row-wise
    inside = (((atlas_pts - BRAIN_CENTRE) / BRAIN_RADII) ** 2).sum(axis=1) <= 1.0
    img = array_to_image(
        inside.reshape(NATIVE_SIZE).astype(np.uint8), NATIVE_ORIGIN, NATIVE_SPACING, np.eye(3)
    )
    return img


def _atlas_ref() -> sitk.Image:
    img = sitk.Image(list(ATLAS_SIZE), sitk.sitkFloat32)
    img.SetOrigin(ATLAS_ORIGIN)
    img.SetSpacing(ATLAS_SPACING)
    return img


def _write_subject(
    root: Path, sid: str, tfm: sitk.Transform, save_tfm: sitk.Transform
) -> np.ndarray:
    """Write registered/ and native/ files of one subject; return its network-grid mask."""
    reg, nat = root / "registered" / sid, root / "native" / sid
    reg.mkdir(parents=True)
    nat.mkdir(parents=True)
    gt = _native_gt(tfm)
    sitk.WriteImage(gt, str(nat / f"{sid}_mask.nii.gz"))
    sitk.WriteImage(sitk.Cast(gt, sitk.sitkFloat32) * 100.0, str(nat / f"{sid}_t1ce.nii.gz"))
    atlas = _atlas_ref()
    mask_atlas = (
        sitk.Resample(
            sitk.Cast(gt, sitk.sitkFloat32), atlas, tfm, sitk.sitkLinear, 0.0, sitk.sitkFloat32
        )
        >= 0.5
    )
    sitk.WriteImage(
        sitk.Cast(mask_atlas, sitk.sitkFloat32) * 100.0, str(reg / f"{sid}_t1ce.nii.gz")
    )
    sitk.WriteTransform(save_tfm, str(reg / f"{sid}_t1ce_to_atlas.tfm"))
    return to_network_mask(mask_atlas)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Subject s1 with the right .tfm; subject s2 whose .tfm is deliberately inverted."""
    root = tmp_path_factory.mktemp("brain")
    tx = _atlas_to_native()
    net = {
        "s1": _write_subject(root, "s1", tx, tx),
        "s2": _write_subject(root, "s2", tx, tx.GetInverse()),
    }
    return {"root": root, "net": net}


class _LookupRunner:
    """A 'network' returning a stored output for the item whose inputs hold its index."""

    def __init__(self, outputs: list[np.ndarray]) -> None:
        self.outputs = outputs
        self.calls = 0

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.outputs[int(x.flat[0])][None, None]


def _items(outputs: list[np.ndarray], sids: list[str], mods: list[str]) -> TaskItems:
    n = len(outputs)
    inputs = np.stack([np.full((1, *NET_SHAPE), i, np.float32) for i in range(n)])
    return TaskItems(
        inputs=inputs,
        case_id=[f"{s}_{m}" for s, m in zip(sids, mods, strict=True)],
        extra={"masks": np.stack(outputs).astype(np.uint8), "patient_id": sids, "modality": mods},
    )


# -- native-space chain -------------------------------------------------------------------------


def test_exact_network_mask_maps_back_to_native(world: dict, tmp_path: Path) -> None:
    root = world["root"]
    outputs = [world["net"]["s1"], world["net"]["s1"], world["net"]["s2"]]
    items = _items(outputs, ["s1", "s1", "s2"], ["t1", "flair", "t1"])
    runner = _LookupRunner(outputs)
    table = ev.evaluate(
        items,
        {"openvino_int8": lambda: runner},
        root / "registered",
        root / "native",
        threshold=0.5,
        masks_dir=tmp_path,
        to_atlas=from_network_standin,
        log=lambda m: None,
    )
    assert list(table.columns) == ev.COLUMNS
    assert runner.calls == 1 + 3  # one warm-up, then each item once
    good = table[table.subject_id == "s1"]
    assert len(good) == 2 and (good["dice"] > 0.95).all()
    assert (good["hd95_mm"] <= 3.0 + 1e-6).all()  # one native voxel
    assert set(table[["framework", "precision", "route"]].iloc[0]) == {
        "openvino",
        "int8",
        "accuracy_control",
    }
    # control: the same prediction through the wrong transform direction misses the brain
    bad = table[table.subject_id == "s2"].iloc[0]
    assert bad["dice"] < 0.85
    # the written mask is uint8 on the native t1ce grid and is the scored one
    mask_img = read_image(tmp_path / "s1_flair_openvino_int8.nii.gz", pixel_type=sitk.sitkUInt8)
    assert mask_img.GetSize() == NATIVE_SIZE and mask_img.GetSpacing() == NATIVE_SPACING
    assert sitk.ReadImage(str(tmp_path / "s1_flair_openvino_int8.nii.gz")).GetPixelID() == (
        sitk.sitkUInt8
    )
    gt = image_to_array(read_image(root / "native/s1/s1_mask.nii.gz")) > 0
    assert dice(image_to_array(mask_img), gt) == pytest.approx(good["dice"].iloc[1])
    voxel_ml = 27.0 / 1000
    assert good["gt_volume_ml"].iloc[0] == pytest.approx(gt.sum() * voxel_ml)
    # the ellipsoid's analytic volume, 4/3 pi abc, to within the voxelisation
    assert good["gt_volume_ml"].iloc[0] == pytest.approx(
        4 / 3 * math.pi * np.prod(BRAIN_RADII) / 1000, rel=0.03
    )


def test_brainmage_threshold_keeps_mask_close(world: dict) -> None:
    """At BrainMaGe's 0.9 the cubic-interpolated boundary erodes by a fraction of a net voxel."""
    root = world["root"]
    out = [world["net"]["s1"]]
    table = ev.evaluate(
        _items(out, ["s1"], ["t2"]),
        {"pytorch_fp32": lambda: _LookupRunner(out)},
        root / "registered",
        root / "native",
        threshold=0.9,
        to_atlas=from_network_standin,
        log=lambda m: None,
    )
    row = table.iloc[0]
    assert 0.88 < row["dice"] < 0.99
    assert row["pred_volume_ml"] < row["gt_volume_ml"]  # erosion, not dilation


def test_empty_prediction_is_a_result(world: dict) -> None:
    root = world["root"]
    out = [np.zeros(NET_SHAPE, np.float32)]
    table = ev.evaluate(
        _items(out, ["s1"], ["t1ce"]),
        {"onnxruntime_fp32": lambda: _LookupRunner(out)},
        root / "registered",
        root / "native",
        to_atlas=from_network_standin,
        log=lambda m: None,
    )
    row = table.iloc[0]
    assert bool(row["empty_pred"]) and not bool(row["empty_gt"])
    assert math.isnan(row["hd95_mm"]) and math.isnan(row["hd95_max_mm"])
    assert row["dice"] < 1e-6 and row["pred_volume_ml"] == 0.0


def test_missing_subject_file_names_it(world: dict, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="s9_t1ce_to_atlas.tfm|s9_t1ce.nii.gz"):
        ev.load_subject("s9", world["root"] / "registered", world["root"] / "native")


def test_select_configs() -> None:
    assert ev.select_configs(None, bf16_supported=False) == [
        "pytorch_fp32",
        "onnxruntime_fp32",
        "openvino_fp32",
        "openvino_fp32_onnx",
        "openvino_int8",
        "openvino_int8_default",
    ]
    assert "openvino_bf16" in ev.select_configs(None, bf16_supported=True)
    assert ev.select_configs(["openvino_int8", "pytorch_fp32"], False) == [
        "pytorch_fp32",
        "openvino_int8",
    ]
    with pytest.raises(ValueError, match="unknown"):
        ev.select_configs(["tensorrt"], False)


def test_cli_with_onnx_routes(world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """brain-evaluate end to end through dataset.npz, ONNX Runtime and the ONNX -> IR route.

    The 'network' is sigmoid(20 * (x - 0.5)) on an input that is the network-grid mask itself,
    so its output is the mask up to 5e-5.
    """
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    root = world["root"]
    masks = np.stack([world["net"]["s1"], world["net"]["s1"]]).astype(np.uint8)
    np.savez(
        tmp_path / "dataset.npz",
        images=masks.astype(np.float32),
        masks=masks,
        case_id=np.array(["s1_t1", "s1_t2"]),
        patient_id=np.array(["s1", "s1"]),
        modality=np.array(["t1", "t2"]),
        atlas_shape=np.array(ATLAS_SIZE),
        atlas_spacing=np.array(ATLAS_SPACING),
    )
    pd.DataFrame(
        {"case_id": ["s1_t1", "s1_t2"], "patient_id": ["s1", "s1"], "split": ["test", "train"]}
    ).to_csv(tmp_path / "splits.csv", index=False)
    conv = torch.nn.Conv3d(1, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(20.0)
        conv.bias.fill_(-10.0)
    model = torch.nn.Sequential(conv, torch.nn.Sigmoid()).eval()
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, *NET_SHAPE),),
        str(tmp_path / "model.onnx"),
        opset_version=17,
        dynamo=False,
        input_names=["input"],
        output_names=["output"],
    )
    monkeypatch.setattr(ev, "_default_to_atlas", lambda: from_network_standin)
    out, masks_dir = tmp_path / "evaluation.csv", tmp_path / "masks"
    argv = [
        "--onnx",
        str(tmp_path / "model.onnx"),
        "--dataset",
        str(tmp_path / "dataset.npz"),
        "--splits",
        str(tmp_path / "splits.csv"),
        "--registered-root",
        str(root / "registered"),
        "--native-root",
        str(root / "native"),
        "--threshold",
        "0.5",
        "--out",
        str(out),
        "--masks-dir",
        str(masks_dir),
        "--configs",
        "onnxruntime_fp32",
        "openvino_fp32_onnx",
    ]
    assert ev.main(argv) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ev.COLUMNS
    assert table["config"].tolist() == ["onnxruntime_fp32", "openvino_fp32_onnx"]
    assert table["route"].tolist() == ["onnx", "onnx_to_ir"]
    assert (table["dice"] > 0.95).all() and (table["subject_id"] == "s1").all()
    assert table["dice"].iloc[0] == pytest.approx(table["dice"].iloc[1], abs=1e-6)
    assert sorted(p.name for p in masks_dir.iterdir()) == [
        "s1_t1_onnxruntime_fp32.nii.gz",
        "s1_t1_openvino_fp32_onnx.nii.gz",
    ]
    # a configuration whose model is not given is a usage error, not a crash half-way
    with pytest.raises(SystemExit):
        ev.main([*argv[:-2], "pytorch_fp32"])
    with pytest.raises(InputError, match="absent.xml"):
        ev.main([*argv[:-2], "openvino_int8", "--ir-int8", str(tmp_path / "absent.xml")])


# -- task interface -----------------------------------------------------------------------------


@pytest.fixture()
def small_dataset(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    rng = np.random.default_rng(0)
    masks = np.zeros((3, 6, 6, 4), np.uint8)
    masks[:, 1:5, 1:5, 1:3] = 1
    np.savez(
        tmp_path / "dataset.npz",
        images=rng.normal(size=masks.shape).astype(np.float32),
        masks=masks,
        case_id=np.array(["a_t1", "a_t2", "b_t1"]),
        patient_id=np.array(["a", "a", "b"]),
        modality=np.array(["t1", "t2", "t1"]),
    )
    pd.DataFrame(
        {
            "case_id": ["a_t1", "a_t2", "b_t1"],
            "patient_id": ["a", "a", "b"],
            "split": ["val", "val", "train"],
        }
    ).to_csv(tmp_path / "splits.csv", index=False)
    return tmp_path / "dataset.npz", tmp_path / "splits.csv", masks


def test_load_items_and_validate(small_dataset) -> None:
    dataset, splits, masks = small_dataset
    task = get_task("brain_extraction")
    assert task is TASK and task.metric_name == "Dice" and task.metric_unit == ""
    items = task.load_items(dataset, splits, "val")
    assert items.inputs.shape == (2, 1, 6, 6, 4) and items.inputs.dtype == np.float32
    assert items.case_id == ["a_t1", "a_t2"]
    assert items.extra["patient_id"] == ["a", "a"] and items.extra["modality"] == ["t1", "t2"]
    assert items.extra["masks"].dtype == np.uint8
    perfect = masks[0].astype(np.float32) * 0.6  # >= 0.5 everywhere in the mask
    # half of the mask (the z = 1 layer, 16 of 32 voxels) above 0.5: Dice 2*16/(16+32) = 2/3
    half = masks[1].astype(np.float32) * 0.9
    half[:, :, 2] = 0.49
    metric, per_item = task.validate([perfect[None, None], half[None, None]], items, [0, 1], {})
    assert per_item == pytest.approx([1.0, 2 / 3], abs=1e-8)
    assert metric == pytest.approx((1.0 + 2 / 3) / 2, abs=1e-8)
    # order follows index
    _, swapped = task.validate([half[None, None], perfect[None, None]], items, [1, 0], {})
    assert swapped == pytest.approx([2 / 3, 1.0], abs=1e-8)
    with pytest.raises(ValueError, match="shape"):
        task.validate([np.zeros((1, 1, 6, 6, 5))], items, [0], {})


def test_bad_dataset_names_the_file(small_dataset, tmp_path: Path) -> None:
    _, splits, _ = small_dataset
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((1, 2, 2, 2), np.float32), case_id=np.array(["x"]))
    with pytest.raises(InputError, match=r"bad\.npz.*missing"):
        TASK.load_items(bad, splits, "val")
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(InputError, match="junk.npz"):
        TASK.load_items(junk, splits, "val")
    with pytest.raises(InputError, match="nothere.npz"):
        TASK.load_items(tmp_path / "nothere.npz", splits, "val")
