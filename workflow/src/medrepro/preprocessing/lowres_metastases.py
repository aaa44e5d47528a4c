"""Stage ``lowres-metastases-dataset``: T1 contrast MRI with metastases -> preprocessed studies.

Per subject of ``subjects.csv`` (``docs/lowres.md``): read ``<id>_t1c.nii.gz``,
``<id>_brainmask.nii.gz`` and ``<id>_lesions.nii.gz`` (same grid), reorient to LPS, optionally
resample to ``spacing_mm`` (image linear and anti-aliased, mask and labels nearest neighbour),
crop to the brain mask's bounding box + ``margin`` voxels, set voxels outside the brain to 0 and
scale the brain by its 0.5 / 99.5 percentiles to [0, 1] (clipped). Objects are the lesion labels
(``k`` = lesion ``k``): equivalent-sphere diameter (mm), volume (mm3), centroid (voxels of the
preprocessed grid). Subjects are split at random into train / val / test by fractions (the
paper's 1250 / 402 / 300 of 1952 are 0.64 / 0.21 / 0.15). The result is written with
:func:`medrepro.data.lowres_studies.write_studies`.

Arrays are ``(z, y, x)`` (``sitk.GetArrayFromImage`` order) of the LPS image; spacings passed on
the command line are ``(x, y, z)`` mm, as SimpleITK's.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from medrepro.data.lowres_studies import OBJECT_COLUMNS, STUDY_COLUMNS, Study, write_studies
from medrepro.data.split import split_by_patient
from medrepro.io.errors import InputError
from medrepro.io.images import read_image
from medrepro.io.tables import read_text_csv, require_columns
from medrepro.preprocessing.geometry import Grid, centre_mm, grid_from_centre
from medrepro.preprocessing.orientation import reorient
from medrepro.preprocessing.resampling import resample_onto

__all__ = [
    "SUFFIXES",
    "MetsSubject",
    "subject_paths",
    "read_subject",
    "resample_subject",
    "crop_box",
    "scale_percentiles",
    "lesion_objects",
    "preprocess_subject",
    "assign_splits",
    "build_dataset",
    "main",
]

log = logging.getLogger(__name__)

#: File name suffixes of one subject: image, brain mask, lesion labels.
SUFFIXES = {"image": "_t1c.nii.gz", "brainmask": "_brainmask.nii.gz", "lesions": "_lesions.nii.gz"}
_GRID_ATOL = 1e-3  # mm (origin, spacing) and direction cosines


@dataclass(frozen=True)
class MetsSubject:
    """One subject's images on a common grid.

    Attributes:
        image: float32 T1 contrast image.
        brainmask: uint8 0/1 brain mask.
        lesions: uint16 lesion labels (``k`` = lesion ``k``, 0 background).
    """

    image: sitk.Image
    brainmask: sitk.Image
    lesions: sitk.Image


def subject_paths(data_dir: str | Path, subject_id: str) -> dict[str, Path]:
    """The three files of ``subject_id`` below ``data_dir`` (keys of :data:`SUFFIXES`)."""
    return {key: Path(data_dir) / f"{subject_id}{suffix}" for key, suffix in SUFFIXES.items()}


def _grid_problem(reference: sitk.Image, other: sitk.Image) -> str | None:
    """Why ``other`` is not on ``reference``'s grid, or ``None``."""
    checks = (
        ("size", reference.GetSize(), other.GetSize()),
        ("spacing", reference.GetSpacing(), other.GetSpacing()),
        ("origin", reference.GetOrigin(), other.GetOrigin()),
        ("direction", reference.GetDirection(), other.GetDirection()),
    )
    for name, a, b in checks:
        if not np.allclose(a, b, atol=_GRID_ATOL, rtol=0):
            return f"grid differs from the image: {name} {list(b)} vs {list(a)}"
    return None


def read_subject(data_dir: str | Path, subject_id: str) -> MetsSubject:
    """Read and check one subject's image, brain mask and lesion labels.

    Raises:
        InputError: naming the file: missing or unreadable, grid differing from the image's,
            empty brain mask, non-integer or negative lesion labels.
    """
    paths = subject_paths(data_dir, subject_id)
    image = read_image(paths["image"])
    out = {"image": image}
    for key in ("brainmask", "lesions"):
        img = read_image(paths[key])
        problem = _grid_problem(image, img)
        if problem:
            raise InputError(paths[key], problem)
        values = sitk.GetArrayViewFromImage(img)
        if key == "brainmask":
            if not np.any(values > 0):
                raise InputError(paths[key], "empty brain mask")
            out[key] = sitk.Cast(img > 0, sitk.sitkUInt8)
        else:
            if np.any(values < 0) or np.any(values != np.round(values)) or values.max() > 65535:
                raise InputError(paths[key], "lesion labels must be integers in 0..65535")
            out[key] = sitk.Cast(img, sitk.sitkUInt16)
    return MetsSubject(**out)


