"""Decoding network outputs to landmarks in mm, and the task's validation metric, on known cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medrepro.nets.vgg_regressor import encode_coordinates
from medrepro.tasks import get_task
from medrepro.transforms.heatmaps import gaussian_heatmaps

LABELS = ["Or-L", "Or-R", "Po-L", "Po-R"]
SHAPE = (16, 16, 8)


@pytest.fixture()
def dataset(tmp_path: Path) -> tuple[Path, Path]:
    """Two cases on oblique-free but flipped, anisotropic grids with known landmarks."""
    rng = np.random.default_rng(0)
    vox = rng.uniform(2, 6, size=(2, 4, 3)) * [2, 2, 1]
    origin = np.array([[10.0, -5.0, 3.0], [-20.0, 7.0, 0.0]])
    spacing = np.array([[1.25, 1.25, 1.55], [2.0, 2.0, 3.0]])
    direction = np.stack([np.eye(3), np.diag([-1.0, 1.0, -1.0])])
    mm = origin[:, None] + np.einsum("nij,nkj->nki", direction * spacing[:, None, :], vox)
    np.savez(
        tmp_path / "dataset.npz",
        images=np.zeros((2, *SHAPE), np.float32),
        landmarks_vox=vox,
        landmarks_mm=mm,
        origin=origin,
        spacing=spacing,
        direction=direction,
        case_id=np.array(["a", "b"]),
        patient_id=np.array(["pa", "pb"]),
        labels=np.array(LABELS),
    )
    pd.DataFrame(
        {"case_id": ["a", "b"], "patient_id": ["pa", "pb"], "split": ["test", "test"]}
    ).to_csv(tmp_path / "splits.csv", index=False)
    return tmp_path / "dataset.npz", tmp_path / "splits.csv"


def test_perfect_coordinates_score_zero(dataset: tuple[Path, Path]) -> None:
    task = get_task("cephalometry")
    items = task.load_items(*dataset, "test")
    outputs = [encode_coordinates(items.extra["landmarks_vox"][i : i + 1], SHAPE) for i in range(2)]
    metric, per_item = task.validate(outputs, items, [0, 1], {"output_kind": "coordinates"})
    # float32 coordinates: round-off of 1e-7 mm
    assert metric == pytest.approx(0.0, abs=1e-5)
    assert per_item == pytest.approx([0.0, 0.0], abs=1e-5)


def test_known_offset_in_mm(dataset: tuple[Path, Path]) -> None:
    """One voxel off along x on case b (2 mm spacing) -> 2 mm error on every landmark of b."""
    task = get_task("cephalometry")
    items = task.load_items(*dataset, "test")
    vox = items.extra["landmarks_vox"].copy()
    vox[1, :, 0] += 1.0
    outputs = [encode_coordinates(vox[i : i + 1], SHAPE) for i in range(2)]
    metric, per_item = task.validate(outputs, items, [0, 1], {"output_kind": "coordinates"})
    assert per_item == pytest.approx([0.0, -2.0], abs=1e-6)
    # pooled RMSE over 2 cases: sqrt(mean(0², 2²)) per landmark = sqrt(2)
    assert metric == pytest.approx(-np.sqrt(2.0), abs=1e-6)


def test_heatmaps_decode_to_mm(dataset: tuple[Path, Path]) -> None:
    task = get_task("cephalometry")
    items = task.load_items(*dataset, "test")
    hm_shape = tuple(s // 2 for s in SHAPE)
    outputs = [
        gaussian_heatmaps(items.extra["landmarks_vox"][i : i + 1], hm_shape, stride=2, sigma=1.5)
        for i in range(2)
    ]
    meta = {"output_kind": "heatmaps", "extra": {"heatmap_stride": 2}}
    pred = task.predict_mm(outputs, items, [0, 1], meta)
    np.testing.assert_allclose(pred, items.extra["landmarks_mm"], atol=0.1)
