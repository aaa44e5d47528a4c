"""Cephalometry task (Vasiliev et al. 2020): decode network outputs to landmarks in mm and score them.

Both networks of the paper predict the four landmarks (Or-L, Or-R, Po-L, Po-R) in the voxel grid
of the network input: the VGG regressor as normalised coordinates, the stacked hourglass as
heatmaps. Decoding maps them to continuous voxel indices of that grid and then, through the grid
(origin, spacing, direction), to LPS mm in the original image's physical space, where the errors
are measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medrepro.data.select_inputs import split_indices
from medrepro.io.errors import InputError
from medrepro.io.tables import read_text_csv
from medrepro.metrics.landmarks import pooled_rmse, radial_errors
from medrepro.preprocessing.geometry import Grid, index_to_mm
from medrepro.tasks.base import TaskItems

__all__ = ["CephalometryTask", "TASK", "decode_to_voxels"]


def decode_to_voxels(
    output: np.ndarray, meta: dict[str, Any], spatial_shape: Sequence[int]
) -> np.ndarray:
    """Raw network output -> landmark positions ``(N, K, 3)`` in input voxels ``(x, y, z)``.

    Args:
        output: ``(N, 3K)`` normalised coordinates or ``(N, K, X', Y', Z')`` heatmaps.
        meta: the model bundle's metadata (``output_kind``, ``extra["heatmap_stride"]``).
        spatial_shape: ``(X, Y, Z)`` of the network input, voxels.
    """
    kind = meta["output_kind"]
    if kind == "coordinates":
        from medrepro.nets.vgg_regressor import decode_coordinates

        return np.asarray(decode_coordinates(np.asarray(output), spatial_shape), dtype=np.float64)
    if kind == "heatmaps":
        from medrepro.transforms.heatmaps import decode_heatmaps

        stride = int(meta.get("extra", {}).get("heatmap_stride", 1))
        return np.asarray(decode_heatmaps(np.asarray(output), stride=stride), dtype=np.float64)
    raise ValueError(f"unknown output kind {kind!r}")


class CephalometryTask:
    """The :class:`~medrepro.tasks.base.Task` of paper 000; metric: minus the pooled RMSE in mm."""

    name = "cephalometry"
    metric_name = "-pooled RMSE"
    metric_unit = "mm"

    def load_items(self, dataset: Path, splits: Path, split: str) -> TaskItems:
        """Items of ``split`` from ``dataset.npz`` (layout: docs/architecture.md)."""
        try:
            data = np.load(dataset, allow_pickle=False)
            case_id = [str(c) for c in data["case_id"]]
            index = split_indices(case_id, read_text_csv(splits), split, source=splits)
            images = data["images"][index].astype(np.float32)
            extra = {
                key: data[key][index]
                for key in (
                    "landmarks_vox",
                    "landmarks_mm",
                    "origin",
                    "spacing",
                    "direction",
                    "patient_id",
                )
            }
            extra["labels"] = [str(label) for label in data["labels"]]
        except (OSError, KeyError, ValueError) as err:
            raise InputError(dataset, f"not a cephalometry dataset.npz ({err})") from err
        return TaskItems(inputs=images[:, None], case_id=[case_id[i] for i in index], extra=extra)

    def predict_mm(
        self,
        outputs: Sequence[np.ndarray],
        items: TaskItems,
        index: Sequence[int],
        meta: dict[str, Any],
    ) -> np.ndarray:
        """Landmarks ``(n, K, 3)`` in LPS mm for the items at ``index`` from their raw outputs."""
        spatial = items.inputs.shape[2:]
        result = []
        for out, i in zip(outputs, index, strict=True):
            vox = decode_to_voxels(np.asarray(out), meta, spatial)[0]
            grid = Grid(
                *(items.extra[k][i] for k in ("origin", "spacing", "direction")), size=spatial
            )
            result.append(index_to_mm(grid, vox))
        return np.stack(result)

    def validate(
        self,
        outputs: Sequence[np.ndarray],
        items: TaskItems,
        index: Sequence[int],
        meta: dict[str, Any],
    ) -> tuple[float, list[float]]:
        """``(-pooled RMSE, -per-case RMS error)`` in mm; higher is better."""
        index = list(index)
        pred = self.predict_mm(outputs, items, index, meta)
        errors = radial_errors(pred, items.extra["landmarks_mm"][index])
        per_item = (-np.sqrt(np.mean(errors**2, axis=1))).tolist()
        return -float(pooled_rmse(errors)), per_item


TASK = CephalometryTask()