def resample_subject(subject: MetsSubject, spacing_mm: Sequence[float]) -> MetsSubject:
    """Resample onto ``spacing_mm`` ``(x, y, z)``, same centre, direction and extent.

    The image is linear with anti-aliasing; the brain mask and the labels nearest neighbour.
    """
    source = Grid.of(subject.image)
    spacing = np.asarray(spacing_mm, dtype=np.float64).reshape(3)
    size = np.maximum(np.round(source.size * source.spacing / spacing), 1).astype(np.int64)
    grid = grid_from_centre(centre_mm(source), spacing, size, source.direction)
    nearest = {"interpolator": sitk.sitkNearestNeighbor, "antialias": False}
    return MetsSubject(
        image=resample_onto(subject.image, grid),
        brainmask=resample_onto(subject.brainmask, grid, pixel_type=sitk.sitkUInt8, **nearest),
        lesions=resample_onto(subject.lesions, grid, pixel_type=sitk.sitkUInt16, **nearest),
    )


def crop_box(mask: np.ndarray, margin: int) -> tuple[slice, slice, slice]:
    """Bounding box of the non-zero voxels of ``mask`` plus ``margin`` voxels, clipped to it."""
    idx = np.argwhere(mask > 0)
    if idx.size == 0:
        raise ValueError("empty mask")
    lo = np.maximum(idx.min(axis=0) - margin, 0)
    hi = np.minimum(idx.max(axis=0) + 1 + margin, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def scale_percentiles(
    image: np.ndarray, mask: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)
) -> np.ndarray:
    """Map the ``percentiles`` of the voxels inside ``mask`` to 0 and 1, clip to [0, 1].

    Voxels outside ``mask`` become 0.

    Raises:
        ValueError: empty mask, or both percentiles equal (constant intensity in the mask).
    """
    inside = mask > 0
    if not inside.any():
        raise ValueError("empty mask")
    lo, hi = np.percentile(image[inside].astype(np.float64), percentiles)
    if not hi > lo:
        raise ValueError(f"constant intensity in the brain ({lo:g} at both percentiles)")
    out = np.clip((image.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0)
    out[~inside] = 0.0
    return out.astype(np.float32)


def lesion_objects(
    labels: np.ndarray, brainmask: np.ndarray, spacing_zyx: Sequence[float]
) -> pd.DataFrame:
    """One row per lesion label present in ``labels``.

    Args:
        labels: ``(z, y, x)`` integer labels (``k`` = lesion ``k``).
        brainmask: ``(z, y, x)`` 0/1 brain mask, same shape.
        spacing_zyx: voxel size (mm).

    Returns:
        ``object`` (the label ``k``), ``volume_mm3``, ``diameter_mm`` (equivalent sphere,
        ``(6 V / pi)^(1/3)``), ``center_z, center_y, center_x`` (centroid, voxels) and
        ``inside_mask`` (the brain mask at the rounded centroid), in label order.
    """
    columns = ["object", "diameter_mm", "volume_mm3", "center_z", "center_y", "center_x"]
    values = np.unique(labels)
    values = values[values > 0]
    if values.size == 0:
        return pd.DataFrame(columns=[*columns, "inside_mask"])
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=int(values.max()) + 1)[values]
    grids = np.indices(labels.shape).reshape(3, -1)
    centres = (
        np.stack(
            [np.bincount(flat, weights=g, minlength=int(values.max()) + 1)[values] for g in grids],
            axis=1,
        )
        / counts[:, None]
    )
    volume = counts * float(np.prod(spacing_zyx))
    rounded = np.clip(np.rint(centres).astype(int), 0, np.asarray(labels.shape) - 1)
    return pd.DataFrame(
        {
            "object": values.astype(int),
            "diameter_mm": np.round((6.0 * volume / math.pi) ** (1.0 / 3.0), 4),
            "volume_mm3": np.round(volume, 4),
            "center_z": np.round(centres[:, 0], 3),
            "center_y": np.round(centres[:, 1], 3),
            "center_x": np.round(centres[:, 2], 3),
            "inside_mask": brainmask[tuple(rounded.T)] > 0,
        }
    )


