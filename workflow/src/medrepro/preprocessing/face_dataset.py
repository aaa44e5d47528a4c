"""Stage ``face-dataset``: face images + iBUG ``.pts`` -> ``dataset.npz``, splits, source set.

Target (``docs/face_landmarks.md``): every image of ``--target-dir`` (``.png .jpg .jpeg .bmp``,
sorted by stem) needs ``<stem>.pts`` with the K points of ``landmarks.json``, all inside the image.
Each image is cropped to a square around its landmarks' bounding box (side ``crop_margin`` x the
box's longer side, centred on the box, zero padding outside the image) and resized bilinearly to
``S x S`` (Pillow, anti-aliased when shrinking); the landmarks follow the same transform in the
pixel-centre convention: a crop of side ``L`` whose left edge is at ``x0`` (edge coordinates, i.e.
pixel-centre coordinate ``x0 - 0.5``) maps ``x -> (x - x0 + 0.5) * S / L - 0.5``.

Source: ``--source-dir/identities.csv`` (``image, identity``); images are centre-cropped to a
square and resized to ``S x S``; identities sorted by name get ids ``0..C-1``; the last image (by
name) of every identity with at least two images is ``val``, the others ``train``.

Everything is read and validated before anything is written, and the output directory appears
as a whole (:func:`medrepro.io.atomic.atomic_dir`), so bad input leaves no output.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from medrepro.io.atomic import atomic_dir, write_csv, write_npz
from medrepro.io.errors import InputError
from medrepro.io.tables import read_text_csv, require_columns

__all__ = [
    "IMAGE_SUFFIXES",
    "Crop",
    "network_input",
    "budget_size",
    "budget_indices",
    "read_landmark_spec",
    "read_rgb",
    "find_target_cases",
    "crop_box",
    "crop_and_resize",
    "map_points",
    "make_splits",
    "load_target",
    "load_source",
    "main",
]

log = logging.getLogger(__name__)

#: image file suffixes of the target and source directories (lower case)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def network_input(images_u8: np.ndarray) -> np.ndarray:
    """uint8 RGB ``(N, H, W, 3)`` -> float32 ``(N, 3, H, W)`` = ``(u8 / 255 - 0.5) / 0.25``."""
    x = np.asarray(images_u8)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected images (N, H, W, 3), got {x.shape}")
    x = x.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray((x - np.float32(0.5)) / np.float32(0.25))


def budget_size(n_train: int, budget_percent: float) -> int:
    """Number of training images of label budget ``budget_percent``: ``max(1, round(b/100 n))``."""
    return max(1, int(round(float(budget_percent) / 100.0 * n_train)))


def budget_indices(splits_df: pd.DataFrame, budget_percent: float) -> np.ndarray:
    """The case ids ``(n,)`` str of a label budget, in the row order of ``splits_df``.

    The budget is the train rows with ``budget_rank < max(1, round(b / 100 * n_train))``, so the
    budgets are nested. ``splits_df`` is ``splits.csv`` (cells may be str, as
    :func:`medrepro.io.tables.read_text_csv` gives them).
    """
    if not 0 < float(budget_percent) <= 100:
        raise ValueError(f"budget must be in (0, 100] per cent, got {budget_percent}")
    train = splits_df[splits_df["split"].astype(str) == "train"]
    if train.empty:
        raise ValueError("splits have no train rows")
    rank = train["budget_rank"].astype(np.int64).to_numpy()
    keep = rank < budget_size(len(train), budget_percent)
    return train["case_id"].astype(str).to_numpy()[keep]


def read_landmark_spec(target_dir: Path) -> tuple[list[str], np.ndarray]:
    """``landmarks.json`` of the target directory -> (names (K,), flip_pairs int64 (P, 2))."""
    path = Path(target_dir) / "landmarks.json"
    if not path.is_file():
        raise InputError(path, "file not found (required: {'names': [...], 'flip_pairs': [...]})")
    try:
        spec = json.loads(path.read_text())
        names = [str(n) for n in spec["names"]]
        pairs = np.asarray(spec.get("flip_pairs", []), dtype=np.int64).reshape(-1, 2)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise InputError(
            path, f"not a landmarks.json with 'names' and 'flip_pairs' ({err})"
        ) from err
    if not names or len(set(names)) != len(names):
        raise InputError(path, f"'names' must be a non-empty list of unique names, got {names}")
    if pairs.size and (pairs.min() < 0 or pairs.max() >= len(names)):
        raise InputError(path, f"flip_pairs index out of range 0..{len(names) - 1}")
    return names, pairs


def read_rgb(path: Path) -> np.ndarray:
    """An 8-bit grey or colour image -> uint8 ``(H, W, 3)`` RGB (grey is replicated)."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in (
                "1",
                "L",
                "LA",
                "P",
                "PA",
                "RGB",
                "RGBA",
                "RGBX",
                "CMYK",
                "YCbCr",
            ):
                raise InputError(path, f"unsupported image mode {image.mode!r} (8-bit grey/RGB)")
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise InputError(path, f"unreadable image ({err})") from err
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise InputError(path, f"empty image {rgb.shape}")
    return rgb


