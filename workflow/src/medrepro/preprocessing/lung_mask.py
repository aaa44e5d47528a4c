"""Lung masks for the LowRes crop (``docs/lowres.md``): labels -> lungs, closing, dilation, crop.

Morphology uses Euclidean balls of integer voxel radius ``r`` (offsets ``o`` with ``|o| <= r``)
and is computed exactly from squared Euclidean distance maps (SimpleITK's Maurer transform,
integer squared distances, exact in float32), which is much faster than a ball-shaped binary
structuring element at ``r = 10``:

- dilation: voxels whose squared distance to the mask is ``<= r^2``;
- erosion: voxels whose squared distance to the complement is ``> r^2``;
- closing: erosion of the dilation, computed on the mask padded by ``r + 1`` background voxels
  (so it equals the closing of the mask embedded in an infinite background) and restricted to the
  mask's bounding box + ``r + 1``.

Axis order: ``(z, y, x)`` arrays; radii and margins are in voxels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from medrepro.io.luna16 import LUNG_LABELS

__all__ = [
    "binary_closing_ball",
    "binary_dilation_ball",
    "binary_erosion_ball",
    "bounding_box",
    "crop_mask",
    "lungs_from_labels",
]


def lungs_from_labels(labels: np.ndarray, lung_labels: Sequence[int] = LUNG_LABELS) -> np.ndarray:
    """Boolean lungs of a LUNA16 label volume: ``labels`` in ``lung_labels`` (trachea dropped)."""
    return np.isin(labels, np.asarray(lung_labels))


def _squared_distance_to(mask: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance (voxels^2) of every voxel to the nearest True voxel (0 on it)."""
    if not mask.any():
        return np.full(mask.shape, np.inf, dtype=np.float32)
    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    dist = sitk.SignedMaurerDistanceMap(
        img, insideIsPositive=False, squaredDistance=True, useImageSpacing=False
    )
    return np.maximum(sitk.GetArrayFromImage(dist), 0.0)


def _check_radius(radius: int) -> int:
    if int(radius) != radius or radius < 0:
        raise ValueError(f"radius must be a non-negative integer (voxels), got {radius}")
    return int(radius)


def binary_dilation_ball(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilation by a Euclidean ball of ``radius`` voxels (voxels beyond the array are dropped)."""
    radius = _check_radius(radius)
    mask = np.asarray(mask, dtype=bool)
    if radius == 0 or not mask.any():
        return mask.copy()
    return _squared_distance_to(mask) <= radius**2


def binary_erosion_ball(mask: np.ndarray, radius: int) -> np.ndarray:
    """Erosion by a Euclidean ball of ``radius`` voxels; voxels beyond the array are background."""
    radius = _check_radius(radius)
    mask = np.asarray(mask, dtype=bool)
    if radius == 0:
        return mask.copy()
    padded = np.pad(mask, 1, constant_values=False)
    out = _squared_distance_to(~padded) > radius**2
    return out[1:-1, 1:-1, 1:-1]


def binary_closing_ball(mask: np.ndarray, radius: int) -> np.ndarray:
    """Closing (dilation, then erosion) by a Euclidean ball of ``radius`` voxels.

    Equals ``scipy.ndimage.binary_closing`` with the ball structure applied to the mask padded
    by ``radius + 1`` background voxels and cropped back; never removes a voxel of ``mask``.
    """
    radius = _check_radius(radius)
    mask = np.asarray(mask, dtype=bool)
    if radius == 0 or not mask.any():
        return mask.copy()
    box = bounding_box(mask, 0)
    pad = radius + 1
    sub = np.pad(mask[box], pad, constant_values=False)
    closed = binary_erosion_ball(binary_dilation_ball(sub, radius), radius)
    # the part of the padded box that lies inside the array
    out = np.zeros_like(mask)
    lo = [max(s.start - pad, 0) for s in box]
    hi = [min(s.stop + pad, n) for s, n in zip(box, mask.shape, strict=True)]
    src = tuple(
        slice(a - (s.start - pad), b - (s.start - pad)) for a, b, s in zip(lo, hi, box, strict=True)
    )
    out[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = closed[src]
    return out | mask


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    """Slices of the True voxels' bounding box grown by ``margin`` voxels, clipped to the array.

    Raises:
        ValueError: the mask is empty.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("bounding box of an empty mask")
    out = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        out.append(
            slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, mask.shape[axis]))
        )
    return tuple(out)


def crop_mask(
    labels: np.ndarray,
    *,
    lung_labels: Sequence[int] = LUNG_LABELS,
    closing_radius: int = 10,
    dilation_radius: int = 3,
    margin: int = 5,
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """The LowRes lung mask and crop of a label volume.

    Lungs (``lung_labels``) are closed (``closing_radius`` voxels) and dilated
    (``dilation_radius`` voxels); the crop is their bounding box + ``margin`` voxels.

    Returns:
        ``(mask, box)``: the boolean ``(z, y, x)`` mask on the full grid and the crop slices.

    Raises:
        ValueError: no voxel carries a lung label.
    """
    lungs = lungs_from_labels(labels, lung_labels)
    if not lungs.any():
        raise ValueError(f"no voxel with a lung label {list(lung_labels)}")
    mask = binary_dilation_ball(binary_closing_ball(lungs, closing_radius), dilation_radius)
    return mask, bounding_box(mask, margin)
