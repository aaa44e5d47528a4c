"""Stage ``lowres-luna16-dataset``: LUNA16 scans -> the LowRes study container.

For every scan under ``--data-dir`` (``subset<k>/<seriesuid>.mhd``, ``docs/lowres.md``):

1. read the CT (HU) and its lung labels (``seg-lungs-LUNA16``, same grid required) and the
   nodule mask (``nodule-masks/``, labels k = k-th annotation row of the series) or, without
   ``nodule-masks/``, spheres of ``diameter_mm`` around the annotations;
2. optionally resample to ``--spacing-mm`` (linear for the CT, nearest for the labels);
3. lungs = labels 3 and 4 (trachea 5 dropped), closed (``--closing-radius`` voxels) and dilated
   (``--dilation-radius``); crop to their bounding box + ``--crop-margin`` voxels; voxels outside
   the dilated lungs set to the window's low end (-1000 HU);
4. ``clip((HU - low) / (high - low), 0, 1)`` with ``--hu-window low high`` (-1000 300);
5. a study with a nodule centre outside the dilated lung mask is excluded (``excluded=True``,
   with the reason), as the paper's 72 cases.

Splits follow the LUNA16 subsets (``--train-subsets``, ``--val-subsets``, ``--test-subsets``);
scans of other subsets are skipped. The result is written by
:func:`medrepro.data.lowres_studies.write_studies` (``studies.npz``, ``studies.csv``,
``objects.csv``; objects are listed for the studies kept). Nodule kinds come from the phantom's
``nodules.csv`` when present, else ``unknown``.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from medrepro.data.lowres_studies import OBJECT_COLUMNS, STUDY_COLUMNS, Study, write_studies
from medrepro.io.errors import InputError
from medrepro.io.luna16 import (
    ANNOTATIONS_FILE,
    LUNG_LABELS,
    Scan,
    find_scans,
    lung_mask_path,
    nodule_mask_path,
    read_annotations,
    read_mhd,
    same_grid,
    unknown_seriesuids,
    world_to_voxel,
)
from medrepro.preprocessing.geometry import Grid
from medrepro.preprocessing.lung_mask import crop_mask
from medrepro.preprocessing.resampling import resample_onto

__all__ = [
    "KINDS",
    "Options",
    "Prepared",
    "hu_window",
    "main",
    "prepare_scan",
    "resampled_grid",
    "sphere_labels",
]

log = logging.getLogger(__name__)

KINDS = ("solid", "ground_glass", "part_solid", "unknown")


@dataclass(frozen=True)
class Options:
    """Preprocessing settings (radii and margin in voxels of the working grid)."""

    window: tuple[float, float] = (-1000.0, 300.0)
    spacing_zyx: tuple[float, float, float] | None = None
    closing_radius: int = 10
    dilation_radius: int = 3
    margin: int = 5
    lung_labels: tuple[int, ...] = LUNG_LABELS


@dataclass
class Prepared:
    """A preprocessed scan: image in [0, 1], union mask ``(z, y, x)``, spacing ``(z, y, x)`` mm."""

    image: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float, float]
    objects: list[dict] = field(default_factory=list)
    reason: str = ""


def hu_window(hu: np.ndarray, low: float = -1000.0, high: float = 300.0) -> np.ndarray:
    """``clip((hu - low) / (high - low), 0, 1)`` as float32 (-1000 -> 0, 300 -> 1, -350 -> 0.5)."""
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"invalid HU window [{low}, {high}]")
    out = (np.asarray(hu, dtype=np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(out, 0.0, 1.0, out=out)


def resampled_grid(img: sitk.Image, spacing_zyx: Sequence[float]) -> Grid:
    """Grid of ``img``'s extent and centre at ``spacing_zyx`` mm (size rounded, >= 1 voxel)."""
    source = Grid.of(img)
    spacing = np.asarray(spacing_zyx, dtype=np.float64)[::-1]
    size = np.maximum(np.round(source.size * source.spacing / spacing), 1).astype(np.int64)
    centre = source.origin + source.direction @ (source.spacing * (source.size - 1) / 2)
    origin = centre - source.direction @ (spacing * (size - 1) / 2)
    return Grid(origin=origin, spacing=spacing, direction=source.direction, size=size)


