"""Brain extraction task (BrainMaGe, Thakur et al. 2022): read the dataset, score probability maps.

Every (subject, modality) pair is one item (BrainMaGe is modality-agnostic). The network outputs
sigmoid brain probabilities ``(N, 1, X, Y, Z)`` on the network grid.

Validation metric: the mean Dice of ``probability >= 0.5`` against the dataset's masks, **at
network resolution**. This is what training (model selection) and NNCF's accuracy-controlled
quantization compare: it needs only the arrays of ``dataset.npz``, is cheap, and ranks models
the way the final metric does. The paper's metric (native-space Dice and HD95 after BrainMaGe's
post-processing at threshold 0.9) needs each subject's registration transform and native grid,
and is computed by the ``brain-evaluate`` stage
(:mod:`medrepro.tasks.brain_extraction_evaluate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medrepro.data.dataset_npz import read_dataset_arrays
from medrepro.data.select_inputs import split_indices
from medrepro.io.errors import InputError
from medrepro.io.tables import read_text_csv
from medrepro.metrics.segmentation import dice
from medrepro.tasks.base import TaskItems

__all__ = ["BrainExtractionTask", "TASK", "VALIDATION_THRESHOLD", "output_to_mask"]

#: probability threshold of the network-resolution validation metric
VALIDATION_THRESHOLD = 0.5

_KEYS = ("images", "masks", "case_id", "patient_id", "modality")


def output_to_mask(
    output: np.ndarray, spatial_shape: Sequence[int], t: float = VALIDATION_THRESHOLD
) -> np.ndarray:
    """One item's raw output ``(1, 1, X, Y, Z)`` (or ``(X, Y, Z)``) -> boolean ``(X, Y, Z)`` mask.

    Raises:
        ValueError: the output does not hold exactly one ``spatial_shape`` volume.
    """
    out = np.asarray(output)
    shape = tuple(int(s) for s in spatial_shape)
    if out.size != int(np.prod(shape)) or out.shape[-3:] != shape:
        raise ValueError(f"expected one probability volume of shape {shape}, got {out.shape}")
    return out.reshape(shape) >= t


def _load(dataset: Path) -> dict[str, np.ndarray]:
    """The arrays of a brain ``dataset.npz``, validated (InputError naming the file)."""
    arrays = read_dataset_arrays(dataset, _KEYS, "brain_extraction")
    images, masks = arrays["images"], arrays["masks"]
    n = len(images)
    if images.ndim != 4 or masks.shape != images.shape:
        raise InputError(
            dataset,
            f"'images' must be (N, X, Y, Z) and 'masks' the same shape, "
            f"got {images.shape} and {masks.shape}",
        )
    for key in ("case_id", "patient_id", "modality"):
        if arrays[key].shape != (n,):
            raise InputError(dataset, f"'{key}' must have shape ({n},), got {arrays[key].shape}")
    if not np.issubdtype(images.dtype, np.floating) or not np.isfinite(images).all():
        raise InputError(dataset, "'images' must be finite floating-point values")
    if not np.isin(masks, (0, 1)).all():
        raise InputError(dataset, "'masks' must hold only 0 and 1")
    return arrays


class BrainExtractionTask:
    """The :class:`~medrepro.tasks.base.Task` of paper 001; metric: mean Dice (network grid)."""

    name = "brain_extraction"
    metric_name = "Dice"
    metric_unit = ""

    def load_items(self, dataset: Path, splits: Path, split: str) -> TaskItems:
        """Items of ``split`` from ``dataset.npz`` (layout: docs/brain_extraction.md).

        Returns:
            ``inputs`` float32 ``(N, 1, X, Y, Z)``, ``case_id`` (``<sid>_<mod>``) and ``extra``
            with ``masks`` uint8 ``(N, X, Y, Z)``, ``patient_id`` and ``modality`` (lists of str).
        """
        arrays = _load(Path(dataset))
        case_id = [str(c) for c in arrays["case_id"]]
        index = split_indices(case_id, read_text_csv(splits), split, source=splits)
        inputs = np.ascontiguousarray(arrays["images"][index][:, None], dtype=np.float32)
        extra: dict[str, Any] = {
            "masks": np.ascontiguousarray(arrays["masks"][index], dtype=np.uint8),
            "patient_id": [str(arrays["patient_id"][i]) for i in index],
            "modality": [str(arrays["modality"][i]) for i in index],
        }
        return TaskItems(inputs=inputs, case_id=[case_id[i] for i in index], extra=extra)

    def validate(
        self,
        outputs: Sequence[np.ndarray],
        items: TaskItems,
        index: Sequence[int],
        meta: dict[str, Any],
    ) -> tuple[float, list[float]]:
        """``(mean Dice, per-item Dice)`` of ``output >= 0.5`` vs the masks, network grid.

        ``meta`` is not used: the output is a probability map for every model of this task.
        """
        masks = items.extra["masks"]
        spatial = masks.shape[1:]
        per_item = [
            dice(output_to_mask(out, spatial), masks[i])
            for out, i in zip(outputs, list(index), strict=True)
        ]
        if not per_item:
            raise ValueError("no outputs to score")
        return float(np.mean(per_item)), per_item


TASK = BrainExtractionTask()
