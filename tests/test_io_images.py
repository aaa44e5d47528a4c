"""Tests for medrepro.io.images: validated reading, atomic writing, (X, Y, Z) arrays."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medrepro.io.errors import InputError
from medrepro.io.images import array_to_image, image_to_array, read_image, write_image

DIRECTION = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def _image(shape_xyz: tuple[int, int, int] = (6, 7, 8)) -> sitk.Image:
    rng = np.random.default_rng(0)
    arr = rng.normal(size=shape_xyz).astype(np.float32)
    return array_to_image(arr, (1.5, -2.0, 30.0), (0.8, 1.2, 2.5), DIRECTION)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mhd"])
def test_write_read_round_trip(tmp_path: Path, suffix: str) -> None:
    img = _image()
    path = tmp_path / f"case{suffix}"
    write_image(img, path)
    back = read_image(path)
    np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(back.GetSpacing(), img.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(back.GetDirection(), img.GetDirection(), atol=1e-5)
    np.testing.assert_array_equal(image_to_array(back), image_to_array(img))
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".raw")) == [
        f"case{suffix}"
    ]


def test_array_round_trip_axis_order() -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    img = array_to_image(arr, (0, 0, 0), (1, 1, 1), np.eye(3))
    assert img.GetSize() == (2, 3, 4)
    assert img.GetPixel(1, 2, 3) == arr[1, 2, 3]
    back = image_to_array(img)
    assert back.dtype == np.int16
    np.testing.assert_array_equal(back, arr)
    np.testing.assert_array_equal(back, sitk.GetArrayFromImage(img).transpose(2, 1, 0))


def test_direction_and_physical_points() -> None:
    img = _image()
    point = img.TransformIndexToPhysicalPoint((1, 2, 3))
    expected = np.array(img.GetOrigin()) + DIRECTION @ (np.array(img.GetSpacing()) * [1, 2, 3])
    np.testing.assert_allclose(point, expected)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.nii.gz"
    with pytest.raises(InputError, match="absent.nii.gz"):
        read_image(path)


def test_truncated_nii_gz(tmp_path: Path) -> None:
    path = tmp_path / "cut.nii.gz"
    write_image(_image((20, 20, 20)), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.nii.gz"):
        read_image(path)


def test_truncated_nii(tmp_path: Path) -> None:
    path = tmp_path / "cut.nii"
    write_image(_image(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(InputError, match="truncated"):
        read_image(path)


def test_nan_voxel(tmp_path: Path) -> None:
    arr = np.zeros((5, 5, 5), dtype=np.float32)
    arr[2, 3, 4] = np.nan
    arr[0, 0, 0] = np.inf
    path = tmp_path / "nan.nii.gz"
    write_image(array_to_image(arr, (0, 0, 0), (1, 1, 1), np.eye(3)), path)
    with pytest.raises(InputError, match=r"nan.nii.gz: 2 NaN/inf voxels"):
        read_image(path)


def _nifti_with_pixdim(path: Path, pixdim_y: float) -> None:
    """Write a NIfTI then patch ``pixdim[2]`` in the raw header (nibabel would fix it)."""
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 7), np.float32), np.eye(4)), path.with_suffix(""))
    raw = bytearray(path.with_suffix("").read_bytes())
    raw[84:88] = np.float32(pixdim_y).tobytes()  # pixdim starts at byte 76
    path.with_suffix("").unlink()
    path.write_bytes(gzip.compress(bytes(raw)))


@pytest.mark.parametrize("value", [0.0, -2.0])
def test_bad_spacing(tmp_path: Path, value: float) -> None:
    path = tmp_path / "spacing.nii.gz"
    _nifti_with_pixdim(path, value)
    with pytest.raises(InputError, match=r"spacing.nii.gz: spacing must be > 0"):
        read_image(path)


def test_2d_image(tmp_path: Path) -> None:
    path = tmp_path / "flat.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5), np.float32)), str(path))
    with pytest.raises(InputError, match="flat.nii.gz: expected a 3D image"):
        read_image(path)


def test_non_orthonormal_direction(tmp_path: Path) -> None:
    path = tmp_path / "skew.mhd"
    img = _image()
    img.SetDirection((1, 0.5, 0, 0, 1, 0, 0, 0, 1))
    sitk.WriteImage(img, str(path))
    with pytest.raises(InputError, match="skew.mhd: direction"):
        read_image(path)


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.unknownformat"
    with pytest.raises(RuntimeError):
        write_image(_image(), path)
    assert list(tmp_path.iterdir()) == []
