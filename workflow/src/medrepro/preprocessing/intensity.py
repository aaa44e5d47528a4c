"""Intensity normalisation: HU window clipping and z-score."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["clip_window", "zscore", "brainmage_normalise"]


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


def brainmage_normalise(arr: ArrayLike) -> np.ndarray:
    """BrainMaGe's inference normalisation (Thakur et al. 2022; ``utils_test.process_image``).

    Of the voxels ``>=`` the image mean, take ``p1`` = the 2nd and ``p2`` = the 95th percentile
    (numpy's linear interpolation); clip the image above at ``p2``; return ``(x - p1) / p2``.
    This divides by ``p2``, not ``p2 - p1``, exactly as the original code does; the result is
    therefore at most ``1 - p1 / p2`` and negative below ``p1``.

    Args:
        arr: image of any shape, e.g. an atlas-space volume ``(X, Y, Z)``; computed in float64.

    Returns:
        float32 array of ``arr``'s shape (a new array; ``arr`` is not modified).

    Raises:
        ValueError: if ``arr`` is empty or not finite, or ``p2 == 0`` (the division is undefined).
    """
    x = np.array(arr, dtype=np.float64)
    if x.size == 0:
        raise ValueError("brainmage_normalise of an empty array")
    if not np.all(np.isfinite(x)):
        raise ValueError("brainmage_normalise: the array has NaN/inf values")
    upper = x[x >= x.mean()]
    p1 = float(np.percentile(upper, 2))
    p2 = float(np.percentile(upper, 95))
    if p2 == 0.0:
        raise ValueError("brainmage_normalise: the 95th percentile is 0 (blank image?)")
    x[x > p2] = p2
    return ((x - p1) / p2).astype(np.float32)
