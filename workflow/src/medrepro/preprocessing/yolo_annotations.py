"""Stage ``yolo-annotate``: cerebellum masks -> darknet YOLO annotations and a train/test split.

Ramos et al. 2020 convert each MATLAB mask to one box (a Python script) and draw 78 random test
images. Per image of the cohort (``images.csv``: ``image_id, volume_id, image, mask``) the
image/mask pair is checked (both exist and are readable, same size); the mask's half-open union
box (:func:`medrepro.transforms.yolo_boxes.mask_to_box`) becomes ``<image_id>.txt`` with one line
``0 cx cy w h`` (an empty file for an empty mask). Also written: ``train.txt`` / ``test.txt``
(absolute image paths, one a line), ``obj.names`` (``cerebellum``), ``obj.data`` and
``boxes.csv`` (``image_id, volume_id, split, n_components, cx, cy, w, h, empty``; box cells
empty when ``empty`` is True). The whole output directory is replaced atomically, and nothing is
written when any input is bad.

Splits: ``random`` draws ``test_count`` images (the paper's protocol; it puts slices of one
volume on both sides), ``volume`` moves whole volumes (a seeded order) to test until at least
``test_count`` images are there.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medrepro.io.atomic import atomic_dir
from medrepro.io.bmp_mat import read_bmp, read_mask_mat
from medrepro.io.errors import InputError
from medrepro.io.tables import read_text_csv, require_columns
from medrepro.transforms.yolo_boxes import Box, mask_to_box, n_components, yolo_line

__all__ = [
    "CLASS_NAMES",
    "COHORT_COLUMNS",
    "BOX_COLUMNS",
    "Annotation",
    "read_cohort",
    "annotate_image",
    "split_random",
    "split_by_volume",
    "write_annotations",
    "main",
]

log = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = ("cerebellum",)
#: columns of the cohort's ``images.csv``
COHORT_COLUMNS: tuple[str, ...] = ("image_id", "volume_id", "image", "mask")
#: columns of ``boxes.csv``
BOX_COLUMNS: tuple[str, ...] = (
    "image_id",
    "volume_id",
    "split",
    "n_components",
    "cx",
    "cy",
    "w",
    "h",
    "empty",
)


@dataclass(frozen=True)
class Annotation:
    """One image's annotation: the mask's union box (None if empty) and its component count."""

    image_id: str
    volume_id: str
    image_path: Path
    box: Box | None
    n_components: int
    size: tuple[int, int]  # (H, W) pixels


def read_cohort(cohort: str | Path) -> pd.DataFrame:
    """Read and check ``<cohort>/images.csv`` (columns, non-empty unique ``image_id``).

    Raises:
        InputError: naming ``images.csv``.
    """
    path = Path(cohort) / "images.csv"
    table = read_text_csv(path)
    require_columns(table, COHORT_COLUMNS, path)
    if table.empty:
        raise InputError(path, "no images listed")
    for column in COHORT_COLUMNS:
        blank = table[column].str.strip() == ""
        if blank.any():
            raise InputError(path, f"empty {column!r} in row(s) {_rows(blank)}")
    duplicated = table["image_id"][table["image_id"].duplicated()].unique().tolist()
    if duplicated:
        raise InputError(path, f"duplicate image_id {duplicated[:5]}")
    return table


def _rows(flags: pd.Series) -> list[int]:
    return [int(i) + 2 for i in np.flatnonzero(flags.to_numpy())][:5]  # 1-based + header


def annotate_image(
    cohort: str | Path, image_id: str, volume_id: str, image: str, mask: str
) -> Annotation:
    """Check one image/mask pair of the cohort and compute its box.

    Raises:
        InputError: naming the image or mask file: missing, unreadable, or of different sizes.
    """
    root = Path(cohort)
    image_path, mask_path = root / image, root / mask
    if not image_path.is_file():
        raise InputError(image_path, f"image of {image_id} not found")
    if not mask_path.is_file():
        raise InputError(mask_path, f"mask of image {image_id} ({image_path.name}) not found")
    gray = read_bmp(image_path)
    binary = read_mask_mat(mask_path)
    if binary.shape != gray.shape:
        raise InputError(
            mask_path,
            f"mask size {binary.shape[0]} x {binary.shape[1]} (H x W) differs from its image "
            f"{image_path.name}: {gray.shape[0]} x {gray.shape[1]}",
        )
    return Annotation(
        image_id=image_id,
        volume_id=volume_id,
        image_path=image_path.resolve(),
        box=mask_to_box(binary),
        n_components=n_components(binary),
        size=(int(gray.shape[0]), int(gray.shape[1])),
    )


def _check_test_count(n_images: int, test_count: int) -> None:
    if not 1 <= test_count < n_images:
        raise ValueError(f"test_count must be in 1..{n_images - 1}, got {test_count}")


def split_random(image_ids: Sequence[str], test_count: int, seed: int) -> list[str]:
    """``"train"``/``"test"`` per image: ``test_count`` images drawn at random.

    The draw permutes the sorted ids, so it does not depend on the order of ``image_ids``.
    """
    ids = list(image_ids)
    _check_test_count(len(ids), test_count)
    order = sorted(ids)
    test = set(np.random.default_rng(seed).permutation(order)[:test_count].tolist())
    return ["test" if i in test else "train" for i in ids]


def split_by_volume(volume_ids: Sequence[str], test_count: int, seed: int) -> list[str]:
    """``"train"``/``"test"`` per image, keeping volumes whole: whole volumes (in a seeded
    order) go to test until it holds at least ``test_count`` images; at least one volume stays
    in train.

    Raises:
        ValueError: ``test_count`` out of range, or only one volume.
    """
    vols = list(volume_ids)
    _check_test_count(len(vols), test_count)
    names, counts = np.unique(vols, return_counts=True)
    if names.size < 2:
        raise ValueError("a volume split needs at least 2 volumes")
    sizes = dict(zip(names.tolist(), counts.tolist(), strict=True))
    test: set[str] = set()
    total = 0
    for name in np.random.default_rng(seed).permutation(names).tolist():
        if total >= test_count or len(test) == names.size - 1:
            break
        test.add(name)
        total += sizes[name]
    return ["test" if v in test else "train" for v in vols]


def _obj_data(out_dir: Path) -> str:
    out = out_dir.resolve()
    return (
        f"classes={len(CLASS_NAMES)}\n"
        f"train={out / 'train.txt'}\n"
        f"valid={out / 'test.txt'}\n"
        f"names={out / 'obj.names'}\n"
        f"backup={out / 'backup'}\n"
    )


def _box_table(annotations: Sequence[Annotation], splits: Sequence[str]) -> pd.DataFrame:
    rows = []
    for ann, split in zip(annotations, splits, strict=True):
        box = ann.box if ann.box is not None else (np.nan,) * 4
        rows.append((ann.image_id, ann.volume_id, split, ann.n_components, *box, ann.box is None))
    return pd.DataFrame(rows, columns=list(BOX_COLUMNS))


def write_annotations(
    out_dir: str | Path, annotations: Sequence[Annotation], splits: Sequence[str]
) -> pd.DataFrame:
    """Write the annotation directory atomically (replacing ``out_dir``); return ``boxes.csv``."""
    out_dir = Path(out_dir)
    table = _box_table(annotations, splits)
    with atomic_dir(out_dir) as tmp:
        for ann in annotations:
            text = "" if ann.box is None else yolo_line(ann.box) + "\n"
            (tmp / f"{ann.image_id}.txt").write_text(text)
        for name in ("train", "test"):
            paths = [
                str(a.image_path) for a, s in zip(annotations, splits, strict=True) if s == name
            ]
            (tmp / f"{name}.txt").write_text("".join(p + "\n" for p in paths))
        (tmp / "obj.names").write_text("".join(n + "\n" for n in CLASS_NAMES))
        (tmp / "obj.data").write_text(_obj_data(out_dir))
        table.to_csv(tmp / "boxes.csv", index=False, float_format="%.6f")
    return table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro yolo-annotate",
        description="Cerebellum masks -> YOLO txt annotations, train/test lists, boxes.csv.",
    )
    parser.add_argument("--cohort", required=True, help="cohort directory with images.csv")
    parser.add_argument("--out-dir", required=True, help="annotation directory (replaced)")
    parser.add_argument("--test-count", type=int, default=78, help="test images (default: 78)")
    parser.add_argument(
        "--split",
        choices=("random", "volume"),
        default="random",
        help="random images (the paper) or whole volumes (default: random)",
    )
    parser.add_argument("--seed", type=int, required=True, help="seed of the split")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the stage; return the exit status."""
    args = _parser().parse_args(argv)
    table = read_cohort(args.cohort)
    if not 1 <= args.test_count < len(table):
        raise SystemExit(f"error: --test-count must be in 1..{len(table) - 1} for this cohort")
    annotations = [
        annotate_image(args.cohort, r.image_id, r.volume_id, r.image, r.mask)
        for r in table.itertuples(index=False)
    ]
    if args.split == "random":
        splits = split_random([a.image_id for a in annotations], args.test_count, args.seed)
    else:
        if table["volume_id"].nunique() < 2:
            raise InputError(Path(args.cohort) / "images.csv", "volume split needs >= 2 volumes")
        splits = split_by_volume([a.volume_id for a in annotations], args.test_count, args.seed)
    boxes = write_annotations(args.out_dir, annotations, splits)
    print(
        f"wrote {args.out_dir}: {len(boxes)} images, {int((boxes['split'] == 'test').sum())} "
        f"test, {int(boxes['empty'].sum())} empty masks, "
        f"{int((boxes['n_components'] > 1).sum())} with several components",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
