"""Stage ``ceph-preprocess``: a cephalometry cohort -> ``dataset.npz``.

Per case (Vasiliev et al., GraphiCon 2020, section 000 of the reference notes): read the CT (HU),
reorient it to LPS, resample it onto the network grid (128 x 128 x 64 voxels of
1.25 x 1.25 x 1.55 mm, identity direction, centred at the image's physical centre, padded with
-1000 HU, anti-aliased), clip to the HU window and z-score the whole volume. Landmarks stay the
same physical points (LPS mm); their continuous voxel indices on the network grid are stored
beside them, so predictions map back to millimetres through the stored grid.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medrepro.io.atomic import write_npz
from medrepro.io.errors import InputError
from medrepro.io.images import image_to_array, read_image
from medrepro.io.markups import read_markups
from medrepro.io.tables import read_text_csv, require_columns
from medrepro.preprocessing.geometry import Grid, centre_mm, mm_to_index
from medrepro.preprocessing.intensity import clip_window, zscore
from medrepro.preprocessing.orientation import reorient
from medrepro.preprocessing.resampling import resample_to_grid

__all__ = [
    "DEFAULT_LABELS",
    "DEFAULT_SPACING",
    "DEFAULT_SHAPE",
    "DEFAULT_HU_WINDOW",
    "CASE_COLUMNS",
    "preprocess_case",
    "read_cases",
    "build_dataset",
    "main",
]

DEFAULT_LABELS: tuple[str, ...] = ("Or-L", "Or-R", "Po-L", "Po-R")
#: network grid of the paper: voxel size (mm) and shape (voxels), (x, y, z) = (L, P, S)
DEFAULT_SPACING: tuple[float, float, float] = (1.25, 1.25, 1.55)
DEFAULT_SHAPE: tuple[int, int, int] = (128, 128, 64)
#: [reconstructed] HU window applied before the z-score
DEFAULT_HU_WINDOW: tuple[float, float] = (-1000.0, 2000.0)
#: columns of ``cases.csv`` this stage needs
CASE_COLUMNS: tuple[str, ...] = ("case_id", "patient_id", "image", "landmarks")


def preprocess_case(
    image_path: str | Path,
    markups_path: str | Path,
    *,
    labels: Sequence[str],
    spacing: Sequence[float],
    shape: Sequence[int],
    hu_window: tuple[float, float],
) -> dict[str, np.ndarray]:
    """Preprocess one CT and its landmarks onto the network grid.

    Args:
        image_path: CT volume in HU (any format SimpleITK reads, any orientation).
        markups_path: 3D Slicer ``.mrk.json`` with the landmarks ``labels`` (LPS mm).
        labels: landmark names, in output order.
        spacing: ``(3,)`` network voxel size in mm along LPS ``(x, y, z)``.
        shape: ``(3,)`` network grid size in voxels ``(X, Y, Z)``.
        hu_window: ``(low, high)`` HU clipping window.

    Returns:
        ``image`` float32 ``(X, Y, Z)`` (z-scored); ``landmarks_vox`` float64 ``(K, 3)``
        continuous indices on the network grid; ``landmarks_mm`` float64 ``(K, 3)`` LPS mm;
        ``origin (3,)``, ``spacing (3,)`` and ``direction (3, 3)`` of the network grid.

    Raises:
        InputError: unreadable or invalid image or markups, or a landmark outside the grid
            (naming the markups file).
    """
    if len(labels) == 0:
        raise ValueError("labels must not be empty")
    img = reorient(read_image(image_path), "LPS")
    points = read_markups(markups_path, list(labels))
    landmarks_mm = np.stack([np.asarray(points[label], dtype=np.float64) for label in labels])

    out = resample_to_grid(
        img,
        spacing=spacing,
        size=shape,
        centre_mm=centre_mm(Grid.of(img)),
        direction=np.eye(3),
        default_value=-1000.0,
    )
    grid = Grid.of(out)
    landmarks_vox = mm_to_index(grid, landmarks_mm)
    outside = np.any((landmarks_vox < -0.5) | (landmarks_vox > grid.size - 0.5), axis=1)
    if np.any(outside):
        names = ", ".join(
            f"{label} at {np.round(landmarks_mm[k], 2).tolist()} mm (index {np.round(landmarks_vox[k], 2).tolist()})"
            for k, label in enumerate(labels)
            if outside[k]
        )
        raise InputError(
            markups_path,
            f"landmark outside the network grid of {grid.size.tolist()} voxels: {names}",
        )

    image = zscore(clip_window(image_to_array(out), *hu_window))
    return {
        "image": image,
        "landmarks_vox": landmarks_vox,
        "landmarks_mm": landmarks_mm,
        "origin": grid.origin,
        "spacing": grid.spacing,
        "direction": grid.direction,
    }


def read_cases(cases_csv: str | Path) -> pd.DataFrame:
    """Read ``cases.csv`` and resolve the ``image`` and ``landmarks`` paths.

    Args:
        cases_csv: table with columns ``case_id, patient_id, image, landmarks`` (paths relative
            to the table's directory, or absolute).

    Returns:
        The table (every column str) with ``image`` and ``landmarks`` made absolute.

    Raises:
        InputError: naming ``cases_csv`` if it is missing, unreadable, empty, lacks a column, has
            duplicate ``case_id`` or lists files that do not exist.
    """
    cases_csv = Path(cases_csv)
    cases = read_text_csv(cases_csv)
    require_columns(cases, CASE_COLUMNS, cases_csv)
    if cases.empty:
        raise InputError(cases_csv, "no cases listed")
    duplicated = cases["case_id"][cases["case_id"].duplicated()].unique().tolist()
    if duplicated:
        raise InputError(cases_csv, f"duplicate case_id {duplicated}")
    base = cases_csv.parent
    for column in ("image", "landmarks"):
        cases[column] = [str(base / p) if p else "" for p in cases[column]]
        absent = [
            f"{cid}: {p or '(empty)'}"
            for cid, p in zip(cases["case_id"], cases[column], strict=True)
            if not (p and Path(p).is_file())
        ]
        if absent:
            raise InputError(cases_csv, f"{column} file(s) not found: {'; '.join(absent)}")
    return cases


def build_dataset(
    cases_csv: str | Path,
    out_npz: str | Path,
    *,
    labels: Sequence[str],
    spacing: Sequence[float],
    shape: Sequence[int],
    hu_window: tuple[float, float],
) -> None:
    """Preprocess every case of ``cases_csv`` and write ``dataset.npz`` atomically.

    Layout (``docs/architecture.md``): ``images`` float32 ``(N, X, Y, Z)``; ``landmarks_vox`` and
    ``landmarks_mm`` float64 ``(N, K, 3)``; ``origin (N, 3)``, ``spacing (N, 3)``,
    ``direction (N, 3, 3)`` of the network grid; ``case_id``, ``patient_id`` ``(N,)`` and
    ``labels (K,)`` str. Nothing is written if any case fails.

    Args:
        cases_csv: cohort table (see :func:`read_cases`).
        out_npz: output path (written as-is, even without a ``.npz`` suffix).
        labels, spacing, shape, hu_window: see :func:`preprocess_case`.

    Raises:
        InputError: bad table, missing file, invalid image or markups.
    """
    cases = read_cases(cases_csv)
    records: list[dict[str, np.ndarray]] = []
    n = len(cases)
    for i, row in enumerate(cases.itertuples(index=False), start=1):
        print(f"[{i}/{n}] {row.case_id}", file=sys.stderr, flush=True)
        records.append(
            preprocess_case(
                row.image,
                row.landmarks,
                labels=labels,
                spacing=spacing,
                shape=shape,
                hu_window=hu_window,
            )
        )

    arrays: dict[str, Any] = {
        "images": np.stack([r["image"] for r in records]).astype(np.float32),
        "landmarks_vox": np.stack([r["landmarks_vox"] for r in records]).astype(np.float64),
        "landmarks_mm": np.stack([r["landmarks_mm"] for r in records]).astype(np.float64),
        "origin": np.stack([r["origin"] for r in records]).astype(np.float64),
        "spacing": np.stack([r["spacing"] for r in records]).astype(np.float64),
        "direction": np.stack([r["direction"] for r in records]).astype(np.float64),
        "case_id": np.array(cases["case_id"].tolist(), dtype=str),
        "patient_id": np.array(cases["patient_id"].tolist(), dtype=str),
        "labels": np.array(list(labels), dtype=str),
    }
    write_npz(out_npz, **arrays)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro ceph-preprocess", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--cases", type=Path, required=True, help="cases.csv of the cohort")
    parser.add_argument("--out", type=Path, required=True, help="output dataset.npz")
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        default=DEFAULT_SPACING,
        metavar="MM",
        help="network voxel size (mm), x y z",
    )
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=DEFAULT_SHAPE,
        metavar="N",
        help="network grid size (voxels), X Y Z",
    )
    parser.add_argument(
        "--hu-window",
        type=float,
        nargs=2,
        default=DEFAULT_HU_WINDOW,
        metavar="HU",
        help="HU clipping window: low high",
    )
    parser.add_argument(
        "--labels", nargs="+", default=list(DEFAULT_LABELS), help="landmark names, in output order"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m medrepro ceph-preprocess --cases CSV --out NPZ [...]``."""
    args = _parser().parse_args(argv)
    build_dataset(
        args.cases,
        args.out,
        labels=args.labels,
        spacing=tuple(args.spacing),
        shape=tuple(args.shape),
        hu_window=(args.hu_window[0], args.hu_window[1]),
    )
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
