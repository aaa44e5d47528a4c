"""Stage ``yolo-dataset``: cohort + YOLO annotations -> ``dataset.npz``, ``cases.csv``, ``splits.csv``.

Per image (Ramos et al. 2020): the 8-bit gray image is resized bilinearly (Pillow) to the square
network input ``S x S`` and mapped to matplotlib's viridis, giving ``uint8 (S, S, 3)`` RGB; its box
is read from the annotation ``<image_id>.txt`` (normalised ``(cx, cy, w, h)``, so it survives the
resize; several lines are merged into their union box; an empty file gives a NaN row). The
split comes from the annotations' ``boxes.csv`` (``train``/``test``); a seeded ``val_fraction``
of the train images becomes ``val`` (used for quantization validation).

``dataset.npz``: ``images`` uint8 ``(N, S, S, 3)``, ``boxes`` float32 ``(N, 4)``, ``has_object``
bool ``(N,)``, ``image_id (N,)`` and the same as ``case_id (N,)``, ``volume_id (N,)`` str, ``orig_size`` int64 ``(N, 2)`` (H, W) in
the row order of the cohort's ``images.csv``. ``cases.csv``: ``case_id, patient_id`` (image and
volume ids); ``splits.csv``: ``case_id, patient_id, split``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from medrepro.io.atomic import write_csv, write_npz
from medrepro.io.bmp_mat import read_bmp
from medrepro.io.errors import InputError
from medrepro.io.tables import read_text_csv, require_columns
from medrepro.preprocessing.yolo_annotations import read_cohort
from medrepro.transforms.colormap import gray_to_viridis
from medrepro.transforms.yolo_boxes import Box, read_yolo_txt

__all__ = [
    "resize_gray",
    "union_box",
    "read_box",
    "read_split",
    "assign_validation",
    "build_dataset",
    "main",
]


def resize_gray(gray: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of ``uint8 (H, W)`` to ``uint8 (size, size)`` (Pillow, pixel centres)."""
    image = Image.fromarray(np.ascontiguousarray(gray))
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def union_box(boxes: Sequence[Sequence[float]]) -> Box:
    """The normalised ``(cx, cy, w, h)`` box enclosing all ``boxes`` (at least one)."""
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x0 = float(np.min(arr[:, 0] - arr[:, 2] / 2.0))
    x1 = float(np.max(arr[:, 0] + arr[:, 2] / 2.0))
    y0 = float(np.min(arr[:, 1] - arr[:, 3] / 2.0))
    y1 = float(np.max(arr[:, 1] + arr[:, 3] / 2.0))
    return ((x0 + x1) / 2.0, (y0 + y1) / 2.0, x1 - x0, y1 - y0)


def read_box(path: str | Path) -> Box | None:
    """The cerebellum box of an annotation file (union of its lines), None if the file is empty.

    Raises:
        InputError: naming ``path``: missing, malformed, or a class other than 0.
    """
    entries = read_yolo_txt(path)
    classes = sorted({cls for cls, _ in entries})
    if classes and classes != [0]:
        raise InputError(path, f"only class 0 (cerebellum) expected, found classes {classes}")
    return union_box([box for _, box in entries]) if entries else None


def read_split(annotations: str | Path, image_ids: Sequence[str]) -> list[str]:
    """``train``/``test`` per image from ``<annotations>/boxes.csv``.

    Raises:
        InputError: naming ``boxes.csv``: missing column, unknown split, or images missing.
    """
    path = Path(annotations) / "boxes.csv"
    table = read_text_csv(path)
    require_columns(table, ("image_id", "split"), path)
    bad = sorted(set(table["split"]) - {"train", "test"})
    if bad:
        raise InputError(path, f"split must be 'train' or 'test', found {bad}")
    split = dict(zip(table["image_id"], table["split"], strict=True))
    missing = [i for i in image_ids if i not in split]
    if missing:
        raise InputError(path, f"no annotation for {len(missing)} image(s), e.g. {missing[:5]}")
    return [split[i] for i in image_ids]


