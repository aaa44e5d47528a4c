"""Paper 004 task glue: load_items, validate (hand-computed AP), and the yolo-evaluate stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medrepro.io.errors import InputError
from medrepro.nets import build_model, save_bundle
from medrepro.tasks import cerebellum_yolo_evaluate as yolo_eval
from medrepro.tasks import get_task
from medrepro.tasks.base import TaskItems
from medrepro.tasks.cerebellum_yolo import TASK, per_item_scores

torch.set_num_threads(1)

SIZE = 64
TINY = {"input_size": SIZE, "width": 0.125}


def write_dataset(root: Path, n: int = 8, size: int = SIZE) -> tuple[Path, Path]:
    """Images with a bright rectangle; the last one empty. Splits: 4 train, 1 val, 3 test."""
    rng = np.random.default_rng(0)
    images = (rng.random((n, size, size, 3)) * 40).astype(np.uint8)
    boxes = np.full((n, 4), np.nan, np.float32)
    has = np.zeros(n, bool)
    for i in range(n - 1):
        x0, y0, w, h = 4 + i, 8, 20, 12
        images[i, y0 : y0 + h, x0 : x0 + w] = 255
        boxes[i] = [(x0 + w / 2) / size, (y0 + h / 2) / size, w / size, h / size]
        has[i] = True
    ids = np.array([f"img{i}" for i in range(n)])
    dataset = root / "dataset.npz"
    np.savez(
        dataset,
        images=images,
        boxes=boxes,
        has_object=has,
        image_id=ids,
        volume_id=np.array([f"vol{i // 2}" for i in range(n)]),
        orig_size=np.tile([size, size], (n, 1)),
    )
    split = ["train", "test", "train", "test", "train", "val", "train", "test"][:n]
    splits = root / "splits.csv"
    pd.DataFrame({"case_id": ids, "patient_id": "p", "split": split}).to_csv(splits, index=False)
    return dataset, splits


def test_task_is_registered() -> None:
    task = get_task("cerebellum_yolo")
    assert task is TASK
    assert task.metric_name == "AP"


def test_load_items(tmp_path: Path) -> None:
    dataset, splits = write_dataset(tmp_path)
    items = TASK.load_items(dataset, splits, "test")
    assert items.case_id == ["img1", "img3", "img7"]
    assert items.inputs.shape == (3, 3, SIZE, SIZE) and items.inputs.dtype == np.float32
    with np.load(dataset) as data:
        np.testing.assert_allclose(
            items.inputs[0], data["images"][1].transpose(2, 0, 1) / 255.0, atol=1e-7
        )
        np.testing.assert_array_equal(items.extra["boxes"], data["boxes"][[1, 3, 7]])
    assert items.extra["has_object"].tolist() == [True, True, False]
    assert items.extra["volume_id"] == ["vol0", "vol1", "vol3"]


def test_load_items_rejects_inconsistent_boxes(tmp_path: Path) -> None:
    dataset, splits = write_dataset(tmp_path)
    with np.load(dataset) as data:
        arrays = dict(data)
    arrays["has_object"][-1] = True  # an "annotated" image with a NaN box
    np.savez(dataset, **arrays)
    with pytest.raises(InputError, match="NaN rows"):
        TASK.load_items(dataset, splits, "test")
    arrays["images"] = arrays["images"][..., 0]
    np.savez(dataset, **arrays)
    with pytest.raises(InputError, match="uint8"):
        TASK.load_items(dataset, splits, "test")


def raw_with_box(S: int, cell: tuple[int, int], wh: tuple[float, float], conf_logit: float):
    """Raw ``(1, S, S, 6)`` output (B=1, C=1): centre of ``cell`` (x, y logits 0), given w, h.

    The network predicts the square roots of the sizes (Darknet's ``sqrt=1``). Every other cell
    has confidence logit -8; the chosen cell has ``conf_logit``.
    """
    raw = np.zeros((1, S, S, 6), np.float32)
    raw[..., 4] = -8.0
    row, col = cell
    raw[0, row, col, 2:5] = (np.sqrt(wh[0]), np.sqrt(wh[1]), conf_logit)
    return raw


def items_with(boxes: list, has: list[bool]) -> TaskItems:
    n = len(boxes)
    return TaskItems(
        inputs=np.zeros((n, 3, 8, 8), np.float32),
        case_id=[f"i{k}" for k in range(n)],
        extra={"boxes": np.asarray(boxes, np.float32), "has_object": np.asarray(has)},
    )


def test_validate_hand_computed_ap() -> None:
    S = 2
    items = items_with(
        [[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.2, 0.2], [0.5, 0.5, 0.4, 0.4], [np.nan] * 4],
        [True, True, True, False],
    )
    outputs = [
        # top box (0.25, 0.25, 0.5, 0.25): inside the annotation, half its area -> IoU 0.5
        raw_with_box(S, (0, 0), (0.5, 0.25), 4.0),
        # exactly the annotation -> IoU 1
        raw_with_box(S, (1, 1), (0.2, 0.2), 4.0),
        # a weak box (sigmoid(-3) = 0.047 < 0.25): AP still scores its IoU with the annotation
        raw_with_box(S, (1, 1), (0.4, 0.4), -3.0),
        # empty image, nothing above the threshold: a correct rejection (excluded from AP)
        raw_with_box(S, (0, 1), (0.3, 0.3), -3.0),
    ]
    meta = {"output_kind": "yolo", "extra": {"S": S, "B": 1, "C": 1}}
    # box [0.55, 0.95]^2 vs annotation [0.3, 0.7]^2: overlap 0.15 x 0.15
    iou_2 = 0.15**2 / (2 * 0.4**2 - 0.15**2)
    ap, per_item = TASK.validate(outputs, items, [0, 1, 2, 3], meta)
    assert ap == pytest.approx((0.5 + 1.0 + iou_2) / 3)
    np.testing.assert_allclose(per_item, [0.5, 1.0, iou_2, 1.0], atol=1e-6)

    # a subset; a lower threshold from the bundle makes the empty image's weak box a detection
    meta["extra"]["conf_threshold"] = 0.01
    ap, per_item = TASK.validate([outputs[2], outputs[3]], items, [2, 3], meta)
    assert ap == pytest.approx(iou_2)
    np.testing.assert_allclose(per_item, [iou_2, 0.0], atol=1e-6)


def test_validate_needs_yolo_meta_and_sizes() -> None:
    items = items_with([[0.5, 0.5, 0.2, 0.2]], [True])
    with pytest.raises(ValueError, match="not a YOLO bundle"):
        TASK.validate([np.zeros((1, 2, 2, 6))], items, [0], {"extra": {}})
    with pytest.raises(ValueError, match="expected 3x3x6"):
        TASK.validate([np.zeros((1, 2, 2, 6))], items, [0], {"extra": {"S": 3, "B": 1, "C": 1}})


def test_per_item_scores_empty_image_with_detection() -> None:
    scores = per_item_scores(
        np.array([[0.5, 0.5, 0.2, 0.2]] * 2),
        np.array([0.9, 0.1]),
        np.full((2, 4), np.nan),
        np.array([False, False]),
        0.25,
    )
    np.testing.assert_array_equal(scores, [0.0, 1.0])


# ---------------------------------------------------------------- yolo-evaluate


@pytest.fixture
def best_model(tmp_path: Path) -> dict[str, Path]:
    """A random tiny YOLO bundle and the dataset (no OpenVINO)."""
    torch.manual_seed(0)
    model = build_model("tiny_yolov1", **TINY).eval()
    bundle = tmp_path / "best" / "model.pt"
    save_bundle(
        bundle,
        model,
        arch="tiny_yolov1",
        kwargs=TINY,
        input_shape=[1, 3, SIZE, SIZE],
        output_kind="yolo",
        extra={"S": 7, "B": 2, "C": 1, "conf_threshold": 0.25},
    )
    dataset, splits = write_dataset(tmp_path)
    return {"bundle": bundle, "dataset": dataset, "splits": splits}


@pytest.fixture
def with_ir(best_model: dict[str, Path]) -> dict[str, Path]:
    """``best_model`` plus its FP32 OpenVINO IR."""
    import openvino as ov

    from medrepro.nets import load_bundle

    model, _ = load_bundle(best_model["bundle"])
    ir = best_model["bundle"].parent / "model_fp32.xml"
    ov_model = ov.convert_model(model, example_input=torch.zeros(1, 3, SIZE, SIZE))
    ov.save_model(ov_model, str(ir), compress_to_fp16=False)
    return {**best_model, "ir": ir}


def test_evaluate_cli_writes_three_configs(tmp_path: Path, with_ir: dict[str, Path]) -> None:
    best_model = with_ir
    out, preds = tmp_path / "eval" / "deployment.csv", tmp_path / "eval" / "predictions.csv"
    args = ["--bundle", best_model["bundle"], "--ir-fp32", best_model["ir"]]
    args += ["--ir-int8", best_model["ir"], "--dataset", best_model["dataset"]]
    args += ["--splits", best_model["splits"], "--conf-threshold", "0.0", "--threads", "1"]
    args += ["--out", out, "--predictions-out", preds]
    assert yolo_eval.main([str(a) for a in args]) == 0

    table = pd.read_csv(out)
    assert list(table.columns) == yolo_eval.DEPLOYMENT_COLUMNS
    assert table["config"].tolist() == ["pytorch_fp32", "openvino_fp32", "openvino_int8"]
    assert (table["n_images"] == 3).all() and (table["n_annotated"] == 2).all()
    predictions = pd.read_csv(preds)
    assert list(predictions.columns) == yolo_eval.PREDICTION_COLUMNS
    assert len(predictions) == 9
    assert predictions["image_id"].tolist()[:3] == ["img1", "img3", "img7"]
    # the same network in both runtimes (an FP32 IR given as "int8" too): same boxes, same AP
    by = {c: g.reset_index(drop=True) for c, g in predictions.groupby("config")}
    for config in ("openvino_fp32", "openvino_int8"):
        np.testing.assert_allclose(
            by[config][["cx", "cy", "w", "h", "conf"]],
            by["pytorch_fp32"][["cx", "cy", "w", "h", "conf"]],
            atol=1e-4,
        )
    np.testing.assert_allclose(table["ap"], table["ap"].iloc[0], atol=1e-4)
    # threshold 0: every annotated image counts its IoU, so AP is the mean of the iou column
    torch_rows = by["pytorch_fp32"]
    assert np.isnan(torch_rows["iou"].iloc[2])
    assert table["ap"].iloc[0] == pytest.approx(torch_rows["iou"].iloc[:2].mean())
    # an empty image with a box above threshold 0 is a false positive
    assert table["fp"].iloc[0] >= 1


def test_evaluate_missing_model(tmp_path: Path, best_model: dict[str, Path]) -> None:
    args = ["--bundle", best_model["bundle"], "--ir-fp32", tmp_path / "nope.xml"]
    args += ["--dataset", best_model["dataset"], "--splits", best_model["splits"]]
    args += ["--configs", "openvino_fp32", "--out", tmp_path / "d.csv"]
    args += ["--predictions-out", tmp_path / "p.csv"]
    with pytest.raises(InputError, match="nope.xml"):
        yolo_eval.main([str(a) for a in args])
    assert not (tmp_path / "d.csv").exists()


def test_fit_inputs_resizes_to_bundle_shape() -> None:
    x = np.random.default_rng(0).random((2, 3, 96, 96)).astype(np.float32)
    assert yolo_eval.fit_inputs(x, [1, 3, 96, 96]) is x
    out = yolo_eval.fit_inputs(x, [1, 3, 64, 64])
    assert out.shape == (2, 3, 64, 64)
    assert abs(out.mean() - x.mean()) < 1e-2


def test_quantize_meta_roundtrip(best_model: dict[str, Path]) -> None:
    """The task scores the bundle's own outputs through the shared quantize interface."""
    from medrepro.deployment.runtimes import make_runner
    from medrepro.nets import load_bundle

    model, meta = load_bundle(best_model["bundle"])
    items = TASK.load_items(best_model["dataset"], best_model["splits"], "test")
    runner = make_runner("pytorch", model, 1)
    outputs = [runner.infer(items.inputs[i : i + 1]) for i in range(len(items))]
    ap, per_item = TASK.validate(outputs, items, range(len(items)), meta)
    assert len(per_item) == 3 and 0.0 <= ap <= 1.0
    assert json.dumps(meta["extra"])  # plain values only


def test_shared_quantize_stage_runs_the_task(tmp_path: Path, with_ir: dict[str, Path]) -> None:
    from medrepro.deployment.quantize import main as quantize_main

    out = tmp_path / "int8"
    args = ["--bundle", with_ir["bundle"], "--ir", with_ir["ir"], "--task", "cerebellum_yolo"]
    args += ["--dataset", with_ir["dataset"], "--splits", with_ir["splits"], "--subset-size", "4"]
    args += ["--threads", "1", "--out-dir", out]
    assert quantize_main([str(a) for a in args]) == 0
    report = json.loads((out / "quantization.json").read_text())
    assert report["task"] == "cerebellum_yolo" and report["metric_name"] == "AP"
    assert report["n_validation"] == 1 and report["input_shape"] == [1, 3, SIZE, SIZE]
    assert (out / "model_int8.xml").is_file()
