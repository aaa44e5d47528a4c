"""Tests for medrepro.preprocessing.geometry: index <-> mm against SimpleITK."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medrepro.preprocessing.geometry import (
    Grid,
    centre_mm,
    grid_from_centre,
    index_to_mm,
    mm_to_index,
)


def _rotation(axis: tuple[float, float, float], angle_deg: float) -> np.ndarray:
    """Rodrigues rotation matrix."""
    k = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    a = np.deg2rad(angle_deg)
    return np.eye(3) + np.sin(a) * kx + (1 - np.cos(a)) * kx @ kx


DIRECTIONS = {
    "identity": np.eye(3),
    "flipped_RAS": np.diag([-1.0, -1.0, 1.0]),
    "permuted_PIR": np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]),
    "oblique": _rotation((1.0, 2.0, 0.5), 27.0),
    "oblique_reflected": _rotation((0.3, -1.0, 2.0), 61.0) @ np.diag([1.0, -1.0, 1.0]),
}


def _image(direction: np.ndarray) -> sitk.Image:
    img = sitk.Image(7, 5, 4, sitk.sitkFloat32)
    img.SetOrigin((12.5, -30.0, 7.25))
    img.SetSpacing((0.7, 1.3, 2.1))
    img.SetDirection(direction.ravel().tolist())
    return img


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_index_mm_agree_with_simpleitk(name: str) -> None:
    img = _image(DIRECTIONS[name])
    grid = Grid.of(img)
    idx = np.random.default_rng(1).uniform(-3, 9, size=(2, 6, 3))
    mm = index_to_mm(grid, idx)
    assert mm.shape == (2, 6, 3)
    expected = np.array(
        [img.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in idx.reshape(-1, 3)]
    )
    np.testing.assert_allclose(mm.reshape(-1, 3), expected, atol=1e-9)
    back = mm_to_index(grid, mm)
    np.testing.assert_allclose(back, idx, atol=1e-9)
    expected_idx = np.array(
        [img.TransformPhysicalPointToContinuousIndex(p.tolist()) for p in expected]
    )
    np.testing.assert_allclose(back.reshape(-1, 3), expected_idx, atol=1e-9)


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_centre_and_grid_from_centre(name: str) -> None:
    img = _image(DIRECTIONS[name])
    grid = Grid.of(img)
    centre = centre_mm(grid)
    np.testing.assert_allclose(
        centre, img.TransformContinuousIndexToPhysicalPoint([3.0, 2.0, 1.5]), atol=1e-9
    )
    rebuilt = grid_from_centre(centre, grid.spacing, grid.size, grid.direction)
    np.testing.assert_allclose(rebuilt.origin, grid.origin, atol=1e-9)
    np.testing.assert_array_equal(rebuilt.size, grid.size)


def test_grid_of_fields_and_validation() -> None:
    grid = Grid.of(_image(DIRECTIONS["permuted_PIR"]))
    assert grid.origin.shape == (3,) and grid.direction.shape == (3, 3)
    np.testing.assert_array_equal(grid.size, [7, 5, 4])
    np.testing.assert_allclose(grid.direction[:, 0], [0.0, 1.0, 0.0])  # x axis points posterior
    with pytest.raises(ValueError):
        Grid(origin=np.zeros(3), spacing=(1.0, 0.0, 1.0), direction=np.eye(3), size=(2, 2, 2))
    with pytest.raises(ValueError):
        Grid.of(sitk.Image(4, 4, sitk.sitkFloat32))
