"""Tests for orientation and resampling: landmarks keep their physical position, padding, anti-aliasing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medrepro.io.images import write_image
from medrepro.io.markups import write_markups
from medrepro.preprocessing.cephalometry import preprocess_case
from medrepro.preprocessing.geometry import Grid, centre_mm, mm_to_index
from medrepro.preprocessing.orientation import check_code, orientation_code, reorient
from medrepro.preprocessing.resampling import antialias_sigmas, resample_isotropic, resample_to_grid

_AXES = {
    "L": (1, 0, 0),
    "R": (-1, 0, 0),
    "P": (0, 1, 0),
    "A": (0, -1, 0),
    "S": (0, 0, 1),
    "I": (0, 0, -1),
}
BLOB_MM = np.array([6.0, -9.0, 4.5])  # LPS mm, off-centre
CENTRE_MM = np.array([2.0, -3.0, 1.0])


def _direction(code: str) -> np.ndarray:
    """Direction matrix (columns are axes) of an orientation code."""
    return np.array([_AXES[c] for c in code], dtype=float).T


def _blob_image(
    code: str, size: tuple[int, int, int] = (34, 30, 26), spacing=(1.1, 0.9, 1.3)
) -> sitk.Image:
    """CT-like image (-1000 HU background) stored in orientation ``code`` with a Gaussian blob at BLOB_MM."""
    direction = _direction(code)
    half = direction @ (np.asarray(spacing) * (np.asarray(size) - 1) / 2)
    origin = CENTRE_MM - half
    points = sitk.PhysicalPointSource(
        sitk.sitkVectorFloat64,
        list(size),
        origin.tolist(),
        list(spacing),
        direction.ravel().tolist(),
    )
    mm = sitk.GetArrayFromImage(points)  # (Z, Y, X, 3), independent of medrepro's geometry
    d2 = np.sum((mm - BLOB_MM) ** 2, axis=-1)
    arr = (-1000.0 + 1800.0 * np.exp(-d2 / (2 * 2.5**2))).astype(np.float32)
    img = sitk.GetImageFromArray(arr)
    img.SetOrigin(origin.tolist())
    img.SetSpacing(list(spacing))
    img.SetDirection(direction.ravel().tolist())
    return img


def _centroid_xyz(arr_xyz: np.ndarray) -> np.ndarray:
    """Intensity-weighted centroid (continuous index) above the background."""
    w = arr_xyz - arr_xyz.min()
    w = np.where(w > 1e-3 * w.max(), w, 0.0)
    grids = np.meshgrid(*[np.arange(n) for n in arr_xyz.shape], indexing="ij")
    return np.array([(g * w).sum() / w.sum() for g in grids])


@pytest.mark.parametrize("code", ["RAS", "PIR", "LPS"])
def test_reorient_keeps_physical_points(code: str) -> None:
    img = _blob_image(code)
    assert orientation_code(img) == code
    lps = reorient(img)
    assert orientation_code(lps) == "LPS"
    np.testing.assert_allclose(np.array(lps.GetDirection()).reshape(3, 3), np.eye(3), atol=1e-12)
    np.testing.assert_allclose(centre_mm(Grid.of(lps)), centre_mm(Grid.of(img)), atol=1e-9)
    peak = np.unravel_index(np.argmax(sitk.GetArrayViewFromImage(lps)), lps.GetSize()[::-1])[::-1]
    peak_src = np.unravel_index(np.argmax(sitk.GetArrayViewFromImage(img)), img.GetSize()[::-1])[
        ::-1
    ]
    p1 = lps.TransformIndexToPhysicalPoint([int(i) for i in peak])
    p0 = img.TransformIndexToPhysicalPoint([int(i) for i in peak_src])
    np.testing.assert_allclose(p1, p0, atol=1e-9)


def test_check_code() -> None:
    assert check_code("ras") == "RAS"
    for bad in ("LLS", "LP", "LPSX", "XYZ"):
        with pytest.raises(ValueError):
            check_code(bad)


@pytest.mark.parametrize("code", ["RAS", "PIR"])
def test_blob_stays_at_landmark_through_reorient_and_resample(code: str) -> None:
    img = reorient(_blob_image(code))
    out = resample_to_grid(img, spacing=(2.0, 2.0, 2.5), size=(16, 16, 12))
    grid = Grid.of(out)
    np.testing.assert_allclose(centre_mm(grid), CENTRE_MM, atol=1e-9)
    expected = mm_to_index(grid, BLOB_MM)
    found = _centroid_xyz(sitk.GetArrayFromImage(out).transpose(2, 1, 0))
    assert np.all(np.abs(found - expected) < 0.5), (found, expected)
    assert np.all(np.abs(found - expected) < 0.1)  # in practice much better than half a voxel


@pytest.mark.parametrize("code", ["RAS", "PIR"])
def test_preprocess_case_blob_matches_landmark(tmp_path: Path, code: str) -> None:
    image_path = tmp_path / "case.nii.gz"
    markups_path = tmp_path / "case.mrk.json"
    write_image(_blob_image(code), image_path)
    write_markups(markups_path, {"blob": BLOB_MM})
    out = preprocess_case(
        image_path,
        markups_path,
        labels=["blob"],
        spacing=(2.0, 2.0, 2.5),
        shape=(16, 16, 12),
        hu_window=(-1000, 2000),
    )
    assert out["image"].shape == (16, 16, 12) and out["image"].dtype == np.float32
    np.testing.assert_allclose(out["landmarks_mm"][0], BLOB_MM, atol=1e-9)
    found = _centroid_xyz(out["image"])
    assert np.all(np.abs(found - out["landmarks_vox"][0]) < 0.5), (found, out["landmarks_vox"])


def test_padding_uses_default_value() -> None:
    img = sitk.Image(10, 10, 10, sitk.sitkFloat32) + 5.0
    out = resample_to_grid(img, spacing=(1.0, 1.0, 1.0), size=(20, 20, 20), default_value=-1000.0)
    arr = sitk.GetArrayFromImage(out)
    assert arr[0, 0, 0] == -1000.0 and arr[-1, -1, -1] == -1000.0
    assert arr[10, 10, 10] == pytest.approx(5.0)
    out0 = resample_to_grid(img, spacing=(1.0, 1.0, 1.0), size=(20, 20, 20), default_value=0.0)
    assert sitk.GetArrayFromImage(out0)[0, 0, 0] == 0.0


def test_antialias_reduces_checkerboard_aliasing() -> None:
    n = 43  # source centre at index 21, target samples at 21 +- 3k: exactly on source voxels
    idx = np.indices((n, n, n)).sum(axis=0)
    img = sitk.GetImageFromArray(np.where(idx % 2 == 0, 1.0, -1.0).astype(np.float32))
    kwargs = {"spacing": (3.0, 3.0, 3.0), "size": (5, 5, 5), "default_value": 0.0}
    aliased = sitk.GetArrayFromImage(resample_to_grid(img, antialias=False, **kwargs))
    smooth = sitk.GetArrayFromImage(resample_to_grid(img, antialias=True, **kwargs))
    assert aliased.std() > 0.9  # the checkerboard survives at full contrast: aliasing
    assert smooth.std() < 0.01


def test_antialias_sigmas() -> None:
    source = Grid(origin=np.zeros(3), spacing=(0.5, 1.0, 2.0), direction=np.eye(3), size=(4, 4, 4))
    sig = antialias_sigmas(source, (1.0, 1.0, 1.0))
    np.testing.assert_allclose(sig, [0.5 * np.sqrt(0.75), 0.0, 0.0])
    permuted = _direction("PIR")  # target x along source y, target z along source x (flipped)
    sig = antialias_sigmas(source, (4.0, 1.0, 0.5), permuted)
    np.testing.assert_allclose(sig, [0.0, 0.5 * np.sqrt(15.0), 0.0])


def test_resample_isotropic_keeps_extent_and_direction() -> None:
    img = _blob_image("PIR", size=(20, 10, 16), spacing=(0.5, 2.0, 1.0))
    out = resample_isotropic(img, 1.0)
    assert out.GetSize() == (10, 20, 16)
    np.testing.assert_allclose(out.GetSpacing(), (1.0, 1.0, 1.0))
    np.testing.assert_allclose(out.GetDirection(), img.GetDirection())
    np.testing.assert_allclose(centre_mm(Grid.of(out)), centre_mm(Grid.of(img)), atol=1e-9)