def sphere_labels(
    shape: tuple[int, int, int],
    spacing_zyx: Sequence[float],
    centres_zyx: np.ndarray,
    diameters_mm: Sequence[float],
) -> np.ndarray:
    """uint8 ``(z, y, x)`` labels: k on voxels within ``diameter/2`` mm of the k-th centre.

    Later spheres overwrite earlier ones; the voxel nearest each centre always carries its label.
    """
    out = np.zeros(shape, dtype=np.uint8)
    spacing = np.asarray(spacing_zyx, dtype=np.float64)
    for k, (centre, diameter) in enumerate(zip(centres_zyx, diameters_mm, strict=True), start=1):
        radius = diameter / 2
        lo = np.maximum(np.floor(centre - radius / spacing), 0).astype(int)
        hi = np.minimum(np.ceil(centre + radius / spacing) + 1, shape).astype(int)
        if np.any(hi <= lo):
            continue
        grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
        d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing, strict=True))
        out[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))][d2 <= radius**2] = k
        nearest = np.clip(np.rint(centre).astype(int), 0, np.array(shape) - 1)
        out[tuple(nearest)] = k
    return out


def _read_labels(path: Path, scan: Scan, ct: sitk.Image, what: str) -> sitk.Image:
    img = read_mhd(path, pixel_type=sitk.sitkUInt8)
    if not same_grid(img, ct):
        raise InputError(path, f"{what} grid differs from the grid of scan {scan.seriesuid}")
    return img


def _resample(img: sitk.Image, grid: Grid, *, labels: bool) -> sitk.Image:
    if labels:
        return resample_onto(
            img, grid, interpolator=sitk.sitkNearestNeighbor, antialias=False, pixel_type=None
        )
    return resample_onto(img, grid, interpolator=sitk.sitkLinear, default_value=-1000.0)


def prepare_scan(
    data_dir: str | Path,
    scan: Scan,
    annotations: pd.DataFrame,
    kinds: dict[tuple[str, int], str],
    options: Options,
) -> Prepared:
    """Preprocess one scan (module docstring); excluded scans come back with a ``reason``.

    Args:
        data_dir: the LUNA16 directory.
        scan: the scan.
        annotations: its rows of ``annotations.csv`` (file order, ``object`` 1-based).
        kinds: ``(seriesuid, object) -> kind``.
        options: settings.

    Raises:
        InputError: unreadable or inconsistent files, an annotation outside the volume.
    """
    data_dir = Path(data_dir)
    uid = scan.seriesuid
    ct = read_mhd(scan.path, pixel_type=sitk.sitkFloat32)
    lung_path = lung_mask_path(data_dir, uid)
    labels = _read_labels(lung_path, scan, ct, "lung mask")
    nodule_path = nodule_mask_path(data_dir, uid)
    nodules = None if nodule_path is None else _read_labels(nodule_path, scan, ct, "nodule mask")
    if nodules is not None:
        top = int(sitk.GetArrayViewFromImage(nodules).max())
        if top > len(annotations):
            raise InputError(
                nodule_path, f"label {top} but scan {uid} has {len(annotations)} annotation(s)"
            )
    if options.spacing_zyx is not None:
        grid = resampled_grid(ct, options.spacing_zyx)
        ct = _resample(ct, grid, labels=False)
        labels = _resample(labels, grid, labels=True)
        if nodules is not None:
            nodules = _resample(nodules, grid, labels=True)
    spacing = tuple(float(s) for s in ct.GetSpacing()[::-1])
    hu = sitk.GetArrayFromImage(ct)
    world = annotations[["coordX", "coordY", "coordZ"]].to_numpy(float).reshape(-1, 3)
    centres = world_to_voxel(ct, world).reshape(-1, 3)
    for k, centre in enumerate(centres, start=1):
        if np.any(centre < -0.5) or np.any(centre > np.array(hu.shape) - 0.5):
            raise InputError(
                data_dir / ANNOTATIONS_FILE,
                f"scan {uid}: annotation {k} at {world[k - 1].tolist()} mm is outside the volume",
            )
    if nodules is None:
        gt = sphere_labels(hu.shape, spacing, centres, annotations["diameter_mm"].tolist())
    else:
        gt = sitk.GetArrayFromImage(nodules)
    try:
        lung, box = crop_mask(
            sitk.GetArrayViewFromImage(labels),
            lung_labels=options.lung_labels,
            closing_radius=options.closing_radius,
            dilation_radius=options.dilation_radius,
            margin=options.margin,
        )
    except ValueError as err:
        raise InputError(lung_path, f"scan {uid}: {err}") from err
    low, high = options.window
    hu[~lung] = low
    image = hu_window(hu[box], low, high).astype(np.float16)
    crop_gt = gt[box]
    start = np.array([s.start for s in box], dtype=np.float64)
    nearest = np.clip(np.rint(centres).astype(int), 0, np.array(hu.shape) - 1)
    voxel_mm3 = float(np.prod(spacing))
    objects, outside = [], []
    for k, (centre, idx) in enumerate(zip(centres, nearest, strict=True), start=1):
        inside = bool(lung[tuple(idx)])
        if not inside:
            outside.append(k)
        local = centre - start
        objects.append(
            {
                "object": k,
                "diameter_mm": float(annotations["diameter_mm"].iloc[k - 1]),
                "volume_mm3": float(np.count_nonzero(gt == k)) * voxel_mm3,
                "kind": kinds.get((uid, k), "unknown"),
                "center_z": float(local[0]),
                "center_y": float(local[1]),
                "center_x": float(local[2]),
                "inside_mask": inside,
            }
        )
    reason = ""
    if outside:
        reason = f"nodule centre outside the lung mask (object {', '.join(map(str, outside))})"
    return Prepared(
        image=image, mask=(crop_gt > 0).astype(np.uint8), spacing=spacing, objects=objects,
        reason=reason,
    )  # fmt: skip


