"""Paper 004 training stages: yolo-pretrain, yolo-train (augmentation, checkpoints), select-best."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medrepro.io.errors import InputError
from medrepro.nets import build_model, load_bundle, save_bundle
from medrepro.training import detection, pretrain, select_best
from medrepro.training.detection import (
    CHECKPOINT_COLUMNS,
    HISTORY_COLUMNS,
    Augmentation,
    augment_batch,
    batch_indices,
    best_checkpoint,
    load_features,
)

torch.set_num_threads(1)

SIZE = 64
TINY = {"input_size": SIZE, "width": 0.125}


def write_dataset(root: Path, n: int = 13, size: int = SIZE) -> tuple[Path, Path]:
    """``n - 1`` dark noisy images with one bright rectangle (the object) and one empty image.

    Splits: 9 train (with the empty image), 1 val, 3 test.
    """
    rng = np.random.default_rng(0)
    images = (rng.random((n, size, size, 3)) * 40).astype(np.uint8)
    boxes = np.full((n, 4), np.nan, np.float32)
    has = np.zeros(n, bool)
    for i in range(n - 1):
        w, h = (int(v) for v in rng.integers(size // 5, size // 2, 2))
        x0, y0 = int(rng.integers(2, size - w - 2)), int(rng.integers(2, size - h - 2))
        images[i, y0 : y0 + h, x0 : x0 + w] = (250, 230, 40)
        boxes[i] = [(x0 + w / 2) / size, (y0 + h / 2) / size, w / size, h / size]
        has[i] = True
    ids = np.array([f"v{i // 4}_{i:02d}" for i in range(n)])
    vols = np.array([f"v{i // 4}" for i in range(n)])
    dataset = root / "dataset.npz"
    np.savez(
        dataset,
        images=images,
        boxes=boxes,
        has_object=has,
        image_id=ids,
        volume_id=vols,
        orig_size=np.tile([size, size], (n, 1)),
    )
    split = ["train"] * 8 + ["val"] + ["test"] * 3 + ["train"] * (n - 12)
    splits = root / "splits.csv"
    pd.DataFrame({"case_id": ids, "patient_id": vols, "split": split}).to_csv(splits, index=False)
    return dataset, splits


def train_args(dataset: Path, splits: Path, out: Path, **over: object) -> list[str]:
    args = {
        "dataset": dataset,
        "splits": splits,
        "arch": "tiny_yolov1",
        "model-kwargs": json.dumps(TINY),
        "lr": 1e-3,
        "momentum": 0.9,
        "batch-size": 8,
        "iterations": 30,
        "checkpoint-every": 10,
        "seed": 3,
        "threads": 1,
        "out-dir": out,
    }
    args.update(over)
    return [x for k, v in args.items() if v is not None for x in (f"--{k}", str(v))]


# ---------------------------------------------------------------- augmentation and batching


def bright_box(img: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Half-open normalised box of the pixels of channel 0 above ``threshold``, ``(C, H, W)``."""
    ys, xs = np.nonzero(img[0] > threshold)
    h, w = img.shape[1:]
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    return np.array([(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h])


def test_augmentation_moves_image_and_box_together() -> None:
    x = np.zeros((40, 3, SIZE, SIZE), np.float32)
    boxes = np.empty((40, 4), np.float32)
    rng = np.random.default_rng(1)
    for i in range(40):
        w, h = rng.integers(10, 40, 2)
        x0, y0 = rng.integers(0, SIZE - w), rng.integers(0, SIZE - h)
        x[i, :, y0 : y0 + h, x0 : x0 + w] = 1.0
        boxes[i] = [(x0 + w / 2) / SIZE, (y0 + h / 2) / SIZE, w / SIZE, h / SIZE]
    aug = Augmentation(scale=0.1, shift=0.1, brightness=0.0, contrast=0.0)
    out, new = augment_batch(x, boxes, np.random.default_rng(2), aug)
    assert out.shape == x.shape and out.dtype == np.float32
    assert not np.allclose(new, boxes)  # something moved
    assert np.all(new[:, :2] - new[:, 2:] / 2 >= -1e-6)
    assert np.all(new[:, :2] + new[:, 2:] / 2 <= 1 + 1e-6)
    for img, box in zip(out, new, strict=True):
        # bilinear edges: the thresholded box is within one pixel of the transformed box
        np.testing.assert_allclose(bright_box(img), box, atol=1.0 / SIZE + 1e-6)


def test_augmentation_identity_and_empty_rows() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((3, 3, 16, 16)).astype(np.float32)
    boxes = np.array([[0.5, 0.5, 0.2, 0.4], [np.nan] * 4, [0.1, 0.9, 0.2, 0.2]], np.float32)
    out, new = augment_batch(x, boxes, rng, Augmentation(0.0, 0.0, 0.0, 0.0))
    np.testing.assert_allclose(out, x, atol=1e-5)
    np.testing.assert_array_equal(np.isnan(new), np.isnan(boxes))
    np.testing.assert_allclose(new[[0, 2]], boxes[[0, 2]], atol=1e-6)


def test_augmentation_clips_box_larger_than_image() -> None:
    x = np.ones((1, 3, 16, 16), np.float32)
    boxes = np.array([[0.5, 0.5, 1.0, 1.0]], np.float32)
    _, new = augment_batch(x, boxes, np.random.default_rng(5), Augmentation(0.1, 0.1, 0.0, 0.0))
    # a zoom-in pushes the box outside; it is clipped to the image, a zoom-out shrinks it
    assert np.all(new[0, :2] - new[0, 2:] / 2 >= -1e-6)
    assert np.all(new[0, :2] + new[0, 2:] / 2 <= 1 + 1e-6)


def test_brightness_contrast_stay_in_range() -> None:
    x = np.random.default_rng(0).random((8, 3, 8, 8)).astype(np.float32)
    out, _ = augment_batch(
        x,
        np.full((8, 4), np.nan, np.float32),
        np.random.default_rng(1),
        Augmentation(0, 0, 0.5, 0.5),
    )
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not np.allclose(out, x)


def test_batch_indices_cover_every_image_per_pass() -> None:
    gen = batch_indices(7, 3, np.random.default_rng(0))
    first = np.concatenate([next(gen) for _ in range(7)])  # 21 = 3 passes
    for k in range(3):
        assert sorted(first[7 * k : 7 * k + 7]) == list(range(7))
    again = batch_indices(7, 3, np.random.default_rng(0))
    np.testing.assert_array_equal(np.concatenate([next(again) for _ in range(7)]), first)
    assert len(next(batch_indices(2, 5, np.random.default_rng(0)))) == 5


def test_best_checkpoint_prefers_earliest_on_ties() -> None:
    table = pd.DataFrame({"iteration": [10, 20, 30, 40], "ap": [0.3, 0.7, 0.7, np.nan]})
    assert best_checkpoint(table) == 1
    with pytest.raises(ValueError):
        best_checkpoint(pd.DataFrame({"iteration": [1], "ap": [np.nan]}))


# ---------------------------------------------------------------- yolo-train


def test_train_end_to_end(tmp_path: Path) -> None:
    dataset, splits = write_dataset(tmp_path)
    out = tmp_path / "models" / "tiny_run"
    assert detection.main(train_args(dataset, splits, out)) == 0

    table = pd.read_csv(out / "checkpoints.csv")
    assert list(table.columns) == CHECKPOINT_COLUMNS
    assert table["iteration"].tolist() == [10, 20, 30]
    assert (table["run"] == "tiny_run").all()
    assert (table["n_images"] == 3).all() and (table["n_annotated"] == 3).all()
    assert table["ap"].between(0, 1).all()
    assert (table["tp"] + table["fn"] == 3).all()
    # the mean training loss of the last 10 batches is below that of the first 10 (observed:
    # 2.23 -> 1.59; the low-confidence output prior starts the loss low)
    assert table["loss"].iloc[-1] < 0.85 * table["loss"].iloc[0]

    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == HISTORY_COLUMNS
    assert history["epoch"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(history["val_metric"], table["ap"])

    for it in (10, 20, 30):
        assert (out / "checkpoints" / f"iter_{it}.pt").is_file()
    best = table.iloc[best_checkpoint(table)]
    model, meta = load_bundle(out / "model.pt")
    assert meta["output_kind"] == "yolo" and meta["input_shape"] == [1, 3, SIZE, SIZE]
    assert meta["extra"]["iteration"] == best["iteration"]
    assert meta["extra"]["ap"] == pytest.approx(best["ap"])
    assert {k: meta["extra"][k] for k in "SBC"} == {"S": 7, "B": 2, "C": 1}
    assert meta["extra"]["conf_threshold"] == 0.25
    assert model(torch.zeros(1, 3, SIZE, SIZE)).shape == (1, 7, 7, 11)
    assert (out / "model.pt").read_bytes() == (
        out / "checkpoints" / f"iter_{int(best['iteration'])}.pt"
    ).read_bytes()


def test_diverging_run_is_recorded_not_raised(tmp_path: Path) -> None:
    """A learning rate that blows the loss up ends the run with a scored, flagged checkpoint."""
    dataset, splits = write_dataset(tmp_path)
    out = tmp_path / "diverging"
    argv = train_args(
        dataset, splits, out, lr=1e6, momentum=0.9, iterations=30, **{"clip-grad-norm": 0}
    )
    assert detection.main(argv) == 0
    table = pd.read_csv(out / "checkpoints.csv")
    assert bool(table["diverged"].iloc[-1])
    assert not table["diverged"].iloc[:-1].any()
    assert table["iteration"].iloc[-1] < 30  # stopped early
    assert (out / "model.pt").is_file()


def test_train_is_deterministic(tmp_path: Path) -> None:
    dataset, splits = write_dataset(tmp_path)
    tables = []
    for name in ("a", "b"):
        out = tmp_path / name
        detection.main(train_args(dataset, splits, out, iterations=6, **{"checkpoint-every": 3}))
        tables.append(pd.read_csv(out / "checkpoints.csv").drop(columns=["run", "seconds"]))
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_train_resizes_larger_dataset(tmp_path: Path) -> None:
    dataset, splits = write_dataset(tmp_path, size=96)
    out = tmp_path / "run"
    detection.main(train_args(dataset, splits, out, iterations=2, **{"checkpoint-every": 2}))
    _, meta = load_bundle(out / "model.pt")
    assert meta["input_shape"] == [1, 3, SIZE, SIZE]


def test_train_rejects_bad_dataset(tmp_path: Path) -> None:
    dataset, splits = write_dataset(tmp_path)
    with np.load(dataset) as data:
        arrays = dict(data)
    arrays["boxes"][0] = np.nan  # an annotated image without a box
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(InputError, match="bad.npz"):
        detection.main(train_args(bad, splits, tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints.csv").exists()


# ---------------------------------------------------------------- yolo-pretrain


def test_synthetic_task_is_seeded_and_oriented() -> None:
    x1, y1 = pretrain.synthetic_batch(16, 32, np.random.default_rng(4))
    x2, y2 = pretrain.synthetic_batch(16, 32, np.random.default_rng(4))
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert x1.shape == (16, 3, 32, 32) and x1.dtype == np.float32
    assert x1.min() >= 0 and x1.max() <= 1
    # stripes_0 vary along x (columns), stripes_90 along y (rows)
    for label, axis_strong in ((0, 1), (2, 0)):
        p = pretrain.pattern(label, 64, np.random.default_rng(0))
        grad_y, grad_x = np.abs(np.diff(p, axis=0)).mean(), np.abs(np.diff(p, axis=1)).mean()
        strong, weak = (grad_y, grad_x) if axis_strong == 0 else (grad_x, grad_y)
        assert strong > 2 * weak
    assert len(pretrain.CLASSES) == 8


def test_pretrain_changes_only_features_and_init_loads_them(tmp_path: Path) -> None:
    bundle, history = tmp_path / "pre" / "model.pt", tmp_path / "pre" / "history.csv"
    args = ["--arch", "tiny_yolov1", "--model-kwargs", json.dumps(TINY), "--iterations", "4"]
    args += ["--batch-size", "8", "--lr", "0.01", "--seed", "5", "--threads", "1"]
    assert pretrain.main([*args, "--out", str(bundle), "--history", str(history)]) == 0

    table = pd.read_csv(history)
    assert list(table.columns) == ["iteration", "loss", "accuracy"]
    assert table["iteration"].tolist() == [1, 2, 3, 4]
    pre, meta = load_bundle(bundle)
    assert meta["output_kind"] == "yolo" and meta["arch"] == "tiny_yolov1"
    assert meta["extra"]["S"] == 7 and "pretrain" in meta["extra"]

    torch.manual_seed(5)
    fresh = build_model("tiny_yolov1", **TINY)
    pre_state, fresh_state = pre.state_dict(), fresh.state_dict()
    changed = {k for k in pre_state if not torch.equal(pre_state[k], fresh_state[k])}
    assert changed, "pre-training changed nothing"
    assert all(k.startswith("features.") for k in changed)
    assert any(k.endswith("weight") and "features.0." in k for k in changed)

    # yolo-train --init: only features.* are copied; another width does not fit
    target = build_model("tiny_yolov1", **TINY, S=5)
    head_before = {k: v.clone() for k, v in target.state_dict().items() if k.startswith("head")}
    assert load_features(target, bundle) == len([k for k in pre_state if k.startswith("features.")])
    for k, v in target.state_dict().items():
        if k.startswith("features."):
            assert torch.equal(v, pre_state[k])
        else:
            assert torch.equal(v, head_before[k])
    with pytest.raises(InputError, match="do not fit"):
        load_features(build_model("tiny_yolov1", input_size=SIZE, width=0.25), bundle)

    # and through the CLI
    dataset, splits = write_dataset(tmp_path)
    out = tmp_path / "run"
    detection.main(
        train_args(dataset, splits, out, init=bundle, iterations=1, **{"checkpoint-every": 1})
    )
    assert (out / "model.pt").is_file()


# ---------------------------------------------------------------- yolo-select-best


def fake_run(root: Path, name: str, aps: list[float]) -> Path:
    run = root / name
    run.mkdir(parents=True)
    iterations = [10 * (i + 1) for i in range(len(aps))]
    pd.DataFrame({"run": name, "iteration": iterations, "loss": 1.0, "ap": aps}).to_csv(
        run / "checkpoints.csv", index=False
    )
    pd.DataFrame({"epoch": [1], "train_loss": [1.0], "val_loss": [1.0], "val_metric": [max(aps)],
                  "seconds": [1.0]}).to_csv(run / "history.csv", index=False)  # fmt: skip
    save_bundle(
        run / "model.pt",
        build_model("tiny_yolov1", **TINY),
        arch="tiny_yolov1",
        kwargs=TINY,
        input_shape=[1, 3, SIZE, SIZE],
        output_kind="yolo",
        extra={"S": 7, "B": 2, "C": 1, "run": name},
    )
    return run


def test_select_best_picks_highest_ap(tmp_path: Path) -> None:
    a = fake_run(tmp_path, "yolo_s7", [0.2, 0.61, 0.5])
    b = fake_run(tmp_path, "yolo_s11", [0.3, 0.7, 0.7, 0.4])
    out = tmp_path / "best"
    assert select_best.main(["--runs", str(a), str(b), "--out-dir", str(out)]) == 0
    best = json.loads((out / "best.json").read_text())
    assert (best["run"], best["iteration"], best["ap"]) == ("yolo_s11", 20, 0.7)
    assert best["runs"] == {"yolo_s7": 0.61, "yolo_s11": 0.7}
    assert (out / "model.pt").read_bytes() == (b / "model.pt").read_bytes()
    assert (out / "history.csv").read_text() == (b / "history.csv").read_text()


def test_select_best_ties_go_to_first_listed(tmp_path: Path) -> None:
    a = fake_run(tmp_path, "first", [0.5])
    b = fake_run(tmp_path, "second", [0.1, 0.5])
    assert select_best.select_best([b, a])["run"] == "second"
    assert select_best.select_best([a, b])["run"] == "first"


def test_select_best_bad_run(tmp_path: Path) -> None:
    a = fake_run(tmp_path, "ok", [0.5])
    (tmp_path / "broken").mkdir()
    with pytest.raises(InputError, match="checkpoints.csv"):
        select_best.main(
            ["--runs", str(a), str(tmp_path / "broken"), "--out-dir", str(tmp_path / "o")]
        )
    assert not (tmp_path / "o").exists()


def test_burn_in_lr_is_darknets_quartic_warm_up() -> None:
    from medrepro.training.detection import burn_in_lr

    assert burn_in_lr(0.01, 5, 10) == pytest.approx(0.01 * 0.5**4)
    assert burn_in_lr(0.01, 10, 10) == 0.01 and burn_in_lr(0.01, 11, 10) == 0.01
    assert burn_in_lr(0.01, 1, 0) == 0.01  # no burn-in


def test_gradient_clipping_keeps_a_high_learning_rate_finite(tmp_path: Path) -> None:
    """The same diverging setting trains to the end once the gradient norm is clipped."""
    dataset, splits = write_dataset(tmp_path)
    out = tmp_path / "clipped"
    argv = train_args(dataset, splits, out, lr=0.5, iterations=20, **{"clip-grad-norm": 1.0})
    assert detection.main(argv) == 0
    table = pd.read_csv(out / "checkpoints.csv")
    assert table["iteration"].tolist() == [10, 20] and not table["diverged"].any()