def preprocess_subject(
    subject: MetsSubject,
    *,
    spacing_mm: Sequence[float] | None = None,
    margin: int = 5,
    percentiles: tuple[float, float] = (0.5, 99.5),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float, float]]:
    """LPS, optional resampling, crop to the brain + ``margin`` voxels, percentile scaling.

    Returns:
        ``(image, labels, brainmask, spacing_zyx)``: float32 ``(z, y, x)`` image in [0, 1] (0
        outside the brain), uint16 labels and uint8 brain mask on the same cropped grid, voxel
        size in mm.

    Raises:
        ValueError: the brain mask is empty after resampling, or constant intensity inside it.
    """
    images = (subject.image, subject.brainmask, subject.lesions)
    subject = MetsSubject(*(reorient(img, "LPS") for img in images))
    if spacing_mm is not None:
        subject = resample_subject(subject, spacing_mm)
    image = sitk.GetArrayFromImage(subject.image)
    mask = sitk.GetArrayFromImage(subject.brainmask)
    labels = sitk.GetArrayFromImage(subject.lesions)
    box = crop_box(mask, margin)
    image, mask, labels = image[box], mask[box], labels[box]
    scaled = scale_percentiles(image, mask, percentiles)
    spacing = tuple(round(float(s), 6) for s in subject.image.GetSpacing()[::-1])
    return scaled, labels.astype(np.uint16), mask.astype(np.uint8), spacing


def assign_splits(
    subject_ids: Sequence[str], fractions: Sequence[float], seed: int, source: str | Path
) -> dict[str, str]:
    """Seeded random train / val / test split of the (sorted) subject ids, by fractions.

    Reuses :func:`medrepro.data.split.split_by_patient` (one subject = one patient).
    """
    ids = [str(s) for s in subject_ids]
    table = pd.DataFrame({"case_id": ids, "patient_id": ids})
    splits = split_by_patient(table, fractions, seed, source=source)
    return dict(zip(splits["case_id"], splits["split"], strict=True))


def _study_row(sid: str, split: str, **values) -> dict:
    row = {c: 0 for c in STUDY_COLUMNS}
    row.update(study_id=sid, split=split, group="", excluded=False, reason="")
    row.update(values)
    return row


