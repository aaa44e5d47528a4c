"""Physical millimetres <-> continuous voxel indices through an image grid.

A grid maps a continuous index ``(i, j, k)`` (voxel centres at integers, SimpleITK convention) to
a physical point ``mm = origin + direction @ (spacing * index)`` in LPS millimetres, where the
columns of ``direction`` are the voxel axes. The functions here are vectorised over leading axes
and agree with SimpleITK's ``TransformContinuousIndexToPhysicalPoint``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from numpy.typing import ArrayLike

__all__ = ["Grid", "index_to_mm", "mm_to_index", "centre_mm", "grid_from_centre"]


@dataclass(frozen=True)
class Grid:
    """Geometry of a 3D image.

    Attributes:
        origin: physical position of voxel ``(0, 0, 0)``, ``(3,)`` mm.
        spacing: voxel size along each axis, ``(3,)`` mm.
        direction: ``(3, 3)`` direction cosines, columns are the voxel axes.
        size: number of voxels along ``(x, y, z)``, ``(3,)`` int.
    """

    origin: np.ndarray
    spacing: np.ndarray
    direction: np.ndarray
    size: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "origin", np.asarray(self.origin, dtype=np.float64).reshape(3))
        object.__setattr__(self, "spacing", np.asarray(self.spacing, dtype=np.float64).reshape(3))
        object.__setattr__(
            self, "direction", np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        )
        object.__setattr__(self, "size", np.asarray(self.size, dtype=np.int64).reshape(3))
        if np.any(self.spacing <= 0):
            raise ValueError(f"spacing must be positive, got {self.spacing.tolist()}")

    @classmethod
    def of(cls, img: sitk.Image) -> Grid:
        """Grid of a 3D SimpleITK image."""
        if img.GetDimension() != 3:
            raise ValueError(f"expected a 3D image, got {img.GetDimension()}D")
        return cls(
            origin=np.array(img.GetOrigin()),
            spacing=np.array(img.GetSpacing()),
            direction=np.array(img.GetDirection()).reshape(3, 3),
            size=np.array(img.GetSize()),
        )

    @property
    def matrix(self) -> np.ndarray:
        """``(3, 3)`` index-to-mm linear map, ``direction @ diag(spacing)``."""
        return self.direction * self.spacing[None, :]


def index_to_mm(grid: Grid, idx: ArrayLike) -> np.ndarray:
    """Physical points (LPS mm) of continuous voxel indices.

    Args:
        grid: image geometry.
        idx: ``(..., 3)`` continuous indices ``(i, j, k)``.

    Returns:
        ``(..., 3)`` float64 physical points in mm.
    """
    idx = np.asarray(idx, dtype=np.float64)
    return idx @ grid.matrix.T + grid.origin


def mm_to_index(grid: Grid, mm: ArrayLike) -> np.ndarray:
    """Continuous voxel indices of physical points (inverse of :func:`index_to_mm`).

    Args:
        grid: image geometry.
        mm: ``(..., 3)`` physical points in LPS mm.

    Returns:
        ``(..., 3)`` float64 continuous indices ``(i, j, k)``; not clipped to the grid.
    """
    mm = np.asarray(mm, dtype=np.float64)
    return (mm - grid.origin) @ np.linalg.inv(grid.matrix).T


def centre_mm(grid: Grid) -> np.ndarray:
    """Physical centre of the grid: the point midway between the first and last voxel centres, ``(3,)`` mm."""
    return index_to_mm(grid, (grid.size - 1) / 2.0)


def grid_from_centre(
    centre: ArrayLike, spacing: ArrayLike, size: ArrayLike, direction: ArrayLike | None = None
) -> Grid:
    """Grid of given spacing (mm), size (voxels) and direction whose centre is ``centre`` (mm).

    Args:
        centre: ``(3,)`` physical centre in mm (see :func:`centre_mm`).
        spacing: ``(3,)`` voxel size in mm.
        size: ``(3,)`` number of voxels.
        direction: ``(3, 3)`` direction cosines (columns are axes); identity when ``None``.

    Returns:
        The grid; its origin is ``centre - direction @ (spacing * (size - 1) / 2)``.
    """
    direction_ = (
        np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64).reshape(3, 3)
    )
    spacing_ = np.asarray(spacing, dtype=np.float64).reshape(3)
    size_ = np.asarray(size, dtype=np.int64).reshape(3)
    if np.any(size_ < 1):
        raise ValueError(f"size must be at least 1 voxel per axis, got {size_.tolist()}")
    origin = np.asarray(centre, dtype=np.float64).reshape(3) - direction_ @ (
        spacing_ * (size_ - 1) / 2.0
    )
    return Grid(origin=origin, spacing=spacing_, direction=direction_, size=size_)
