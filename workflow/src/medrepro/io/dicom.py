"""DICOM series (one file per slice) writing and checked reading.

Writing: :func:`write_dicom_series` stores a 3D SimpleITK image as an MR Image Storage series in
Explicit VR Little Endian with pydicom, one file per slice along the image's third axis
(``IM_0001.dcm`` ...). The geometry follows the image exactly, for any (also oblique) direction:

- ``ImageOrientationPatient`` = the first two direction columns (row cosine = direction of
  increasing column index = image x axis; column cosine = image y axis);
- ``ImagePositionPatient`` of slice ``k`` = ``origin + direction[:, 2] * spacing[2] * k`` (LPS mm);
- ``PixelSpacing`` = ``[spacing_y, spacing_x]`` (row spacing first, as DICOM wants).

Readers sort slices along the normal ``row x col``; an image whose direction is left-handed
(``det < 0``, e.g. ``LPI``) therefore reads back with its slice axis reversed (the same physical
image, another direction matrix). Intensities are stored as 16-bit integers with
``RescaleSlope``/``RescaleIntercept`` so that float values round-trip to within ``slope / 2``.

Reading: :func:`read_dicom_series` refuses series a pipeline must not silently accept (several
series, one slice, mixed orientations, missing slices, uneven spacing, non-finite values) with an
:class:`~medrepro.io.errors.InputError` naming the directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medrepro.io.atomic import atomic_dir
from medrepro.io.errors import InputError

__all__ = ["MR_IMAGE_STORAGE", "write_dicom_series", "read_dicom_series", "rescale_parameters"]

#: SOP Class UID of MR Image Storage.
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"

_ORIENTATION_TOL = 1e-4
_GAP_FACTOR = 1.5
_SPACING_RTOL = 0.01


def _ds(value: float) -> str:
    """Decimal string (VR DS, at most 16 characters) of ``value``."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.6g}"


def rescale_parameters(values: np.ndarray) -> tuple[float, float, bool]:
    """Slope, intercept and signedness to store float ``values`` as 16-bit integers.

    Integer-valued data that fit 16 bits keep slope 1 and intercept 0 (exact); otherwise the
    range ``[min, max]`` is spread over the 65536 levels, so the round-trip error is at most
    ``slope / 2``.

    Args:
        values: the voxel values (any shape).

    Returns:
        ``(slope, intercept, signed)``; both numbers are exactly representable as DS strings.
    """
    vmin, vmax = float(np.min(values)), float(np.max(values))
    if np.all(np.equal(np.mod(values, 1), 0)):
        if vmin >= 0 and vmax <= 65535:
            return 1.0, 0.0, False
        if vmin >= -32768 and vmax <= 32767:
            return 1.0, 0.0, True
    signed = vmin < 0
    span = vmax - vmin
    slope = float(_ds(span / 65535.0 * (1 + 1e-6))) if span > 0 else 1.0
    offset = 32768.0 * slope if signed else 0.0
    intercept = float(_ds(vmin + offset))
    return slope, intercept, signed


def _stored(values: np.ndarray, slope: float, intercept: float, signed: bool) -> np.ndarray:
    lo, hi, dtype = (-32768, 32767, "<i2") if signed else (0, 65535, "<u2")
    raw = np.rint((values.astype(np.float64) - intercept) / slope)
    return np.clip(raw, lo, hi).astype(dtype)


def _uid(seed_uid: str | None, *parts: object) -> str:
    if seed_uid is None:
        return generate_uid()
    return generate_uid(entropy_srcs=[str(seed_uid), *map(str, parts)])


def _base_dataset(
    *,
    modality: str,
    series_description: str,
    patient_id: str,
    study_uid: str,
    series_uid: str,
    frame_uid: str,
) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = MR_IMAGE_STORAGE if modality == "MR" else "1.2.840.10008.5.1.4.1.1.7"
    ds.Modality = modality
    ds.PatientName = patient_id
    ds.PatientID = patient_id
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.SeriesDescription = series_description
    ds.StudyDate = "20000101"
    ds.SeriesDate = "20000101"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    return ds


