"""Intensity normalisation: HU window clipping and z-score."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["clip_window", "zscore"]


def clip_window(arr: ArrayLike, low: float, high: float) -> np.ndarray:
    """Clip intensities to the window ``[low, high]`` (e.g. HU).

    Args:
        arr: array of any shape.
        low: lower bound (e.g. -1000 HU).
        high: upper bound (e.g. 2000 HU), greater than ``low``.

    Returns:
        A clipped copy with ``arr``'s dtype (float64 for non-array input).

    Raises:
        ValueError: if ``low >= high`` or a bound is not finite.
    """
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"invalid window [{low}, {high}]: need finite low < high")
    arr = np.asarray(arr)
    return np.clip(arr, low, high).astype(arr.dtype, copy=False)


def zscore(arr: ArrayLike, mask: ArrayLike | None = None, eps: float = 1e-6) -> np.ndarray:
    """Z-score: subtract the mean and divide by the standard deviation.

    Statistics are computed in float64 over the voxels where ``mask`` is true, or over the whole
    array; every voxel is then normalised with them. A (near) constant region is divided by
    ``max(std, eps)`` instead of its standard deviation.

    Args:
        arr: array of any shape, e.g. a volume ``(X, Y, Z)``.
        mask: boolean array of ``arr``'s shape selecting the voxels for the statistics.
        eps: lower bound of the standard deviation.

    Returns:
        float32 array of ``arr``'s shape, mean 0 and standard deviation 1 over the mask.

    Raises:
        ValueError: if the mask has the wrong shape or selects no voxel, or ``arr`` is empty.
    """
    arr = np.asarray(arr, dtype=np.float64)
    if mask is None:
        values = arr.ravel()
    else:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != arr.shape:
            raise ValueError(f"mask shape {mask.shape} differs from array shape {arr.shape}")
        values = arr[mask]
    if values.size == 0:
        raise ValueError("z-score over an empty region")
    mean = values.mean()
    std = max(float(values.std()), eps)
    return ((arr - mean) / std).astype(np.float32)
