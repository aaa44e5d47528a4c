"""Stage ``brain-convert``: one subject of a brain MRI cohort -> LPS NIfTI files.

First step of the BraTS preprocessing (Thakur et al. 2022, ``docs/brain_extraction.md``): every
modality is read from a NIfTI file or a DICOM series directory, reoriented to LPS (axes permuted
and flipped only, no interpolation) and written as float32 ``<sid>_<mod>.nii.gz``; the ground-truth
brain mask, which must be binary and lie on the reference (t1ce) grid, is written as uint8
``<sid>_mask.nii.gz``; ``convert.json`` records the sources, formats and input orientations. The
output directory appears only when everything succeeded.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from medrepro.io.atomic import atomic_dir, write_json
from medrepro.io.errors import InputError
from medrepro.io.images import read_image, write_image
from medrepro.io.tables import read_text_csv, require_columns
from medrepro.preprocessing.orientation import orientation_code, reorient

__all__ = [
    "MODALITIES",
    "REFERENCE",
    "ORIGIN_TOL_MM",
    "DIRECTION_TOL",
    "subject_row",
    "source_path",
    "read_modality",
    "check_same_grid",
    "check_binary",
    "convert_subject",
    "main",
]

#: BraTS modalities, in output order
MODALITIES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
#: modality whose grid the ground-truth mask lies on
REFERENCE = "t1ce"
#: grid tolerances between the mask and the reference image: origin/spacing (mm), direction
ORIGIN_TOL_MM = 1e-3
DIRECTION_TOL = 1e-4


def subject_row(table: pd.DataFrame, subject: str, source: str | Path) -> pd.Series:
    """The row of ``subject`` in a cohort table.

    Raises:
        InputError: naming ``source`` if the subject is absent or listed more than once.
    """
    rows = table[table["subject_id"] == subject]
    if len(rows) == 0:
        raise InputError(source, f"subject {subject!r} not listed")
    if len(rows) > 1:
        raise InputError(source, f"subject {subject!r} listed {len(rows)} times")
    return rows.iloc[0]


def source_path(row: pd.Series, column: str, root: Path, source: str | Path) -> Path:
    """Absolute path of the file or directory in ``row[column]`` (relative to ``root``).

    Raises:
        InputError: naming ``source`` (``subjects.csv``), the subject and the column if the cell
            is empty or the path does not exist.
    """
    subject = row["subject_id"]
    cell = str(row[column]).strip()
    if not cell:
        raise InputError(source, f"subject {subject!r}: empty cell for modality {column!r}")
    path = root / cell
    if not path.exists():
        raise InputError(source, f"subject {subject!r}: {column!r} file not found: {path}")
    return path


def read_modality(path: Path) -> tuple[sitk.Image, str]:
    """Read a NIfTI (or other single-file) image or a DICOM series directory as float32.

    Returns:
        ``(image, format)`` with format ``"dicom"`` for a directory, else ``"nifti"``.

    Raises:
        InputError: unreadable or invalid image or series.
    """
    if path.is_dir():
        from medrepro.io.dicom import read_dicom_series  # written by a sibling module

        return sitk.Cast(read_dicom_series(path), sitk.sitkFloat32), "dicom"
    return read_image(path), "nifti"


def check_same_grid(
    img: sitk.Image,
    reference: sitk.Image,
    source: str | Path,
    *,
    what: str,
    origin_tol_mm: float = ORIGIN_TOL_MM,
    direction_tol: float = DIRECTION_TOL,
) -> None:
    """Raise InputError naming ``source`` unless ``img`` lies on ``reference``'s grid.

    Size must be equal; origin and spacing within ``origin_tol_mm`` (mm); direction cosines
    within ``direction_tol``.
    """
    problems = []
    if img.GetSize() != reference.GetSize():
        problems.append(f"size {img.GetSize()} vs {reference.GetSize()}")
    for name, a, b, tol in (
        ("origin", img.GetOrigin(), reference.GetOrigin(), origin_tol_mm),
        ("spacing", img.GetSpacing(), reference.GetSpacing(), origin_tol_mm),
        ("direction", img.GetDirection(), reference.GetDirection(), direction_tol),
    ):
        if np.max(np.abs(np.subtract(a, b))) > tol:
            problems.append(
                f"{name} {np.round(a, 4).tolist()} vs {np.round(b, 4).tolist()} (tol {tol})"
            )
    if problems:
        raise InputError(source, f"{what} is not on the reference grid: {'; '.join(problems)}")


def check_binary(img: sitk.Image, source: str | Path) -> sitk.Image:
    """Return ``img`` as uint8 if its voxels are all 0 or 1, else raise InputError."""
    values = np.unique(sitk.GetArrayViewFromImage(img))
    if not np.all(np.isin(values, (0, 1))):
        shown = values[:8].tolist()
        raise InputError(source, f"mask must be binary (0/1), found values {shown}")
    return sitk.Cast(img, sitk.sitkUInt8)


def convert_subject(
    cohort: str | Path,
    subject: str,
    out_dir: str | Path,
    *,
    modalities: Sequence[str] = MODALITIES,
    reference: str = REFERENCE,
) -> dict[str, Any]:
    """Convert one subject: LPS float32 NIfTI per modality, uint8 mask, ``convert.json``.

    Args:
        cohort: cohort directory holding ``subjects.csv`` (columns ``subject_id``, the
            modalities and ``mask``; paths relative to the directory).
        subject: subject id.
        out_dir: output directory, replaced atomically.
        modalities: modalities to convert (must include ``reference``).
        reference: modality whose grid the mask lies on.

    Returns:
        The ``convert.json`` record.

    Raises:
        InputError: bad table, unknown subject, empty cell or missing file (naming
            ``subjects.csv``, the subject and the modality), unreadable image, non-binary mask or
            mask off the reference grid (naming the mask file).
    """
    if reference not in modalities:
        raise ValueError(f"reference modality {reference!r} not in {list(modalities)}")
    cohort = Path(cohort)
    table_path = cohort / "subjects.csv"
    table = read_text_csv(table_path)
    require_columns(table, ["subject_id"], table_path)
    missing = [c for c in (*modalities, "mask") if c not in table.columns]
    if missing:
        raise InputError(table_path, f"subject {subject!r}: no column for modality {missing}")
    row = subject_row(table, subject, table_path)
    paths = {mod: source_path(row, mod, cohort, table_path) for mod in modalities}
    mask_path = source_path(row, "mask", cohort, table_path)

    images: dict[str, sitk.Image] = {}
    record: dict[str, Any] = {
        "subject_id": subject,
        "sources": {},
        "formats": {},
        "orientation_in": {},
    }
    for mod, path in paths.items():
        img, fmt = read_modality(path)
        record["sources"][mod] = str(path)
        record["formats"][mod] = fmt
        record["orientation_in"][mod] = orientation_code(img)
        images[mod] = sitk.Cast(reorient(img, "LPS"), sitk.sitkFloat32)
        print(f"{subject} {mod}: {fmt}, {record['orientation_in'][mod]} -> LPS", file=sys.stderr)

    if mask_path.is_dir():
        raise InputError(mask_path, "the mask must be a NIfTI file, not a directory")
    mask_in = read_image(mask_path)
    record["mask_source"] = str(mask_path)
    record["mask_orientation_in"] = orientation_code(mask_in)
    mask = check_binary(reorient(mask_in, "LPS"), mask_path)
    check_same_grid(mask, images[reference], mask_path, what=f"mask (vs {reference})")

    with atomic_dir(out_dir) as tmp:
        for mod, img in images.items():
            write_image(img, tmp / f"{subject}_{mod}.nii.gz")
        write_image(mask, tmp / f"{subject}_mask.nii.gz")
        write_json(tmp / "convert.json", record)
    return record


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrepro brain-convert", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--cohort", type=Path, required=True, help="directory with subjects.csv")
    parser.add_argument("--subject", required=True, help="subject_id to convert")
    parser.add_argument("--out-dir", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--modalities", nargs="+", default=list(MODALITIES), help="modalities to convert"
    )
    parser.add_argument(
        "--reference", default=REFERENCE, help="modality whose grid the mask lies on"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m medrepro brain-convert --cohort DIR --subject SID --out-dir DIR``."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.reference not in args.modalities:
        parser.error(f"--reference {args.reference} must be one of --modalities")
    convert_subject(
        args.cohort,
        args.subject,
        args.out_dir,
        modalities=args.modalities,
        reference=args.reference,
    )
    print(f"wrote {args.out_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
