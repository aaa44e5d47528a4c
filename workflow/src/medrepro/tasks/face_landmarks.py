"""Face landmarks task (Fu et al. 2020, paper 002): decode heatmaps, score by the mean error.

The landmark networks predict K heatmaps at stride 4 of the ``S x S`` network input; decoding
(:func:`medrepro.transforms.heatmaps.decode_heatmaps_2d`) gives ``(x, y)`` in input pixels, where
the paper's un-normalised mean error (ME) is measured. The face data have ``train`` and ``test``
splits only: the deployment rule quantizes with ``--calibration-split train
--validation-split train``. A split may carry a size, ``train@64``: its first 64 items (train rows
in ``budget_rank`` order, a seeded random order; test rows in dataset order), to bound the memory
and time of NNCF's accuracy-control validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medrepro.data.select_inputs import split_indices
from medrepro.io.errors import InputError
from medrepro.io.tables import read_text_csv, require_columns
from medrepro.preprocessing.face_dataset import network_input
from medrepro.tasks.base import TaskItems

__all__ = [
    "FaceLandmarksTask",
    "TASK",
    "SPLITS",
    "parse_split",
    "split_positions",
    "heatmap_stride",
    "decode_outputs",
]

#: the splits of ``splits.csv`` (no ``val``: the face data are split 80/20 as in the paper)
SPLITS = ("train", "test")

_DATASET_KEYS = ("images", "landmarks", "visible", "case_id", "scale", "landmark_names")


def heatmap_stride(meta: dict[str, Any]) -> int:
    """Heatmap stride (input pixels per heatmap pixel) of a bundle's metadata; default 4."""
    return int((meta.get("extra") or {}).get("heatmap_stride", 4))


def parse_split(split: str, source: Path) -> tuple[str, int | None]:
    """``"train"`` -> ``("train", None)``; ``"train@64"`` -> ``("train", 64)``."""
    name, _, size = str(split).partition("@")
    if not size:
        return name, None
    if not size.isdigit() or int(size) < 1:
        raise InputError(source, f"split {split!r}: the size after '@' must be an integer >= 1")
    return name, int(size)


def split_positions(
    case_id: Sequence[str], table: pd.DataFrame, split: str, source: Path
) -> np.ndarray:
    """Dataset positions of ``split`` (``train``, ``test``, or ``name@N``: the first N of it).

    Raises:
        InputError: naming ``source`` for an unknown or empty split (there is no ``val``).
    """
    name, size = parse_split(split, source)
    present = sorted(set(table["split"]))
    if name not in SPLITS or name not in present:
        raise InputError(
            source,
            f"face_landmarks has no split {name!r} (this file has {present}); there is no "
            "'val': quantize with --calibration-split train --validation-split train",
        )
    index = split_indices(case_id, table, name, source=source)
    if size is None:
        return index
    if name == "train" and "budget_rank" in table.columns:
        rank = dict(
            zip(table["case_id"].astype(str), table["budget_rank"].astype(int), strict=True)
        )
        index = np.asarray(sorted(index, key=lambda i: rank[str(case_id[i])]), dtype=np.int64)
    return np.sort(index[:size])


def decode_outputs(outputs: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Heatmaps ``(N, K, h, w)`` -> landmarks ``(N, K, 2)`` (x, y) in input pixels (float64)."""
    from medrepro.transforms.heatmaps import decode_heatmaps_2d

    hm = np.asarray(outputs, dtype=np.float32)
    if hm.ndim != 4:
        raise ValueError(f"expected heatmaps (N, K, h, w), got {hm.shape}")
    return np.asarray(decode_heatmaps_2d(hm, stride=heatmap_stride(meta)), dtype=np.float64)


class FaceLandmarksTask:
    """The :class:`~medrepro.tasks.base.Task` of paper 002; metric: minus the ME in pixels."""

    name = "face_landmarks"
    metric_name = "-ME"
    metric_unit = "px"

    def load_items(self, dataset: Path, splits: Path, split: str) -> TaskItems:
        """Items of ``split`` (``train``, ``test``, or ``name@N``) of a face ``dataset.npz``.

        ``inputs`` are :func:`~medrepro.preprocessing.face_dataset.network_input` of the images;
        ``extra`` holds ``landmarks (n, K, 2)``, ``visible (n, K)``, ``scale (n,)`` and
        ``landmark_names`` (K,).
        """
        table = read_text_csv(splits)
        require_columns(table, ("case_id", "split"), splits)
        parse_split(split, splits)  # a bad split name fails before the dataset is read
        try:
            with np.load(dataset, allow_pickle=False) as data:
                missing = [k for k in _DATASET_KEYS if k not in data.files]
                if missing:
                    raise InputError(dataset, f"not a face dataset.npz: missing {missing}")
                arrays = {k: data[k] for k in _DATASET_KEYS}
        except (OSError, ValueError) as err:
            raise InputError(dataset, f"unreadable dataset.npz ({err})") from err
        case_id = [str(c) for c in arrays["case_id"]]
        index = split_positions(case_id, table, split, splits)
        extra = {
            "landmarks": arrays["landmarks"][index].astype(np.float64),
            "visible": arrays["visible"][index].astype(bool),
            "scale": arrays["scale"][index].astype(np.float64),
            "landmark_names": [str(n) for n in arrays["landmark_names"]],
        }
        return TaskItems(
            inputs=network_input(arrays["images"][index]),
            case_id=[case_id[i] for i in index],
            extra=extra,
        )

    def validate(
        self,
        outputs: Sequence[np.ndarray],
        items: TaskItems,
        index: Sequence[int],
        meta: dict[str, Any],
    ) -> tuple[float, list[float]]:
        """``(-ME, [-per-image mean error])`` in input pixels; higher is better."""
        from medrepro.metrics.ced import image_errors

        index = list(index)
        if not index:
            raise ValueError("no items to score")
        pred = decode_outputs(np.concatenate([np.asarray(o) for o in outputs], axis=0), meta)
        errors = np.asarray(image_errors(pred, items.extra["landmarks"][index]), dtype=np.float64)
        return -float(np.mean(errors)), (-errors).tolist()


TASK = FaceLandmarksTask()
