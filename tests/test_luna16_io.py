"""Tests for the LUNA16 reader and writer (medrepro.io.luna16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medrepro.io.errors import InputError
from medrepro.io.luna16 import (
    CT_PIXEL,
    LABEL_PIXEL,
    find_scan,
    find_scans,
    lung_mask_path,
    nodule_mask_path,
    read_annotations,
    read_mhd,
    unknown_seriesuids,
    voxel_to_world,
    world_to_voxel,
    write_mhd,
)

UID = "1.3.6.1.4.1.14519.5.2.1.6279.6001.123"


def _ct(shape_zyx: tuple[int, int, int] = (4, 5, 6)) -> sitk.Image:
    arr = np.arange(np.prod(shape_zyx), dtype=np.int16).reshape(shape_zyx) * 7 - 1000
    img = sitk.GetImageFromArray(arr)
    img.SetOrigin((-120.5, -80.25, -310.0))
    img.SetSpacing((0.7, 0.8, 2.5))
    return img


def test_mhd_round_trip_keeps_geometry_and_values(tmp_path: Path) -> None:
    img = _ct()
    write_mhd(img, tmp_path / "a.mhd", pixel_type=CT_PIXEL)
    assert (tmp_path / "a.raw").stat().st_size == 4 * 5 * 6 * 2
    assert "ElementType = MET_SHORT" in (tmp_path / "a.mhd").read_text()
    back = read_mhd(tmp_path / "a.mhd")
    assert back.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(img))
    np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin())
    np.testing.assert_allclose(back.GetSpacing(), img.GetSpacing())
    np.testing.assert_allclose(back.GetDirection(), np.eye(3).ravel())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mhd", "a.raw"]  # no leftovers


def test_label_written_as_uchar_and_out_of_range_refused(tmp_path: Path) -> None:
    labels = sitk.GetImageFromArray(np.full((2, 3, 4), 5, dtype=np.uint8))
    write_mhd(labels, tmp_path / "l.mhd", pixel_type=LABEL_PIXEL)
    assert "MET_UCHAR" in (tmp_path / "l.mhd").read_text()
    with pytest.raises(ValueError, match="do not fit"):
        write_mhd(_ct(), tmp_path / "bad.mhd", pixel_type=LABEL_PIXEL)
    assert not (tmp_path / "bad.mhd").exists() and not (tmp_path / "bad.raw").exists()


def test_short_raw_names_the_raw(tmp_path: Path) -> None:
    write_mhd(_ct(), tmp_path / "a.mhd")
    raw = tmp_path / "a.raw"
    raw.write_bytes(raw.read_bytes()[:100])
    with pytest.raises(InputError, match="short file: 100 bytes") as err:
        read_mhd(tmp_path / "a.mhd")
    assert err.value.path == raw


def test_missing_raw_and_missing_mhd(tmp_path: Path) -> None:
    write_mhd(_ct(), tmp_path / "a.mhd")
    (tmp_path / "a.raw").unlink()
    with pytest.raises(InputError, match="file not found") as err:
        read_mhd(tmp_path / "a.mhd")
    assert err.value.path == tmp_path / "a.raw"
    with pytest.raises(InputError) as err:
        read_mhd(tmp_path / "none.mhd")
    assert err.value.path == tmp_path / "none.mhd"


def test_world_voxel_known_case() -> None:
    img = _ct()
    # x = -120.5 + 0.7 * 2, y = -80.25 + 0.8 * 3, z = -310 + 2.5 * 1.5
    zyx = world_to_voxel(img, [[-119.1, -77.85, -306.25]])
    np.testing.assert_allclose(zyx, [[1.5, 3.0, 2.0]], atol=1e-9)
    np.testing.assert_allclose(voxel_to_world(img, zyx), [[-119.1, -77.85, -306.25]], atol=1e-9)
    expected = img.TransformContinuousIndexToPhysicalPoint((2.0, 3.0, 1.5))
    np.testing.assert_allclose(voxel_to_world(img, [1.5, 3.0, 2.0]), expected, atol=1e-9)


def _annotations(path: Path, rows: list[str]) -> Path:
    path.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n" + "\n".join(rows) + "\n")
    return path


def test_annotations_order_and_unknown_uid(tmp_path: Path) -> None:
    path = _annotations(
        tmp_path / "annotations.csv",
        [f"{UID},1,2,3,5.5", "other,0,0,0,4", f"{UID},4,5,6,7"],
    )
    table = read_annotations(path, known_uids=[UID, "other"])
    assert table["object"].tolist() == [1, 1, 2]
    assert table["diameter_mm"].tolist() == [5.5, 4.0, 7.0]
    with pytest.raises(InputError, match="unknown seriesuid other") as err:
        read_annotations(path, known_uids=[UID])
    assert err.value.path == path
    kept = read_annotations(path, known_uids=[UID], collect_unknown=True)
    assert unknown_seriesuids(kept, [UID]) == ["other"]


def test_annotations_bad_values(tmp_path: Path) -> None:
    path = _annotations(tmp_path / "annotations.csv", [f"{UID},1,x,3,5"])
    with pytest.raises(InputError, match="coordY"):
        read_annotations(path)
    path = _annotations(tmp_path / "annotations.csv", [f"{UID},1,2,3,0"])
    with pytest.raises(InputError, match="diameter_mm"):
        read_annotations(path)
    (tmp_path / "b.csv").write_text("seriesuid,coordX\n")
    with pytest.raises(InputError, match="missing columns"):
        read_annotations(tmp_path / "b.csv")


def test_scan_lookup_and_lung_mask(tmp_path: Path) -> None:
    write_mhd(_ct(), tmp_path / "subset3" / f"{UID}.mhd")
    scans = find_scans(tmp_path)
    assert list(scans) == [UID] and scans[UID].subset == 3
    assert find_scan(tmp_path, UID).path == tmp_path / "subset3" / f"{UID}.mhd"
    with pytest.raises(InputError, match="not found in any subset"):
        find_scan(tmp_path, "9.9")
    with pytest.raises(InputError, match=f"lung mask of scan {UID}"):
        lung_mask_path(tmp_path, UID)
    assert nodule_mask_path(tmp_path, UID) is None
    (tmp_path / "nodule-masks").mkdir()
    with pytest.raises(InputError, match="nodule mask"):
        nodule_mask_path(tmp_path, UID)
    write_mhd(_ct(), tmp_path / "subset4" / f"{UID}.mhd")
    with pytest.raises(InputError, match="also in"):
        find_scans(tmp_path)
