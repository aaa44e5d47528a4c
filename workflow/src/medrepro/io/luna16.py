"""The LUNA16 layout: MetaImage scans, lung label volumes, ``annotations.csv``, scan lookup.

Layout (``docs/lowres.md``)::

    subset0/ ... subset9/<seriesuid>.mhd + .raw    CT in HU (MET_SHORT), LPS world mm
    seg-lungs-LUNA16/<seriesuid>.mhd + .raw       uint8: 3 and 4 lungs, 5 airways
    annotations.csv                               seriesuid,coordX,coordY,coordZ,diameter_mm
    nodule-masks/<seriesuid>.mhd + .raw           optional uint8, k = k-th annotation row

Axis order: arrays are ``(z, y, x)`` (``sitk.GetArrayFromImage``); world points are ``(x, y, z)``
mm, as in ``annotations.csv`` (``coordX, coordY, coordZ``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from numpy.typing import ArrayLike

from medrepro.io.errors import InputError
from medrepro.io.images import read_image
from medrepro.preprocessing.geometry import Grid, index_to_mm, mm_to_index

__all__ = [
    "AIRWAY_LABEL",
    "ANNOTATION_COLUMNS",
    "ANNOTATIONS_FILE",
    "CT_PIXEL",
    "LABEL_PIXEL",
    "LUNG_LABELS",
    "LUNG_MASK_DIR",
    "NODULE_MASK_DIR",
    "Scan",
    "find_scan",
    "find_scans",
    "lung_mask_path",
    "nodule_mask_path",
    "read_annotations",
    "read_mhd",
    "same_grid",
    "unknown_seriesuids",
    "voxel_to_world",
    "world_to_voxel",
    "write_mhd",
]

#: lung labels of the LUNA16 lung masks (``seg-lungs-LUNA16``); ours: 3 right, 4 left lung
LUNG_LABELS: tuple[int, int] = (3, 4)
#: trachea and main bronchi in the LUNA16 lung masks
AIRWAY_LABEL = 5
ANNOTATION_COLUMNS = ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"]
ANNOTATIONS_FILE = "annotations.csv"
LUNG_MASK_DIR = "seg-lungs-LUNA16"
NODULE_MASK_DIR = "nodule-masks"
#: SimpleITK pixel types written as ``MET_SHORT`` (CT, HU) and ``MET_UCHAR`` (labels)
CT_PIXEL = sitk.sitkInt16
LABEL_PIXEL = sitk.sitkUInt8

_SUBSET_RE = re.compile(r"^subset(\d+)$")
_ELEMENT_BYTES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4,
    "MET_UINT": 4, "MET_LONG": 8, "MET_ULONG": 8, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8,
    "MET_FLOAT": 4, "MET_DOUBLE": 8,
}  # fmt: skip
_PIXEL_RANGE = {CT_PIXEL: (-32768, 32767), LABEL_PIXEL: (0, 255)}


@dataclass(frozen=True)
class Scan:
    """One LUNA16 scan.

    Attributes:
        seriesuid: DICOM series instance UID (the file stem).
        subset: LUNA16 subset number (``subset<N>`` directory).
        path: the ``.mhd`` header.
    """

    seriesuid: str
    subset: int
    path: Path


def _mhd_header(path: Path) -> dict[str, str]:
    """``key = value`` fields of a MetaImage header (keys as written)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        raise InputError(path, f"unreadable header ({err})") from err
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _check_raw(path: Path) -> None:
    """Check that the ``.raw`` of the header ``path`` exists and is long enough.

    Raises:
        InputError: naming the ``.raw`` (missing or short) or the ``.mhd`` (bad header).
    """
    fields = _mhd_header(path)
    data_file = fields.get("ElementDataFile")
    if not data_file:
        raise InputError(path, "not a MetaImage header (no ElementDataFile)")
    if data_file.upper() == "LOCAL" or data_file.upper().startswith("LIST"):
        return  # data inside the header file, or a slice list: left to SimpleITK
    if "%" in data_file:
        return  # printf-style slice pattern: left to SimpleITK
    raw = path.parent / data_file
    if not raw.is_file():
        raise InputError(raw, f"file not found (data file of {path.name})")
    if fields.get("CompressedData", "False").lower() == "true":
        return
    try:
        dims = [int(v) for v in fields["DimSize"].split()]
        element = _ELEMENT_BYTES[fields["ElementType"]]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
    except (KeyError, ValueError) as err:
        raise InputError(path, f"bad MetaImage header ({err!r})") from err
    needed = int(np.prod(dims, dtype=np.int64)) * element * channels
    size = raw.stat().st_size
    if size < needed:
        raise InputError(
            raw, f"short file: {size} bytes, {path.name} needs {needed} (DimSize {dims})"
        )