def build_dataset(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    spacing_mm: Sequence[float] | None = None,
    margin: int = 5,
    percentiles: tuple[float, float] = (0.5, 99.5),
    fractions: Sequence[float] = (0.64, 0.21, 0.15),
    seed: int = 0,
    on_bad_study: str = "error",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Preprocess every subject of ``data_dir/subjects.csv`` into ``out_dir`` (atomically).

    Args:
        data_dir: the dataset (``subjects.csv`` + NIfTI files, ``docs/lowres.md``).
        out_dir: the ``preprocessed`` directory (replaced as a whole).
        spacing_mm: ``(x, y, z)`` target voxel size (mm); native when ``None``.
        margin: crop margin around the brain mask (voxels).
        percentiles: brain intensity percentiles mapped to 0 and 1.
        fractions: train, val, test fractions of the subjects.
        seed: split seed.
        on_bad_study: ``"error"`` raises InputError; ``"exclude"`` lists the subject as excluded.

    Returns:
        ``(studies table, objects table)`` as written.

    Raises:
        InputError: bad ``subjects.csv``; a bad subject when ``on_bad_study == "error"``.
    """
    if on_bad_study not in ("error", "exclude"):
        raise ValueError(f"on_bad_study must be 'error' or 'exclude', got {on_bad_study!r}")
    data_dir = Path(data_dir)
    source = data_dir / "subjects.csv"
    subjects = read_text_csv(source)
    require_columns(subjects, ["subject_id"], source)
    ids = subjects["subject_id"].str.strip().tolist()
    bad = [s for s in ids if not s or "/" in s]
    if bad:
        raise InputError(source, f"subject ids must be non-empty and contain no '/': {bad[:5]}")
    splits = assign_splits(ids, fractions, seed, source)
    studies, rows, objects = [], [], []
    for sid in ids:
        start = time.perf_counter()
        try:
            subject = read_subject(data_dir, sid)
            try:
                image, labels, mask, spacing = preprocess_subject(
                    subject, spacing_mm=spacing_mm, margin=margin, percentiles=percentiles
                )
            except ValueError as err:
                raise InputError(subject_paths(data_dir, sid)["image"], str(err)) from err
        except InputError as err:
            if on_bad_study == "error":
                raise
            log.warning("excluded %s: %s", sid, err)
            rows.append(_study_row(sid, splits[sid], excluded=True, reason=str(err)))
            continue
        found = lesion_objects(labels, mask, spacing)
        found.insert(0, "study_id", sid)
        found.insert(1, "split", splits[sid])
        found["kind"] = "metastasis"
        objects.append(found)
        studies.append(Study(study_id=sid, image=image, mask=labels > 0, spacing=spacing))
        shape = dict(zip(("shape_z", "shape_y", "shape_x"), image.shape, strict=True))
        space = dict(zip(("spacing_z", "spacing_y", "spacing_x"), spacing, strict=True))
        rows.append(_study_row(sid, splits[sid], **shape, **space, n_objects=len(found)))
        log.info(
            "%s: %s voxels, %d lesions, %.1f s",
            sid,
            "x".join(map(str, image.shape)),
            len(found),
            time.perf_counter() - start,
        )
    table = pd.DataFrame(rows, columns=STUDY_COLUMNS)
    frames = [f for f in objects if len(f)]
    objects_table = (
        pd.concat(frames, ignore_index=True)[OBJECT_COLUMNS]
        if frames
        else pd.DataFrame(columns=OBJECT_COLUMNS)
    )
    write_studies(out_dir, studies, table, objects_table)
    return table, objects_table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro lowres-metastases-dataset",
        description="Metastases MRI: LPS, crop to the brain, [0, 1] scaling, lesion masks, splits.",
    )
    parser.add_argument("--data-dir", required=True, help="dataset directory (subjects.csv)")
    parser.add_argument("--out-dir", required=True, help="preprocessed directory (replaced)")
    parser.add_argument(
        "--spacing-mm",
        type=float,
        nargs="+",
        default=None,
        metavar="MM",
        help="resample to this voxel size: one value or (x, y, z) mm (default: native)",
    )
    parser.add_argument(
        "--margin", type=int, default=5, help="crop margin around the brain (voxels, default 5)"
    )
    parser.add_argument(
        "--percentiles",
        type=float,
        nargs=2,
        default=(0.5, 99.5),
        metavar=("LO", "HI"),
        help="brain intensity percentiles mapped to 0 and 1 (default 0.5 99.5)",
    )
    parser.add_argument(
        "--split-fractions",
        type=float,
        nargs=3,
        default=(0.64, 0.21, 0.15),
        metavar=("TRAIN", "VAL", "TEST"),
        help="fractions of subjects (default 0.64 0.21 0.15, the paper's 1250/402/300)",
    )
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    parser.add_argument(
        "--on-bad-study",
        choices=("error", "exclude"),
        default="error",
        help="bad subject: stop with an error (default) or list it as excluded",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the stage; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    spacing = args.spacing_mm
    if spacing is not None:
        if len(spacing) not in (1, 3) or min(spacing) <= 0:
            parser.error("--spacing-mm takes one or three values > 0")
        spacing = spacing * 3 if len(spacing) == 1 else spacing
    if args.margin < 0:
        parser.error("--margin must be >= 0")
    lo, hi = args.percentiles
    if not 0.0 <= lo < hi <= 100.0:
        parser.error("--percentiles needs 0 <= LO < HI <= 100")
    f = np.asarray(args.split_fractions)
    if np.any(f <= 0) or abs(f.sum() - 1.0) > 1e-6:
        parser.error("--split-fractions must be 3 positive numbers summing to 1")
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    start = time.perf_counter()
    table, objects = build_dataset(
        args.data_dir,
        args.out_dir,
        spacing_mm=spacing,
        margin=args.margin,
        percentiles=(lo, hi),
        fractions=args.split_fractions,
        seed=args.seed,
        on_bad_study=args.on_bad_study,
    )
    kept = table[~table["excluded"]]
    log.info(
        "%d studies (%d excluded), %d lesions -> %s in %.1f s; split %s",
        len(kept),
        int(table["excluded"].sum()),
        len(objects),
        args.out_dir,
        time.perf_counter() - start,
        kept["split"].value_counts().to_dict(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
