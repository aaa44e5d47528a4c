"""Validated image reading and atomic image writing through SimpleITK.

Every volume that enters the pipeline goes through :func:`read_image`, which refuses files a
network must never see: unreadable or truncated files, non-3D images, non-finite voxels, spacing
that is not strictly positive and direction matrices that are not orthonormal. NIfTI headers are
also checked directly, because ITK silently replaces a zero ``pixdim`` by 1 and a negative one by
its absolute value.

Array convention: :func:`image_to_array` returns ``(X, Y, Z)`` (SimpleITK index order), i.e. the
transpose of ``sitk.GetArrayFromImage`` which is ``(Z, Y, X)``.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medrepro.io.atomic import atomic_path
from medrepro.io.errors import InputError

__all__ = ["read_image", "write_image", "image_to_array", "array_to_image"]

_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_DIRECTION_TOL = 1e-4


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(_NIFTI_SUFFIXES)


def _read_payload(path: Path) -> bytes:
    """Whole file content, decompressed if ``.gz``; raises InputError if the stream is cut."""
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(path, f"truncated or corrupt file ({exc})") from exc


def _nifti_header(path: Path, raw: bytes) -> nib.Nifti1Header | nib.Nifti2Header:
    """Raw NIfTI-1/2 header, without nibabel's automatic fixes (which hide bad ``pixdim``)."""
    for klass in (nib.Nifti1Header, nib.Nifti2Header):
        size = klass.sizeof_hdr
        if len(raw) < size:
            continue
        for order in ("<", ">"):
            if int(np.frombuffer(raw[:4], dtype=f"{order}i4")[0]) == size:
                return klass.from_fileobj(io.BytesIO(raw[:size]), check=False)
    raise InputError(path, "not a NIfTI file (bad or truncated header)")


def _check_nifti(path: Path) -> None:
    """Check a NIfTI file directly: ``pixdim``, completeness and finiteness of the voxel data.

    ITK replaces ``pixdim`` <= 0, reads a truncated ``.nii`` without complaint and turns NaN
    voxels into 0, so these checks cannot be done on the SimpleITK image.
    """
    raw = _read_payload(path)
    hdr = _nifti_header(path, raw)
    ndim = int(hdr["dim"][0])
    pixdim = np.asarray(hdr["pixdim"][1:4], dtype=float)
    if not np.all(pixdim[: min(max(ndim, 1), 3)] > 0):
        raise InputError(path, f"spacing must be > 0 mm, header pixdim[1:4] = {pixdim.tolist()}")
    count = int(np.prod([int(d) for d in hdr["dim"][1 : ndim + 1]], dtype=np.int64))
    offset = int(hdr["vox_offset"])
    dtype = hdr.get_data_dtype()
    needed = offset + count * dtype.itemsize
    if len(raw) < needed:
        raise InputError(path, f"truncated file: {len(raw)} bytes, header needs {needed}")
    if dtype.kind in "fc":
        values = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise InputError(path, f"{bad} NaN/inf voxels")


def _check_geometry(path: Path, img: sitk.Image) -> None:
    spacing = np.asarray(img.GetSpacing(), dtype=float)
    if not np.all(np.isfinite(spacing)) or not np.all(spacing > 0):
        raise InputError(path, f"spacing must be > 0 mm, got {spacing.tolist()}")
    direction = np.asarray(img.GetDirection(), dtype=float).reshape(3, 3)
    if not np.all(np.isfinite(direction)) or not np.allclose(
        direction.T @ direction, np.eye(3), atol=_DIRECTION_TOL
    ):
        raise InputError(path, f"direction matrix is not orthonormal: {direction.tolist()}")
    if not np.all(np.isfinite(img.GetOrigin())):
        raise InputError(path, f"non-finite origin {list(img.GetOrigin())}")


def read_image(path: str | Path, *, pixel_type: int = sitk.sitkFloat32) -> sitk.Image:
    """Read and validate a 3D scalar image (NIfTI, MetaImage or any SimpleITK format).

    Args:
        path: image file.
        pixel_type: SimpleITK pixel type to cast to on reading (default float32).

    Returns:
        The image, with physical origin (mm), spacing (mm) and direction as stored.

    Raises:
        InputError: missing, unreadable or truncated file; not 3D or not scalar; any NaN/inf voxel;
            spacing <= 0 mm (also as stored in a NIfTI header); non-orthonormal direction.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    if _is_nifti(path):
        _check_nifti(path)
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        if reader.GetDimension() != 3:
            raise InputError(path, f"expected a 3D image, got {reader.GetDimension()}D")
        if reader.GetNumberOfComponents() != 1:
            raise InputError(
                path, f"expected a scalar image, got {reader.GetNumberOfComponents()} components"
            )
        reader.SetOutputPixelType(pixel_type)
        img = reader.Execute()
    except RuntimeError as exc:
        raise InputError(path, f"unreadable image ({str(exc).strip().splitlines()[-1]})") from exc
    _check_geometry(path, img)
    values = sitk.GetArrayViewFromImage(img)
    if np.issubdtype(values.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise InputError(path, f"{bad} NaN/inf voxels")
    return img


def write_image(img: sitk.Image, path: str | Path) -> None:
    """Write ``img`` atomically; the format follows the suffix (``.nii.gz`` is compressed)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        compress = path.name.lower().endswith((".gz", ".nrrd", ".mha"))
        sitk.WriteImage(img, str(tmp), useCompression=compress)


def image_to_array(img: sitk.Image) -> np.ndarray:
    """Voxel array in ``(X, Y, Z)`` index order (a copy), same dtype as the image."""
    return sitk.GetArrayFromImage(img).transpose(2, 1, 0).copy()


def array_to_image(
    arr_xyz: np.ndarray,
    origin: Sequence[float] | np.ndarray,
    spacing: Sequence[float] | np.ndarray,
    direction: Sequence[float] | np.ndarray,
) -> sitk.Image:
    """Build an image from an ``(X, Y, Z)`` array and its grid.

    Args:
        arr_xyz: voxel values, shape ``(X, Y, Z)``.
        origin: physical position (mm) of voxel ``(0, 0, 0)``.
        spacing: voxel size (mm) along X, Y, Z.
        direction: ``(3, 3)`` matrix (columns are the axes) or its 9 values row-major.

    Returns:
        The image; ``image_to_array`` of it gives back ``arr_xyz``.
    """
    arr = np.asarray(arr_xyz)
    if arr.ndim != 3:
        raise ValueError(f"expected an (X, Y, Z) array, got shape {arr.shape}")
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    img.SetOrigin(tuple(float(v) for v in np.asarray(origin, dtype=float).reshape(3)))
    img.SetSpacing(tuple(float(v) for v in np.asarray(spacing, dtype=float).reshape(3)))
    img.SetDirection(tuple(float(v) for v in np.asarray(direction, dtype=float).reshape(9)))
    return img
