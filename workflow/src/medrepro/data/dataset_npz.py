"""Reading a task's ``dataset.npz`` with errors that name the file."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medrepro.io.errors import InputError

__all__ = ["read_dataset_arrays"]


def read_dataset_arrays(dataset: Path, keys: Sequence[str], task: str) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of the ``dataset.npz`` of ``task`` (e.g. ``"brain_extraction"``).

    Raises:
        InputError: naming ``dataset``: the file is missing, unreadable or lacks one of ``keys``.
    """
    dataset = Path(dataset)
    if not dataset.is_file():
        raise InputError(dataset, "file not found")
    try:
        with np.load(dataset, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise InputError(dataset, f"not a {task} dataset.npz: missing {missing}")
            return {k: data[k] for k in keys}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise InputError(dataset, f"unreadable npz ({err})") from err