def read_mhd(path: str | Path, *, pixel_type: int = sitk.sitkUnknown) -> sitk.Image:
    """Read and validate a MetaImage (``.mhd`` + ``.raw``).

    The size of the ``.raw`` is checked against ``DimSize`` x element size before reading; the
    image is then read by :func:`medrepro.io.images.read_image` (3D, finite, spacing > 0,
    orthonormal direction).

    Args:
        path: the ``.mhd`` header.
        pixel_type: SimpleITK pixel type to cast to; ``sitk.sitkUnknown`` keeps the stored type.

    Returns:
        The image with its origin (mm), spacing (mm) and direction.

    Raises:
        InputError: missing ``.mhd``; missing or short ``.raw`` (naming the ``.raw``); unreadable
            or invalid image.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    _check_raw(path)
    return read_image(path, pixel_type=pixel_type)


def write_mhd(img: sitk.Image, path: str | Path, *, pixel_type: int = CT_PIXEL) -> None:
    """Write ``img`` as ``<stem>.mhd`` + ``<stem>.raw`` atomically (both files or neither).

    Args:
        img: 3D image.
        path: the ``.mhd`` path; the ``.raw`` is written beside it.
        pixel_type: :data:`CT_PIXEL` (``MET_SHORT``, HU) or :data:`LABEL_PIXEL` (``MET_UCHAR``).

    Raises:
        ValueError: ``path`` does not end in ``.mhd``, or a voxel value does not fit the pixel type.
    """
    path = Path(path)
    if path.suffix.lower() != ".mhd":
        raise ValueError(f"{path}: a MetaImage header must end in .mhd")
    if pixel_type in _PIXEL_RANGE:
        low, high = _PIXEL_RANGE[pixel_type]
        stats = sitk.MinimumMaximumImageFilter()
        stats.Execute(img)
        if stats.GetMinimum() < low or stats.GetMaximum() > high:
            raise ValueError(
                f"{path}: values [{stats.GetMinimum()}, {stats.GetMaximum()}] do not fit "
                f"[{low}, {high}]"
            )
    if img.GetPixelID() != pixel_type:
        img = sitk.Cast(img, pixel_type)
    raw = path.with_suffix(".raw")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent))
    moved_raw = False
    try:
        sitk.WriteImage(img, str(tmp / path.name), useCompression=False)
        os.replace(tmp / raw.name, raw)
        moved_raw = True
        os.replace(tmp / path.name, path)
    except BaseException:
        if moved_raw:
            raw.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def same_grid(a: sitk.Image, b: sitk.Image, *, atol_mm: float = 1e-3) -> bool:
    """True if two images have the same size, and origin, spacing, direction within ``atol_mm``."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=atol_mm)
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=atol_mm)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-4)
    )


def world_to_voxel(img: sitk.Image | Grid, xyz_mm: ArrayLike) -> np.ndarray:
    """Continuous voxel indices in array order ``(z, y, x)`` of world points ``(x, y, z)`` mm.

    Args:
        img: the scan (or its grid).
        xyz_mm: ``(..., 3)`` world points, e.g. ``annotations.csv``'s ``coordX, coordY, coordZ``.

    Returns:
        ``(..., 3)`` float64 continuous indices ``(z, y, x)``, voxel centres at integers, unclipped.
    """
    grid = img if isinstance(img, Grid) else Grid.of(img)
    return mm_to_index(grid, xyz_mm)[..., ::-1].copy()


def voxel_to_world(img: sitk.Image | Grid, zyx: ArrayLike) -> np.ndarray:
    """World points ``(x, y, z)`` mm of continuous indices ``(z, y, x)`` (:func:`world_to_voxel`)."""
    grid = img if isinstance(img, Grid) else Grid.of(img)
    return index_to_mm(grid, np.asarray(zyx, dtype=np.float64)[..., ::-1])