def write_dicom_series(
    img: sitk.Image,
    out_dir: str | Path,
    *,
    modality: str = "MR",
    series_description: str = "",
    seed_uid: str | None = None,
    patient_id: str = "ANONYMOUS",
    study_uid: str | None = None,
) -> list[Path]:
    """Write a 3D image as a DICOM series, one file per slice, atomically.

    Args:
        img: 3D scalar image in any orientation; slices are taken along its third (z) axis.
        out_dir: directory to create (replaced if it exists); it appears only when complete.
        modality: DICOM Modality (``MR`` uses the MR Image Storage SOP class).
        series_description: SeriesDescription tag.
        seed_uid: any string; when given, every UID is derived from it deterministically
            (``generate_uid(entropy_srcs=...)``) so that reruns give identical files.
        patient_id: PatientID and PatientName.
        study_uid: StudyInstanceUID to share with other series; derived from ``seed_uid``
            (or random) when ``None``.

    Returns:
        The written file paths in slice order (final locations).
    """
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("expected a 3D scalar image")
    out_dir = Path(out_dir)
    values = sitk.GetArrayFromImage(img)  # (Z, Y, X)
    if not np.all(np.isfinite(values)):
        raise ValueError("image has NaN/inf voxels")
    slope, intercept, signed = rescale_parameters(values)
    stored = _stored(values, slope, intercept, signed)
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing = np.asarray(img.GetSpacing(), dtype=np.float64)
    origin = np.asarray(img.GetOrigin(), dtype=np.float64)
    base = _base_dataset(
        modality=modality,
        series_description=series_description,
        patient_id=patient_id,
        study_uid=study_uid or _uid(seed_uid, "study"),
        series_uid=_uid(seed_uid, "series"),
        frame_uid=_uid(seed_uid, "frame"),
    )
    base.PixelRepresentation = 1 if signed else 0
    base.Rows, base.Columns = int(values.shape[1]), int(values.shape[2])
    base.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]
    base.SliceThickness = _ds(spacing[2])
    base.SpacingBetweenSlices = _ds(spacing[2])
    base.ImageOrientationPatient = [
        _ds(v) for v in np.concatenate([direction[:, 0], direction[:, 1]])
    ]
    base.RescaleSlope = _ds(slope)
    base.RescaleIntercept = _ds(intercept)
    base.RescaleType = "US"
    names = [f"IM_{k + 1:04d}.dcm" for k in range(values.shape[0])]
    with atomic_dir(out_dir) as tmp:
        for k, name in enumerate(names):
            ds = base.copy()
            sop_uid = _uid(seed_uid, "instance", k)
            ds.SOPInstanceUID = sop_uid
            ds.InstanceNumber = k + 1
            position = origin + direction[:, 2] * spacing[2] * k
            ds.ImagePositionPatient = [_ds(v) for v in position]
            ds.SliceLocation = _ds(float(position @ np.cross(direction[:, 0], direction[:, 1])))
            ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
            meta.MediaStorageSOPInstanceUID = sop_uid
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta = meta
            ds.save_as(tmp / name, enforce_file_format=True)
    return [out_dir / name for name in names]


def _floats(ds: Dataset, keyword: str, n: int, path: Path, directory: Path) -> np.ndarray:
    value = ds.get(keyword)
    if value is None or len(value) != n:
        raise InputError(directory, f"{path.name}: missing or malformed {keyword}")
    return np.asarray([float(v) for v in value], dtype=np.float64)


