"""The preprocessed study container of the ``lowres`` target (``docs/lowres.md``).

One directory per dataset holds ``studies.npz`` (one image and one binary mask per study, of
varying shapes, axis order ``(z, y, x)``), ``studies.csv`` (one row per input study, excluded ones
included) and ``objects.csv`` (one row per ground-truth object).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medrepro.io.atomic import atomic_dir, write_csv
from medrepro.io.errors import InputError

__all__ = [
    "OBJECT_COLUMNS",
    "SPLITS",
    "STUDY_COLUMNS",
    "Study",
    "read_objects",
    "read_studies",
    "read_study_arrays",
    "studies_of_split",
    "write_studies",
]

SPLITS = ("train", "val", "test")

STUDY_COLUMNS = [
    "study_id", "split", "group",
    "shape_z", "shape_y", "shape_x",
    "spacing_z", "spacing_y", "spacing_x",
    "n_objects", "excluded", "reason",
]  # fmt: skip

OBJECT_COLUMNS = [
    "study_id", "split", "object", "diameter_mm", "volume_mm3", "kind",
    "center_z", "center_y", "center_x", "inside_mask",
]  # fmt: skip


@dataclass(frozen=True)
class Study:
    """One preprocessed study.

    Attributes:
        study_id: series UID or subject id (no ``/``).
        image: float ``(z, y, x)`` intensities scaled to [0, 1] (stored as float16).
        mask: ``(z, y, x)`` binary ground truth (union of the objects), same shape.
        spacing: ``(z, y, x)`` voxel size in mm.
    """

    study_id: str
    image: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float, float]


def _check_study(study: Study) -> None:
    if "/" in study.study_id or not study.study_id:
        raise ValueError(f"study id {study.study_id!r} must be non-empty and contain no '/'")
    if study.image.ndim != 3 or study.image.shape != study.mask.shape:
        raise ValueError(
            f"{study.study_id}: image {study.image.shape} and mask {study.mask.shape} must be "
            "equal 3D shapes"
        )


def write_studies(
    out_dir: str | Path,
    studies: Sequence[Study],
    table: pd.DataFrame,
    objects: pd.DataFrame,
) -> None:
    """Write ``studies.npz``, ``studies.csv`` and ``objects.csv`` into ``out_dir`` atomically.

    Args:
        out_dir: the dataset's ``preprocessed`` directory (replaced as a whole).
        studies: the studies kept (not excluded); every one must have a row in ``table``.
        table: one row per input study with :data:`STUDY_COLUMNS`.
        objects: one row per ground-truth object with :data:`OBJECT_COLUMNS`.
    """
    for name, frame, columns in (
        ("studies.csv", table, STUDY_COLUMNS),
        ("objects.csv", objects, OBJECT_COLUMNS),
    ):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{name}: missing columns {missing}")
    kept = set(table.loc[~table["excluded"].astype(bool), "study_id"].astype(str))
    ids = [s.study_id for s in studies]
    if set(ids) != kept or len(ids) != len(kept):
        raise ValueError("the studies written must be exactly the table's non-excluded rows")
    arrays: dict[str, np.ndarray] = {}
    for study in studies:
        _check_study(study)
        arrays[f"image/{study.study_id}"] = np.asarray(study.image, dtype=np.float16)
        arrays[f"mask/{study.study_id}"] = (np.asarray(study.mask) > 0).astype(np.uint8)
    with atomic_dir(out_dir) as tmp:
        with open(tmp / "studies.npz", "wb") as handle:
            np.savez_compressed(handle, **arrays)
        write_csv(table[STUDY_COLUMNS], tmp / "studies.csv", index=False)
        write_csv(objects[OBJECT_COLUMNS], tmp / "objects.csv", index=False)


def read_studies(path: str | Path) -> pd.DataFrame:
    """``studies.csv`` as a table (``study_id`` and ``group`` as strings, ``excluded`` as bool).

    Raises:
        InputError: naming ``path``: missing, or lacking a column of :data:`STUDY_COLUMNS`.
    """
    return _read_table(path, STUDY_COLUMNS, {"study_id": str, "group": str, "reason": str})


def read_objects(path: str | Path) -> pd.DataFrame:
    """``objects.csv`` as a table (``study_id`` as string)."""
    return _read_table(path, OBJECT_COLUMNS, {"study_id": str, "kind": str})


def _read_table(
    path: str | Path, columns: Sequence[str], dtypes: Mapping[str, type]
) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        frame = pd.read_csv(path, dtype=dict(dtypes), keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(path, f"unreadable table ({err})") from err
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(path, f"missing columns {missing}")
    if "excluded" in frame.columns:
        frame["excluded"] = frame["excluded"].astype(str).str.lower().isin(["true", "1"])
    return frame


def studies_of_split(table: pd.DataFrame, split: str) -> list[str]:
    """Ids of the kept (not excluded) studies of ``split``, in table order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rows = table[(table["split"] == split) & ~table["excluded"]]
    return rows["study_id"].astype(str).tolist()


def read_study_arrays(
    path: str | Path,
    study_ids: Sequence[str],
    with_mask: bool = True,
    with_image: bool = True,
    dtype: type = np.float32,
) -> dict[str, tuple[np.ndarray | None, np.ndarray | None]]:
    """Images (as ``dtype``) and masks (uint8) of ``study_ids`` from ``studies.npz``.

    Returns:
        ``{study_id: (image, mask)}``, ``(z, y, x)`` arrays; ``image`` is None unless
        ``with_image`` and ``mask`` None unless ``with_mask`` (what is not asked for is not
        decompressed).

    Raises:
        InputError: naming ``path``: missing, unreadable, or lacking one of the studies.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    out: dict[str, tuple[np.ndarray | None, np.ndarray | None]] = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
            for sid in study_ids:
                if f"image/{sid}" not in files or f"mask/{sid}" not in files:
                    raise InputError(path, f"study {sid!r} is not in the container")
                image = data[f"image/{sid}"].astype(dtype) if with_image else None
                mask = data[f"mask/{sid}"].astype(np.uint8) if with_mask else None
                out[sid] = (image, mask)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise InputError(path, f"unreadable npz ({err})") from err
    return out