def find_target_cases(target_dir: Path) -> list[tuple[str, Path, Path]]:
    """``(stem, image, pts)`` of every image in ``target_dir``, sorted by stem.

    Raises:
        InputError: two images with one stem, an image without its ``.pts``, or no image.
    """
    target_dir = Path(target_dir)
    if not target_dir.is_dir():
        raise InputError(target_dir, "target directory not found")
    images: dict[str, Path] = {}
    for path in sorted(target_dir.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in images:
                raise InputError(path, f"two images with stem {path.stem!r}: {images[path.stem]}")
            images[path.stem] = path
    if not images:
        raise InputError(target_dir, f"no image ({', '.join(IMAGE_SUFFIXES)}) found")
    for pts in sorted(target_dir.glob("*.pts")):
        if pts.stem not in images:
            log.warning("%s: no image with this stem; ignored", pts)
    cases = []
    for stem in sorted(images):
        pts = target_dir / f"{stem}.pts"
        if not pts.is_file():
            raise InputError(images[stem], f"no landmark file {pts.name} for this image")
        cases.append((stem, images[stem], pts))
    return cases


@dataclass(frozen=True)
class Crop:
    """A square crop: left/top edge ``(x0, y0)`` in edge coordinates, side ``side`` (pixels)."""

    x0: float
    y0: float
    side: float


def crop_box(points_xy: np.ndarray, crop_margin: float) -> Crop:
    """The square around the bounding box of ``points_xy (K, 2)`` (0-based pixel centres).

    Side ``crop_margin`` x the box's longer side, centred on the box centre.
    """
    pts = np.asarray(points_xy, dtype=np.float64)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    side = float(crop_margin) * float(np.max(hi - lo))
    if not side > 0:
        raise ValueError("the landmarks' bounding box is empty (all points coincide)")
    centre = (lo + hi) / 2.0 + 0.5  # edge coordinates
    return Crop(float(centre[0] - side / 2.0), float(centre[1] - side / 2.0), side)


def map_points(points_xy: np.ndarray, crop: Crop, size: int) -> np.ndarray:
    """Original 0-based pixel-centre ``(..., 2)`` (x, y) -> coordinates in the ``size`` crop."""
    pts = np.asarray(points_xy, dtype=np.float64)
    origin = np.array([crop.x0, crop.y0])
    return (pts - origin + 0.5) * (size / crop.side) - 0.5


def crop_and_resize(rgb: np.ndarray, crop: Crop, size: int) -> np.ndarray:
    """uint8 ``(H, W, 3)`` -> the crop resized to uint8 ``(size, size, 3)`` (bilinear).

    Outside the image is zero. Pillow's resize with a float ``box`` samples pixel centres
    (output pixel ``i`` at edge coordinate ``x0 + (i + 0.5) L / S``) and widens the bilinear
    kernel when shrinking (anti-aliasing).
    """
    h, w = rgb.shape[:2]
    pad = int(
        np.ceil(max(0.0, -crop.x0, -crop.y0, crop.x0 + crop.side - w, crop.y0 + crop.side - h))
    )
    pad += 1 if pad else 0  # room for the widened kernel at the crop's border
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB")
    if pad:
        padded = Image.new("RGB", (w + 2 * pad, h + 2 * pad), (0, 0, 0))
        padded.paste(image, (pad, pad))
        image = padded
    box = (crop.x0 + pad, crop.y0 + pad, crop.x0 + pad + crop.side, crop.y0 + pad + crop.side)
    out = image.resize((size, size), Image.Resampling.BILINEAR, box=box)
    return np.asarray(out, dtype=np.uint8)


def _split_counts(n: int, test_fraction: float, source: Path) -> int:
    """Number of test cases: ``round(f n)``, at least one of each split when ``0 < f < 1``."""
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test fraction must be in [0, 1), got {test_fraction}")
    n_test = int(round(test_fraction * n))
    if test_fraction > 0:
        n_test = max(1, n_test)
    if n - n_test < 1:
        raise InputError(source, f"{n} case(s): too few for a train/test split")
    return n_test


def make_splits(
    case_id: Sequence[str], test_fraction: float, seed: int, source: Path = Path("target")
) -> pd.DataFrame:
    """Seeded train/test split and budget ranks, in the order of ``case_id``.

    Returns:
        ``case_id, split, budget_rank``: ``round(test_fraction N)`` random cases are ``test``
        (rank ``-1``); the train rows get a seeded permutation ``0..n_train-1``.
    """
    n = len(case_id)
    n_test = _split_counts(n, test_fraction, source)
    rng = np.random.default_rng(seed)
    is_test = np.zeros(n, dtype=bool)
    is_test[rng.permutation(n)[:n_test]] = True
    rank = np.full(n, -1, dtype=np.int64)
    rank[~is_test] = rng.permutation(n - n_test)
    return pd.DataFrame(
        {
            "case_id": [str(c) for c in case_id],
            "split": np.where(is_test, "test", "train"),
            "budget_rank": rank,
        }
    )


def _load_case(
    image_path: Path, pts_path: Path, n_landmarks: int, crop_margin: float, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """One target case -> (image (S, S, 3), landmarks (K, 2), visible (K,), scale)."""
    from medrepro.io.pts import read_pts, read_visibility

    rgb = read_rgb(image_path)
    pts = read_pts(pts_path)
    if pts.shape != (n_landmarks, 2):
        raise InputError(pts_path, f"{len(pts)} points, landmarks.json has {n_landmarks} landmarks")
    h, w = rgb.shape[:2]
    for k, (x, y) in enumerate(pts):
        if not (np.isfinite(x) and np.isfinite(y) and 0 <= x <= w - 1 and 0 <= y <= h - 1):
            raise InputError(
                pts_path,
                f"point {k} at (x={x + 1:.3f}, y={y + 1:.3f}) in the file's 1-based coordinates "
                f"(0-based {x:.3f}, {y:.3f}) is outside the {w} x {h} image {image_path.name} "
                f"(0-based 0 <= x <= {w - 1}, 0 <= y <= {h - 1})",
            )
    visible = np.asarray(read_visibility(pts_path, n_landmarks), dtype=bool)
    try:
        crop = crop_box(pts, crop_margin)
    except ValueError as err:
        raise InputError(pts_path, str(err)) from err
    return crop_and_resize(rgb, crop, size), map_points(pts, crop, size), visible, crop.side / size


def load_target(target_dir: Path, image_size: int, crop_margin: float) -> dict[str, np.ndarray]:
    """Every target case, validated, cropped and resized: the arrays of ``dataset.npz``."""
    names, pairs = read_landmark_spec(target_dir)
    cases = find_target_cases(target_dir)
    images, landmarks, visible, scale = [], [], [], []
    for _, image_path, pts_path in cases:
        img, pts, vis, s = _load_case(image_path, pts_path, len(names), crop_margin, image_size)
        images.append(img)
        landmarks.append(pts)
        visible.append(vis)
        scale.append(s)
    return {
        "images": np.stack(images).astype(np.uint8),
        "landmarks": np.stack(landmarks).astype(np.float64),
        "visible": np.stack(visible).astype(bool),
        "case_id": np.array([stem for stem, _, _ in cases], dtype=str),
        "scale": np.asarray(scale, dtype=np.float64),
        "landmark_names": np.array(names, dtype=str),
        "flip_pairs": pairs.astype(np.int64),
    }


def _square_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop ``(H, W, 3)`` to a square (the shorter side), resize to ``(size, size, 3)``."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = np.ascontiguousarray(rgb[top : top + side, left : left + side])
    if side == size:
        return square
    image = Image.fromarray(square, mode="RGB")
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def load_source(source_dir: Path, image_size: int) -> dict[str, np.ndarray]:
    """The identity classification set: the arrays of ``source.npz`` (rows sorted by image)."""
    table_path = Path(source_dir) / "identities.csv"
    table = read_text_csv(table_path)
    require_columns(table, ("image", "identity"), table_path)
    if table.empty:
        raise InputError(table_path, "no rows")
    dup = table["image"][table["image"].duplicated()]
    if len(dup):
        raise InputError(table_path, f"image(s) listed twice: {sorted(set(dup))[:5]}")
    if (table["identity"].str.strip() == "").any():
        raise InputError(table_path, "empty identity")
    table = table.sort_values("image", kind="stable").reset_index(drop=True)
    identity_names = sorted(set(table["identity"]))
    ids = {name: i for i, name in enumerate(identity_names)}
    last = table.groupby("identity")["image"].agg(["max", "size"])
    split = [
        "val" if last.loc[ident, "size"] >= 2 and image == last.loc[ident, "max"] else "train"
        for image, ident in zip(table["image"], table["identity"], strict=True)
    ]
    images = []
    for rel in table["image"]:
        path = Path(source_dir) / rel
        if not path.is_file():
            raise InputError(path, f"image listed in {table_path} not found")
        images.append(_square_resize(read_rgb(path), image_size))
    return {
        "images": np.stack(images).astype(np.uint8),
        "identity": np.array([ids[n] for n in table["identity"]], dtype=np.int64),
        "identity_names": np.array(identity_names, dtype=str),
        "split": np.array(split, dtype=str),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro face-dataset", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--target-dir", type=Path, required=True, help="images + .pts + landmarks.json"
    )
    parser.add_argument("--source-dir", type=Path, required=True, help="identities.csv + images")
    parser.add_argument("--image-size", type=int, required=True, help="S (pixels)")
    parser.add_argument(
        "--crop-margin", type=float, default=1.6, help="crop side / landmark box side"
    )
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line: see :func:`_parser` and the module docstring."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.image_size < 4 or args.crop_margin <= 0 or not 0 <= args.test_fraction < 1:
        parser.error("need --image-size >= 4, --crop-margin > 0 and 0 <= --test-fraction < 1")
    target = load_target(args.target_dir, args.image_size, args.crop_margin)
    splits = make_splits(target["case_id"], args.test_fraction, args.seed, args.target_dir)
    source = load_source(args.source_dir, args.image_size)
    test = (splits["split"] == "test").to_numpy()
    with atomic_dir(args.out_dir) as tmp:
        write_npz(tmp / "dataset.npz", **target)
        write_csv(splits, tmp / "splits.csv")
        write_npz(
            tmp / "inputs_test.npz",
            inputs=network_input(target["images"][test]),
            case_id=target["case_id"][test],
        )
        write_npz(tmp / "source.npz", **source)
    n_train = int((~test).sum())
    print(
        f"face-dataset: {len(test)} target images ({n_train} train, {int(test.sum())} test), "
        f"{len(source['identity'])} source images of {len(source['identity_names'])} identities "
        f"-> {args.out_dir}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