def assign_validation(
    image_ids: Sequence[str], splits: Sequence[str], fraction: float, seed: int
) -> list[str]:
    """Move ``round(fraction * n_train)`` train images (seeded draw; at least 1 if ``fraction``
    > 0, at most ``n_train - 1``) to ``val``. The draw permutes the sorted train ids."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val fraction must be in [0, 1), got {fraction}")
    train = sorted(i for i, s in zip(image_ids, splits, strict=True) if s == "train")
    n_val = int(round(fraction * len(train)))
    if fraction > 0:
        n_val = max(n_val, 1)
    n_val = min(n_val, max(len(train) - 1, 0))
    val = set(np.random.default_rng(seed).permutation(train)[:n_val].tolist()) if n_val else set()
    return ["val" if i in val else s for i, s in zip(image_ids, splits, strict=True)]


def build_dataset(
    cohort: str | Path,
    annotations: str | Path,
    *,
    input_size: int,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Assemble the arrays of ``dataset.npz`` and the ``cases``/``splits`` tables.

    Raises:
        InputError: a bad cohort table, image, annotation file or ``boxes.csv``.
    """
    table = read_cohort(cohort)
    ids = table["image_id"].tolist()
    splits = assign_validation(ids, read_split(annotations, ids), val_fraction, seed)
    n = len(ids)
    images = np.zeros((n, input_size, input_size, 3), dtype=np.uint8)
    boxes = np.full((n, 4), np.nan, dtype=np.float32)
    orig_size = np.zeros((n, 2), dtype=np.int64)
    for k, row in enumerate(table.itertuples(index=False)):
        gray = read_bmp(Path(cohort) / row.image)
        orig_size[k] = gray.shape
        images[k] = gray_to_viridis(resize_gray(gray, input_size))
        box = read_box(Path(annotations) / f"{row.image_id}.txt")
        if box is not None:
            boxes[k] = box
    arrays = {
        "images": images,
        "boxes": boxes,
        "has_object": ~np.isnan(boxes).any(axis=1),
        "image_id": np.asarray(ids, dtype=str),
        # the shared stages (select-inputs, quantize) address items by case_id
        "case_id": np.asarray(ids, dtype=str),
        "volume_id": table["volume_id"].to_numpy(dtype=str),
        "orig_size": orig_size,
    }
    cases = pd.DataFrame({"case_id": ids, "patient_id": table["volume_id"].tolist()})
    split_table = cases.assign(split=splits)
    return arrays, cases, split_table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro yolo-dataset",
        description="Viridis network inputs, boxes and train/val/test splits for YOLO.",
    )
    parser.add_argument("--cohort", required=True, help="cohort directory with images.csv")
    parser.add_argument("--annotations", required=True, help="yolo-annotate output directory")
    parser.add_argument("--input-size", type=int, required=True, help="square input (pixels)")
    parser.add_argument(
        "--val-fraction", type=float, default=0.1, help="share of train -> val (default: 0.1)"
    )
    parser.add_argument("--seed", type=int, required=True, help="seed of the val draw")
    parser.add_argument("--out-dir", required=True, help="directory for dataset.npz, *.csv")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the stage; return the exit status."""
    args = _parser().parse_args(argv)
    if args.input_size < 8:
        raise SystemExit("error: --input-size must be >= 8")
    if not 0.0 <= args.val_fraction < 1.0:
        raise SystemExit("error: --val-fraction must be in [0, 1)")
    arrays, cases, splits = build_dataset(
        args.cohort,
        args.annotations,
        input_size=args.input_size,
        val_fraction=args.val_fraction,
        seed=args.seed,
    )
    out = Path(args.out_dir)
    write_npz(out / "dataset.npz", **arrays)
    write_csv(cases, out / "cases.csv")
    write_csv(splits, out / "splits.csv")
    counts = splits["split"].value_counts().to_dict()
    print(f"wrote {out}: {len(cases)} images {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
