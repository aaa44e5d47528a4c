"""Tests for DICOM series writing and checked reading (medrepro.io.dicom)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from medrepro.io.dicom import read_dicom_series, rescale_parameters, write_dicom_series
from medrepro.io.errors import InputError


def _image(direction: np.ndarray, values: np.ndarray | None = None) -> sitk.Image:
    rng = np.random.default_rng(0)
    arr = rng.uniform(-100.0, 3000.0, size=(9, 7, 6)) if values is None else values
    img = sitk.GetImageFromArray(arr.astype(np.float32))  # (Z, Y, X): 6 x 7 x 9 voxels
    img.SetSpacing((0.8, 1.2, 2.5))
    img.SetOrigin((12.5, -30.0, 44.0))
    img.SetDirection([float(v) for v in direction.ravel()])
    return img


def _series(tmp_path: Path, name: str = "series") -> Path:
    out = tmp_path / name
    write_dicom_series(_image(np.eye(3)), out, seed_uid="test")
    return out


OBLIQUE_RAS = (
    np.diag([-1.0, -1.0, 1.0]) @ Rotation.from_euler("xyz", [12, -8, 25], degrees=True).as_matrix()
)


@pytest.mark.parametrize("direction", [np.eye(3), OBLIQUE_RAS], ids=["lps", "oblique_ras"])
def test_round_trip_keeps_geometry_and_values(tmp_path: Path, direction: np.ndarray) -> None:
    img = _image(direction)
    files = write_dicom_series(img, tmp_path / "s", series_description="T1")
    assert [f.name for f in files] == [f"IM_{k:04d}.dcm" for k in range(1, 10)]
    back = read_dicom_series(tmp_path / "s")
    assert back.GetPixelID() == sitk.sitkFloat32
    assert back.GetSize() == img.GetSize()
    np.testing.assert_allclose(back.GetSpacing(), img.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(back.GetDirection(), img.GetDirection(), atol=1e-6)
    values = sitk.GetArrayFromImage(img)
    slope, _, signed = rescale_parameters(values)
    assert signed  # negative values -> signed storage
    err = np.abs(sitk.GetArrayFromImage(back) - values).max()
    assert err <= slope / 2 + 1e-3
    ds = pydicom.dcmread(files[3])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.InstanceNumber == 4
    np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], [1.2, 0.8])
    expected_ipp = np.asarray(img.GetOrigin()) + direction[:, 2] * 2.5 * 3
    np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], expected_ipp, atol=1e-6)


def test_integer_images_are_exact_and_uids_shared(tmp_path: Path) -> None:
    values = np.arange(9 * 7 * 6, dtype=np.float32).reshape(9, 7, 6)
    files = write_dicom_series(_image(np.eye(3), values), tmp_path / "s", seed_uid="x")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_dicom_series(tmp_path / "s")), values)
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    assert len({h.SeriesInstanceUID for h in headers}) == 1
    assert len({h.StudyInstanceUID for h in headers}) == 1
    assert len({h.FrameOfReferenceUID for h in headers}) == 1
    assert len({h.SOPInstanceUID for h in headers}) == len(files)
    assert headers[0].PixelRepresentation == 0 and float(headers[0].RescaleSlope) == 1.0


def test_seed_uid_makes_files_identical(tmp_path: Path) -> None:
    a, b = _series(tmp_path, "a"), _series(tmp_path, "b")
    for fa in sorted(a.iterdir()):
        assert fa.read_bytes() == (b / fa.name).read_bytes()
    write_dicom_series(_image(np.eye(3)), tmp_path / "c", seed_uid="other")
    assert (a / "IM_0001.dcm").read_bytes() != (tmp_path / "c" / "IM_0001.dcm").read_bytes()


def test_missing_slice_names_directory_and_gap(tmp_path: Path) -> None:
    out = _series(tmp_path)
    (out / "IM_0005.dcm").unlink()
    with pytest.raises(InputError, match="missing slice") as info:
        read_dicom_series(out)
    assert info.value.path == out
    assert "IM_0004.dcm" in str(info.value) and "IM_0006.dcm" in str(info.value)


def test_uneven_spacing_is_refused(tmp_path: Path) -> None:
    out = _series(tmp_path)
    path = out / "IM_0005.dcm"
    ds = pydicom.dcmread(path)
    ipp = [float(v) for v in ds.ImagePositionPatient]
    ds.ImagePositionPatient = [ipp[0], ipp[1], ipp[2] + 0.5]  # 0.5 mm off a 2.5 mm step
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(InputError, match="uneven slice spacing") as info:
        read_dicom_series(out)
    assert info.value.path == out


def test_inconsistent_orientation_is_refused(tmp_path: Path) -> None:
    out = _series(tmp_path)
    path = out / "IM_0003.dcm"
    ds = pydicom.dcmread(path)
    c, s = np.cos(0.1), np.sin(0.1)
    ds.ImageOrientationPatient = [c, s, 0.0, -s, c, 0.0]
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(InputError, match="inconsistent ImageOrientationPatient"):
        read_dicom_series(out)


def test_empty_directory_and_two_series_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not dicom")
    with pytest.raises(InputError, match="no DICOM files") as info:
        read_dicom_series(empty)
    assert info.value.path == empty
    with pytest.raises(InputError, match="not found"):
        read_dicom_series(tmp_path / "absent")
    a = _series(tmp_path, "a")
    write_dicom_series(_image(np.eye(3)), tmp_path / "b", seed_uid="second")
    mixed = tmp_path / "mixed"
    shutil.copytree(a, mixed)
    for f in (tmp_path / "b").iterdir():
        shutil.copy(f, mixed / f"b_{f.name}")
    with pytest.raises(InputError, match="2 DICOM series"):
        read_dicom_series(mixed)


def test_single_slice_is_refused(tmp_path: Path) -> None:
    out = _series(tmp_path)
    for f in sorted(out.iterdir())[1:]:
        f.unlink()
    with pytest.raises(InputError, match="at least 2"):
        read_dicom_series(out)


def test_left_handed_image_reads_back_as_the_same_physical_image(tmp_path: Path) -> None:
    lpi = np.diag([1.0, 1.0, -1.0])
    img = _image(lpi)
    write_dicom_series(img, tmp_path / "s")
    back = read_dicom_series(tmp_path / "s")
    # slices come back sorted along the normal: same voxels, z axis reversed
    np.testing.assert_allclose(np.asarray(back.GetDirection()).reshape(3, 3), np.eye(3), atol=1e-6)
    last = img.TransformIndexToPhysicalPoint((0, 0, img.GetSize()[2] - 1))
    np.testing.assert_allclose(back.GetOrigin(), last, atol=1e-5)
    np.testing.assert_allclose(
        sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(img)[::-1], atol=0.05
    )