def _read_kinds(data_dir: Path) -> dict[tuple[str, int], str]:
    """``(seriesuid, object) -> kind`` from the phantom's ``nodules.csv`` (empty if absent)."""
    path = data_dir / "nodules.csv"
    if not path.is_file():
        return {}
    try:
        table = pd.read_csv(path, dtype={"seriesuid": str, "kind": str}, keep_default_na=False)
        return {
            (str(u), int(k)): (kind if kind in KINDS else "unknown")
            for u, k, kind in zip(table["seriesuid"], table["object"], table["kind"], strict=True)
        }
    except (KeyError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(path, f"unreadable nodule table ({err})") from err


def _split_of(args: argparse.Namespace) -> dict[int, str]:
    out: dict[int, str] = {}
    for split, subsets in (
        ("train", args.train_subsets),
        ("val", args.val_subsets),
        ("test", args.test_subsets),
    ):
        for subset in subsets:
            if subset in out:
                raise SystemExit(f"error: subset {subset} is in both {out[subset]} and {split}")
            out[subset] = split
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro lowres-luna16-dataset",
        description="LUNA16 scans -> lung crop, HU window, nodule masks, splits (LowRes).",
    )
    parser.add_argument(
        "--data-dir", required=True, help="LUNA16 layout (subset*/, seg-lungs-LUNA16/)"
    )
    parser.add_argument("--out-dir", required=True, help="preprocessed directory (replaced)")
    parser.add_argument(
        "--hu-window", type=float, nargs=2, default=(-1000.0, 300.0), metavar=("LOW", "HIGH")
    )
    parser.add_argument(
        "--spacing-mm",
        type=float,
        nargs="+",
        default=None,
        metavar="MM",
        help="resample to this spacing: one value (isotropic) or three (z y x); default native",
    )
    parser.add_argument("--closing-radius", type=int, default=10, help="voxels (10)")
    parser.add_argument("--dilation-radius", type=int, default=3, help="voxels (3)")
    parser.add_argument("--crop-margin", type=int, default=5, help="voxels (5)")
    parser.add_argument("--lung-labels", type=int, nargs="+", default=list(LUNG_LABELS))
    parser.add_argument("--train-subsets", type=int, nargs="*", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--val-subsets", type=int, nargs="*", default=[6, 7])
    parser.add_argument("--test-subsets", type=int, nargs="*", default=[8, 9])
    parser.add_argument(
        "--on-bad-study",
        choices=("error", "exclude"),
        default="error",
        help="bad input of one scan: stop (error) or list the scan as excluded",
    )
    return parser


def _options(args: argparse.Namespace) -> Options:
    low, high = args.hu_window
    if not low < high:
        raise SystemExit("error: --hu-window needs LOW < HIGH")
    spacing = None
    if args.spacing_mm is not None:
        if len(args.spacing_mm) not in (1, 3) or min(args.spacing_mm) <= 0:
            raise SystemExit("error: --spacing-mm takes 1 or 3 positive values (z y x)")
        values = args.spacing_mm * 3 if len(args.spacing_mm) == 1 else args.spacing_mm
        spacing = (float(values[0]), float(values[1]), float(values[2]))
    if min(args.closing_radius, args.dilation_radius, args.crop_margin) < 0:
        raise SystemExit("error: radii and margin must be >= 0 voxels")
    return Options(
        window=(float(low), float(high)),
        spacing_zyx=spacing,
        closing_radius=args.closing_radius,
        dilation_radius=args.dilation_radius,
        margin=args.crop_margin,
        lung_labels=tuple(args.lung_labels),
    )


def _row(uid: str, split: str, subset: int, n_objects: int) -> dict:
    return {
        "study_id": uid, "split": split, "group": str(subset),
        "shape_z": 0, "shape_y": 0, "shape_x": 0,
        "spacing_z": float("nan"), "spacing_y": float("nan"), "spacing_x": float("nan"),
        "n_objects": n_objects, "excluded": False, "reason": "",
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the stage; return the exit status."""
    args = _parser().parse_args(argv)
    options = _options(args)
    split_of = _split_of(args)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    data_dir = Path(args.data_dir)
    scans = find_scans(data_dir)
    exclude = args.on_bad_study == "exclude"
    annotations = read_annotations(data_dir / ANNOTATIONS_FILE, scans, collect_unknown=exclude)
    for uid in unknown_seriesuids(annotations, scans):
        log.warning("%s: annotations of unknown seriesuid %s ignored", ANNOTATIONS_FILE, uid)
    kinds = _read_kinds(data_dir)
    by_uid = {uid: rows for uid, rows in annotations.groupby("seriesuid", sort=False)}
    rows, objects, studies, seconds = [], [], [], []
    for scan in scans.values():
        split = split_of.get(scan.subset)
        if split is None:
            log.info("%s: subset %d is in no split, skipped", scan.seriesuid, scan.subset)
            continue
        ann = by_uid.get(scan.seriesuid, annotations.iloc[0:0])
        row = _row(scan.seriesuid, split, scan.subset, len(ann))
        start = time.perf_counter()
        try:
            prepared = prepare_scan(data_dir, scan, ann, kinds, options)
        except InputError as err:
            if not exclude:
                raise
            row.update(excluded=True, reason=str(err))
            rows.append(row)
            log.warning("excluded %s: %s", scan.seriesuid, err)
            continue
        seconds.append(time.perf_counter() - start)
        shape = prepared.image.shape
        row.update(
            shape_z=shape[0], shape_y=shape[1], shape_x=shape[2],
            spacing_z=prepared.spacing[0], spacing_y=prepared.spacing[1],
            spacing_x=prepared.spacing[2],
        )  # fmt: skip
        if prepared.reason:
            row.update(excluded=True, reason=prepared.reason)
            log.info("excluded %s: %s", scan.seriesuid, prepared.reason)
        else:
            studies.append(Study(scan.seriesuid, prepared.image, prepared.mask, prepared.spacing))
            for obj in prepared.objects:
                objects.append({"study_id": scan.seriesuid, "split": split, **obj})
        rows.append(row)
        log.info("%s (%s): %s in %.2f s", scan.seriesuid, split, shape, seconds[-1])
    if not rows:
        raise InputError(data_dir, "no scan in the requested subsets")
    table = pd.DataFrame(rows, columns=STUDY_COLUMNS)
    write_studies(args.out_dir, studies, table, pd.DataFrame(objects, columns=OBJECT_COLUMNS))
    log.info(
        "%d studies kept, %d excluded; %.2f s per scan (mean)",
        len(studies),
        int(table["excluded"].sum()),
        float(np.mean(seconds)) if seconds else 0.0,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