def read_annotations(
    path: str | Path,
    known_uids: Iterable[str] | None = None,
    *,
    collect_unknown: bool = False,
) -> pd.DataFrame:
    """Read and validate ``annotations.csv`` (world mm), keeping the file's row order.

    Args:
        path: the CSV with :data:`ANNOTATION_COLUMNS`.
        known_uids: the series present; a row of another series is an error unless
            ``collect_unknown`` (then rows are kept; see :func:`unknown_seriesuids`).
        collect_unknown: keep rows of unknown series instead of raising.

    Returns:
        Table with ``seriesuid`` (str), float ``coordX, coordY, coordZ, diameter_mm`` and
        ``object`` (1-based row number within its series, in file order).

    Raises:
        InputError: naming ``path``: missing or unreadable, a missing column, a non-numeric or
            non-finite value, a diameter <= 0 mm, or an unknown seriesuid (named).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(path, f"unreadable CSV ({err})") from err
    missing = [c for c in ANNOTATION_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(path, f"missing columns {missing}; found {list(table.columns)}")
    table = table[ANNOTATION_COLUMNS].copy()
    table["seriesuid"] = table["seriesuid"].str.strip()
    for column in ANNOTATION_COLUMNS[1:]:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=float))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(
                path,
                f"row {row + 2}: {column} = {table[column].iloc[row]!r} is not a finite number",
            )
        table[column] = values.astype(float)
    small = table["diameter_mm"] <= 0
    if small.any():
        row = int(np.flatnonzero(small.to_numpy())[0])
        raise InputError(path, f"row {row + 2}: diameter_mm must be > 0 mm")
    if (table["seriesuid"] == "").any():
        raise InputError(path, "empty seriesuid")
    table["object"] = table.groupby("seriesuid", sort=False).cumcount() + 1
    if known_uids is not None and not collect_unknown:
        unknown = unknown_seriesuids(table, known_uids)
        if unknown:
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            raise InputError(path, f"unknown seriesuid {unknown[0]}{more}: no such scan")
    return table.reset_index(drop=True)


def unknown_seriesuids(table: pd.DataFrame, known_uids: Iterable[str]) -> list[str]:
    """Series of ``table`` (annotations) that are not in ``known_uids``, in first-seen order."""
    known = set(known_uids)
    return [uid for uid in dict.fromkeys(table["seriesuid"]) if uid not in known]


def find_scans(data_dir: str | Path) -> dict[str, Scan]:
    """Every ``subset<N>/<seriesuid>.mhd`` under ``data_dir``, by seriesuid (sorted by subset, uid).

    Raises:
        InputError: ``data_dir`` missing or holding no ``subset*`` directory; a seriesuid present
            in two places (naming the second).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(data_dir, "directory not found")
    subsets = sorted(
        (int(m.group(1)), d)
        for d in data_dir.iterdir()
        if d.is_dir() and (m := _SUBSET_RE.match(d.name))
    )
    if not subsets:
        raise InputError(data_dir, "no subset<N>/ directory (LUNA16 layout)")
    scans: dict[str, Scan] = {}
    for number, directory in subsets:
        for header in sorted(directory.glob("*.mhd")):
            uid = header.stem
            if uid in scans:
                raise InputError(header, f"seriesuid {uid} also in {scans[uid].path}")
            scans[uid] = Scan(seriesuid=uid, subset=number, path=header)
    return scans


def find_scan(data_dir: str | Path, seriesuid: str) -> Scan:
    """The scan ``seriesuid`` under ``data_dir``'s ``subset*/`` directories.

    Raises:
        InputError: naming ``data_dir`` if no subset holds the scan.
    """
    scans = find_scans(data_dir)
    if seriesuid not in scans:
        raise InputError(data_dir, f"scan {seriesuid} not found in any subset*/ directory")
    return scans[seriesuid]


def lung_mask_path(data_dir: str | Path, seriesuid: str) -> Path:
    """``seg-lungs-LUNA16/<seriesuid>.mhd`` of a scan.

    Raises:
        InputError: naming the expected file and the scan if it does not exist.
    """
    path = Path(data_dir) / LUNG_MASK_DIR / f"{seriesuid}.mhd"
    if not path.is_file():
        raise InputError(path, f"lung mask of scan {seriesuid} not found")
    return path


def nodule_mask_path(data_dir: str | Path, seriesuid: str) -> Path | None:
    """``nodule-masks/<seriesuid>.mhd``, or None when the dataset has no ``nodule-masks/``.

    Raises:
        InputError: ``nodule-masks/`` exists but lacks this scan's mask (naming the file).
    """
    directory = Path(data_dir) / NODULE_MASK_DIR
    if not directory.is_dir():
        return None
    path = directory / f"{seriesuid}.mhd"
    if not path.is_file():
        raise InputError(path, f"nodule mask of scan {seriesuid} not found")
    return path
