"""Brain-extraction trainer: data loading, augmentation, a tiny training run through `train`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medrepro.io.errors import InputError
from medrepro.nets import load_bundle
from medrepro.training import cli
from medrepro.training.loop import TrainConfig, make_optimizer
from medrepro.training.segmentation import augment, load_segmentation_split

torch.set_num_threads(1)

SHAPE = (32, 16, 16)
MODALITIES = ("t1", "t2")


def _blob(rng: np.random.Generator) -> np.ndarray:
    """An ellipsoid mask centred near the middle of SHAPE (0/1 uint8)."""
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij"), axis=-1)
    centre = np.array(SHAPE) / 2 + rng.uniform(-1.5, 1.5, 3)
    radii = np.array(SHAPE) * rng.uniform(0.25, 0.35, 3)
    return (((grid - centre) / radii) ** 2).sum(-1) <= 1.0


def _write_dataset(root: Path, n_patients: int = 3) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    images, masks, case_id, patient_id, modality = [], [], [], [], []
    for p in range(n_patients):
        mask = _blob(rng)
        for m, contrast in zip(MODALITIES, (1.0, 0.6), strict=True):
            images.append(contrast * mask + 0.1 * rng.standard_normal(SHAPE))
            masks.append(mask)
            case_id.append(f"s{p}_{m}")
            patient_id.append(f"s{p}")
            modality.append(m)
    dataset = root / "dataset.npz"
    np.savez(
        dataset,
        images=np.asarray(images, np.float32),
        masks=np.asarray(masks, np.uint8),
        case_id=np.asarray(case_id),
        patient_id=np.asarray(patient_id),
        modality=np.asarray(modality),
    )
    split = {"s0": "train", "s1": "train", "s2": "val"}
    splits = root / "splits.csv"
    pd.DataFrame(
        {"case_id": case_id, "patient_id": patient_id, "split": [split[p] for p in patient_id]}
    ).to_csv(splits, index=False)
    return dataset, splits


def test_load_split_in_dataset_order(tmp_path: Path) -> None:
    dataset, splits = _write_dataset(tmp_path)
    images, masks, ids = load_segmentation_split(dataset, splits, "train")
    assert ids == ["s0_t1", "s0_t2", "s1_t1", "s1_t2"]
    assert images.shape == (4, *SHAPE) and images.dtype == np.float32
    assert masks.shape == (4, *SHAPE) and masks.dtype == np.uint8
    with np.load(dataset) as data:
        np.testing.assert_array_equal(masks[2], data["masks"][2])


def test_load_split_bad_inputs(tmp_path: Path) -> None:
    dataset, splits = _write_dataset(tmp_path)
    with np.load(dataset) as data:
        arrays = dict(data)
    bad = tmp_path / "no_masks.npz"
    np.savez(bad, **{k: v for k, v in arrays.items() if k != "masks"})
    with pytest.raises(InputError, match="masks"):
        load_segmentation_split(bad, splits, "train")
    odd = tmp_path / "odd.npz"
    np.savez(
        odd, **{**arrays, "images": arrays["images"][..., :8], "masks": arrays["masks"][..., :8]}
    )
    with pytest.raises(InputError, match="divisible by 16"):
        load_segmentation_split(odd, splits, "train")
    with pytest.raises(InputError, match="file not found"):
        load_segmentation_split(tmp_path / "missing.npz", splits, "train")


def test_augment_flips_image_and_mask_together() -> None:
    image = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    mask = np.zeros(SHAPE, np.uint8)
    mask[:4] = 1  # left part only
    out, m = augment(
        image,
        mask,
        np.random.default_rng(1),
        flip_prob=1.0,
        intensity_scale=0.0,
        intensity_shift=0.0,
    )
    np.testing.assert_array_equal(out, image[::-1])
    np.testing.assert_array_equal(m, mask[::-1])
    assert m[-4:].all() and not m[:-4].any()
    out, m = augment(
        image,
        mask,
        np.random.default_rng(1),
        flip_prob=0.0,
        intensity_scale=0.2,
        intensity_shift=0.5,
    )
    np.testing.assert_array_equal(m, mask)
    # an affine intensity map x * a + b with |a - 1| <= 0.2, |b| <= 0.5
    a, b = np.polyfit(image.ravel(), out.ravel(), 1)
    assert abs(a - 1) <= 0.2 + 1e-6 and abs(b) <= 0.5 + 1e-4
    again, _ = augment(
        image,
        mask,
        np.random.default_rng(1),
        flip_prob=0.0,
        intensity_scale=0.2,
        intensity_shift=0.5,
    )
    np.testing.assert_array_equal(out, again)


def test_sgd_nesterov_optimizer() -> None:
    params = [torch.nn.Parameter(torch.zeros(2))]
    opt = make_optimizer(params, TrainConfig(2, 1, 0.01, 0, optimizer="sgd_nesterov"))
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert group["momentum"] == 0.9 and group["nesterov"] and group["lr"] == 0.01
    assert isinstance(make_optimizer(params, TrainConfig(2, 1, 0.01, 0)), torch.optim.Adam)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer(params, TrainConfig(2, 1, 0.01, 0, optimizer="rmsprop"))


def test_tiny_training_run_through_cli(tmp_path: Path) -> None:
    dataset, splits = _write_dataset(tmp_path)
    out = tmp_path / "model"
    argv = [
        "--task", "brain_extraction", "--dataset", str(dataset), "--splits", str(splits),
        "--arch", "resunet", "--model-kwargs", '{"base_filters": 4}',
        "--epochs", "8", "--batch-size", "1", "--lr", "0.1", "--seed", "0",
        "--optimizer", "sgd_nesterov", "--out-dir", str(out),
    ]  # fmt: skip
    assert cli.main(argv) == 0
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == ["epoch", "train_loss", "val_loss", "val_metric", "seconds"]
    assert history["epoch"].tolist() == list(range(1, 9))
    # observed: train Dice loss 0.80 -> 0.43, val Dice (>= 0.5) 0.18 -> 0.69
    assert history["train_loss"].iloc[-1] < 0.8 * history["train_loss"].iloc[0]
    assert history["val_metric"].max() > 0.5 > history["val_metric"].iloc[0]

    model, meta = load_bundle(out / "model.pt")
    assert meta["arch"] == "resunet" and meta["output_kind"] == "probabilities"
    assert meta["input_shape"] == [1, 1, *SHAPE]
    assert meta["extra"] == {"threshold": 0.9}
    assert meta["kwargs"] == {"in_channels": 1, "out_channels": 1, "base_filters": 4}
    images, masks, _ = load_segmentation_split(dataset, splits, "val")
    with torch.no_grad():
        prob = model(torch.from_numpy(images[:1, None])).numpy()[0, 0]
    assert prob.shape == SHAPE and 0.0 <= prob.min() and prob.max() <= 1.0
    # the bundle holds the best validation epoch: its thresholded Dice is the best in history
    pred = prob >= 0.5
    with torch.no_grad():
        prob2 = model(torch.from_numpy(images[1:2, None])).numpy()[0, 0]
    dices = [
        (2 * (p & (m > 0)).sum() + 1e-7) / (p.sum() + m.sum() + 1e-7)
        for p, m in ((pred, masks[0]), (prob2 >= 0.5, masks[1]))
    ]
    assert np.mean(dices) == pytest.approx(history["val_metric"].max(), abs=1e-6)
