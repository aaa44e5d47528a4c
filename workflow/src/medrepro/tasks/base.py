"""The task interface used by the shared stages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["Task", "TaskItems"]


@dataclass
class TaskItems:
    """The items of one split.

    Attributes:
        inputs: network inputs, float32 ``(N, C, *spatial)``.
        case_id: one identifier per item.
        extra: whatever the task needs to score outputs (targets, grids, ...).
    """

    inputs: np.ndarray
    case_id: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.inputs)


class Task(Protocol):
    """What the shared stages need to know of a paper."""

    name: str
    #: name and unit of the validation metric (higher is better), e.g. ``"-RMSE", "mm"``
    metric_name: str
    metric_unit: str

    def load_items(self, dataset: Path, splits: Path, split: str) -> TaskItems:
        """Read the items of ``split`` (``train``, ``val`` or ``test``)."""
        ...

    def validate(
        self,
        outputs: Sequence[np.ndarray],
        items: TaskItems,
        index: Sequence[int],
        meta: dict[str, Any],
    ) -> tuple[float, list[float]]:
        """Score raw network outputs.

        Args:
            outputs: one raw output array per item, each with a batch axis of 1, in the order of
                ``index``.
            items: the split the outputs belong to.
            index: positions in ``items`` of the scored items.
            meta: the model bundle's metadata (``output_kind``, ``extra``...).

        Returns:
            ``(metric, per_item)``: the dataset-level metric and one value per item; higher is
            better for both (NNCF's contract for ``validation_fn``).
        """
        ...