def _check_headers(directory: Path, files: Sequence[str]) -> None:
    """Geometry checks on the slice headers (no pixel data read)."""
    paths = [Path(f) for f in files]
    headers = []
    for path in paths:
        try:
            headers.append(pydicom.dcmread(path, stop_before_pixels=True))
        except Exception as exc:  # noqa: BLE001 - any parse failure is bad input
            raise InputError(directory, f"{path.name}: unreadable DICOM ({exc})") from exc
    iops = np.stack(
        [
            _floats(h, "ImageOrientationPatient", 6, p, directory)
            for h, p in zip(headers, paths, strict=True)
        ]
    )
    if np.abs(iops - iops[0]).max() > _ORIENTATION_TOL:
        bad = int(np.argmax(np.abs(iops - iops[0]).max(axis=1)))
        raise InputError(
            directory,
            f"inconsistent ImageOrientationPatient: {paths[0].name} has {iops[0].tolist()}, "
            f"{paths[bad].name} has {iops[bad].tolist()}",
        )
    shapes = {(int(h.get("Rows", 0)), int(h.get("Columns", 0))) for h in headers}
    if len(shapes) != 1:
        raise InputError(directory, f"slices have different Rows/Columns: {sorted(shapes)}")
    row, col = iops[0, :3], iops[0, 3:]
    normal = np.cross(row, col)
    ipps = np.stack(
        [
            _floats(h, "ImagePositionPatient", 3, p, directory)
            for h, p in zip(headers, paths, strict=True)
        ]
    )
    along = ipps @ normal
    order = np.argsort(along, kind="stable")
    along, ipps = along[order], ipps[order]
    names = [paths[i].name for i in order]
    steps = np.diff(along)
    if np.any(steps <= 1e-6):
        k = int(np.argmin(steps))
        raise InputError(
            directory,
            f"duplicate slice position {along[k]:.3f} mm in {names[k]} and {names[k + 1]}",
        )
    median = float(np.median(steps))
    for k, step in enumerate(steps):
        if step > _GAP_FACTOR * median:
            missing = int(round(step / median)) - 1
            raise InputError(
                directory,
                f"missing slice(s): gap of {step:.3f} mm between {names[k]} "
                f"({along[k]:.3f} mm along the normal) and {names[k + 1]} ({along[k + 1]:.3f} mm), "
                f"expected step {median:.3f} mm (about {max(missing, 1)} slice(s) missing, first "
                f"expected at {along[k] + median:.3f} mm)",
            )
    uneven = np.abs(steps - median) > _SPACING_RTOL * median
    if np.any(uneven):
        k = int(np.argmax(np.abs(steps - median)))
        raise InputError(
            directory,
            f"uneven slice spacing: step {steps[k]:.4f} mm between {names[k]} and {names[k + 1]}, "
            f"median step {median:.4f} mm (tolerance 1 %)",
        )
    inplane = (ipps - ipps[0]) - np.outer(along - along[0], normal)
    if np.abs(inplane).max() > max(_SPACING_RTOL * median, 1e-3):
        raise InputError(
            directory, "slice positions drift within the slice plane (sheared or tilted stack)"
        )


def read_dicom_series(directory: str | Path) -> sitk.Image:
    """Read the one DICOM series in ``directory`` as a float32 image, after checking it.

    Args:
        directory: a directory holding exactly one DICOM series, one file per slice.

    Returns:
        The float32 image (rescale applied), geometry from the headers (LPS mm).

    Raises:
        InputError: naming ``directory``: not a directory, no DICOM files, more than one series,
            fewer than 2 slices, inconsistent orientation or matrix size, a missing slice (a gap
            along the normal larger than 1.5x the median step), uneven spacing (a step more than
            1 % off the median), or non-finite voxel values.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(directory, "DICOM series directory not found")
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(directory))
    if not series:
        raise InputError(directory, "no DICOM files found")
    if len(series) > 1:
        raise InputError(directory, f"{len(series)} DICOM series found, expected exactly one")
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(directory), series[0])
    if len(files) < 2:
        raise InputError(directory, f"{len(files)} slice(s) found, a 3D series needs at least 2")
    _check_headers(directory, files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.SetOutputPixelType(sitk.sitkFloat32)
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise InputError(
            directory, f"unreadable DICOM series ({str(exc).strip().splitlines()[-1]})"
        ) from exc
    values = sitk.GetArrayViewFromImage(img)
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        raise InputError(directory, f"{bad} NaN/inf voxels")
    return img
