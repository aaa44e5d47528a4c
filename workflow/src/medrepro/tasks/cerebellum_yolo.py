"""Cerebellum localisation task (Ramos et al. 2020, paper 004): read the dataset, score YOLO outputs.

Every image of ``dataset.npz`` (``docs/cerebellum_yolo.md``) is one item. The network returns
raw YOLOv1 outputs ``(N, S, S, 5B + C)``; the prediction of an image is the top-confidence box
of the whole grid (:func:`medrepro.transforms.yolo_grid.decode_top_box`).

Validation metric: the paper's "AP", the mean IoU of the top box with the annotated box over the
annotated images, an image whose top box is below the confidence threshold counting 0
(:func:`medrepro.metrics.detection.detection_scores`). The threshold is the bundle's
``extra["conf_threshold"]`` (written by ``yolo-train``), else :data:`DEFAULT_CONF_THRESHOLD`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medrepro.data.dataset_npz import read_dataset_arrays
from medrepro.data.select_inputs import split_indices, to_network_inputs
from medrepro.io.errors import InputError
from medrepro.io.tables import read_text_csv
from medrepro.metrics.detection import detection_scores, iou
from medrepro.tasks.base import TaskItems
from medrepro.transforms.yolo_grid import decode_top_box

__all__ = [
    "DEFAULT_CONF_THRESHOLD",
    "DetectionData",
    "CerebellumYoloTask",
    "TASK",
    "load_detection_dataset",
    "load_detection_split",
    "grid_shape",
    "outputs_to_raw",
    "per_item_scores",
]

#: confidence threshold of a detection when the bundle does not say (config default)
DEFAULT_CONF_THRESHOLD = 0.25

_KEYS = ("images", "boxes", "has_object", "image_id", "volume_id")


@dataclass
class DetectionData:
    """Images and annotations of a ``dataset.npz`` (or one split of it), in dataset order.

    Attributes:
        images: uint8 ``(N, H, W, 3)`` viridis RGB.
        boxes: float32 ``(N, 4)`` normalised ``(cx, cy, w, h)``; NaN rows for images without
            an object.
        has_object: bool ``(N,)``.
        image_id: ``N`` image ids (= ``case_id`` of ``splits.csv``).
        volume_id: ``N`` volume (patient) ids.
    """

    images: np.ndarray
    boxes: np.ndarray
    has_object: np.ndarray
    image_id: list[str]
    volume_id: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: Sequence[int] | np.ndarray) -> DetectionData:
        """The items at positions ``index``, in that order."""
        index = np.asarray(index, dtype=int)
        return DetectionData(
            images=self.images[index],
            boxes=self.boxes[index],
            has_object=self.has_object[index],
            image_id=[self.image_id[i] for i in index],
            volume_id=[self.volume_id[i] for i in index],
        )


def load_detection_dataset(dataset: Path) -> DetectionData:
    """Read and validate a cerebellum ``dataset.npz``.

    Raises:
        InputError: naming ``dataset``: missing or unreadable file, missing arrays, images not
            uint8 ``(N, H, W, 3)``, boxes not ``(N, 4)``, boxes that disagree with
            ``has_object`` (NaN rows exactly for the images without object) or lie outside
            the image (centre outside ``[0, 1]``, ``w, h`` not in ``(0, 1]``).
    """
    arrays = read_dataset_arrays(dataset, _KEYS, "cerebellum_yolo")
    images, boxes, has = arrays["images"], arrays["boxes"], arrays["has_object"]
    n = len(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise InputError(
            dataset, f"'images' must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}"
        )
    if boxes.shape != (n, 4):
        raise InputError(dataset, f"'boxes' must have shape ({n}, 4), got {boxes.shape}")
    for key in ("has_object", "image_id", "volume_id"):
        if arrays[key].shape != (n,):
            raise InputError(dataset, f"'{key}' must have shape ({n},), got {arrays[key].shape}")
    boxes = boxes.astype(np.float32)
    has = has.astype(bool)
    nan_rows = np.isnan(boxes).any(axis=1)
    if np.any(nan_rows == has):
        bad = [str(arrays["image_id"][i]) for i in np.flatnonzero(nan_rows == has)[:5]]
        raise InputError(dataset, f"'boxes' NaN rows must be exactly the empty images: {bad}")
    valid = boxes[has]
    if valid.size and not (
        np.all((valid[:, :2] >= 0) & (valid[:, :2] <= 1))
        and np.all((valid[:, 2:] > 0) & (valid[:, 2:] <= 1))
    ):
        raise InputError(dataset, "'boxes' must be normalised: cx, cy in [0, 1], w, h in (0, 1]")
    return DetectionData(
        images=images,
        boxes=boxes,
        has_object=has,
        image_id=[str(s) for s in arrays["image_id"]],
        volume_id=[str(s) for s in arrays["volume_id"]],
    )


def load_detection_split(dataset: Path, splits: Path, split: str) -> DetectionData:
    """The items of ``split`` (``train``, ``val``, ``test``) of ``dataset.npz``, dataset order.

    Raises:
        InputError: as :func:`load_detection_dataset`, or a bad ``splits.csv`` / empty split.
    """
    data = load_detection_dataset(dataset)
    index = split_indices(data.image_id, read_text_csv(splits), split, source=splits)
    return data.subset(index)


def grid_shape(meta: dict[str, Any]) -> tuple[int, int, int]:
    """``(S, B, C)`` of a YOLO bundle's metadata (``extra``).

    Raises:
        ValueError: the bundle is not a YOLO bundle (``extra`` lacks ``S``, ``B`` or ``C``).
    """
    extra = meta.get("extra", {}) or {}
    try:
        return int(extra["S"]), int(extra["B"]), int(extra["C"])
    except KeyError as err:
        raise ValueError(f"not a YOLO bundle: extra lacks {err} (has {sorted(extra)})") from None


def outputs_to_raw(outputs: Sequence[np.ndarray], S: int, B: int, C: int) -> np.ndarray:
    """Per-item raw outputs (each with a batch axis of 1, any layout of ``S*S*(5B+C)`` values)
    -> one float32 array ``(N, S, S, 5B + C)``.

    Raises:
        ValueError: an output of the wrong size.
    """
    depth = 5 * B + C
    raw = []
    for k, out in enumerate(outputs):
        arr = np.asarray(out, dtype=np.float32)
        if arr.size != S * S * depth:
            raise ValueError(
                f"output {k}: expected {S}x{S}x{depth} values (S={S}, B={B}, C={C}), "
                f"got shape {arr.shape}"
            )
        raw.append(arr.reshape(S, S, depth))
    if not raw:
        raise ValueError("no outputs to score")
    return np.stack(raw)


def per_item_scores(
    pred_boxes: np.ndarray,
    pred_conf: np.ndarray,
    gt_boxes: np.ndarray,
    has_object: np.ndarray,
    conf_threshold: float,
) -> np.ndarray:
    """One score per image, higher is better, for NNCF's per-item ranking.

    Annotated image: IoU of the top box with the annotation, whatever its confidence (the AP
    convention of :func:`~medrepro.metrics.detection.detection_scores`). Image without an
    object: 1 if no box reaches ``conf_threshold`` (a correct rejection), else 0.

    Returns:
        float64 ``(N,)``.
    """
    pred_boxes = np.asarray(pred_boxes, dtype=np.float64)
    conf = np.asarray(pred_conf, dtype=np.float64)
    has = np.asarray(has_object, dtype=bool)
    found = conf >= conf_threshold
    gt = np.where(has[:, None], np.asarray(gt_boxes, dtype=np.float64), 0.5)  # no NaN into iou
    overlap = np.asarray(iou(pred_boxes, gt), dtype=np.float64)
    overlap = np.nan_to_num(overlap, nan=0.0)  # no box at all
    return np.where(has, overlap, np.where(found, 0.0, 1.0))


class CerebellumYoloTask:
    """The :class:`~medrepro.tasks.base.Task` of paper 004; metric: the paper's AP (mean IoU)."""

    name = "cerebellum_yolo"
    metric_name = "AP"
    metric_unit = ""

    def load_items(self, dataset: Path, splits: Path, split: str) -> TaskItems:
        """Items of ``split`` from ``dataset.npz``.

        Returns:
            ``inputs`` float32 ``(N, 3, H, W)`` in ``[0, 1]`` (the dataset's resolution),
            ``case_id`` (= ``image_id``) and ``extra`` with ``boxes`` float32 ``(N, 4)``
            (NaN rows when empty), ``has_object`` bool ``(N,)`` and ``volume_id`` (list).
        """
        data = load_detection_split(Path(dataset), Path(splits), split)
        extra: dict[str, Any] = {
            "boxes": data.boxes,
            "has_object": data.has_object,
            "volume_id": data.volume_id,
        }
        return TaskItems(
            inputs=to_network_inputs(data.images), case_id=list(data.image_id), extra=extra
        )

    def validate(
        self,
        outputs: Sequence[np.ndarray],
        items: TaskItems,
        index: Sequence[int],
        meta: dict[str, Any],
    ) -> tuple[float, list[float]]:
        """``(AP, per-item score)`` of raw YOLO outputs against the items' boxes.

        ``meta["extra"]`` gives ``S``, ``B``, ``C`` and optionally ``conf_threshold``. The
        per-item score is the IoU on annotated images (:func:`per_item_scores`). If none of the
        scored items is annotated, AP is undefined and the metric is the mean per-item score.
        """
        S, B, C = grid_shape(meta)
        tau = float((meta.get("extra") or {}).get("conf_threshold", DEFAULT_CONF_THRESHOLD))
        raw = outputs_to_raw(outputs, S, B, C)
        pred_boxes, pred_conf = decode_top_box(raw, B)
        idx = np.asarray(list(index), dtype=int)
        gt = np.asarray(items.extra["boxes"])[idx]
        has = np.asarray(items.extra["has_object"], dtype=bool)[idx]
        per_item = per_item_scores(pred_boxes, pred_conf, gt, has, tau)
        if not has.any():
            return float(per_item.mean()), per_item.tolist()
        scores = detection_scores(pred_boxes, pred_conf, gt, has, conf_threshold=tau)
        return float(scores["ap"]), per_item.tolist()


TASK = CerebellumYoloTask()
