"""BrainMaGe post-processing of a brain probability map: threshold, fill holes, largest component.

BrainMaGe (``BrainMaGe/tester/test_ma.py``, Thakur et al. 2022) turns the network's sigmoid
output, resized back to the image grid, into a mask in three steps:

1. threshold at 0.9 (``>= 0.9`` is foreground);
2. ``scipy.ndimage.binary_fill_holes`` on every 2D slice along array axis 2 (its default
   structure: holes are background regions not 4-connected to the slice border). In this
   project's ``(X, Y, Z)`` LPS convention axis 2 is ``z``, i.e. axial slices;
3. keep the largest 3D connected component. BrainMaGe labels with
   ``skimage.measure.label(mask, connectivity=3)``, i.e. **full (26-) connectivity** in 3D, which
   is the default here (``connectivity=3``); ``connectivity=1`` gives face (6-) connectivity,
   the default of ``scipy.ndimage.label``. Ties between equally large components keep the
   first in C (raster) order, as ``argmax`` does in BrainMaGe.

An empty mask stays empty at every step (BrainMaGe's code would fail on it).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

__all__ = ["threshold", "fill_holes_slicewise", "largest_component", "brainmage_postprocess"]


def _mask(mask: ArrayLike, name: str = "mask") -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a 3D (X, Y, Z) array, got shape {arr.shape}")
    return arr.astype(bool, copy=False)


def threshold(prob: ArrayLike, t: float) -> np.ndarray:
    """Boolean mask ``prob >= t`` (same shape); NaN probabilities are background."""
    return np.asarray(prob) >= t


_threshold = threshold  # brainmage_postprocess's argument shadows the name


def fill_holes_slicewise(mask: ArrayLike, axis: int = 2) -> np.ndarray:
    """Fill the holes of every 2D slice of a 3D mask taken along ``axis``.

    Args:
        mask: ``(X, Y, Z)`` mask (non-zero = foreground).
        axis: the axis the slices are taken along; 2 (``z``, axial slices) as in BrainMaGe.

    Returns:
        A boolean copy with, in each slice, every background region that does not touch the
        slice border through 4-connected background filled.
    """
    m = _mask(mask)
    moved = np.moveaxis(m, axis, 0)
    filled = np.empty_like(moved)
    for k in range(moved.shape[0]):
        sl = moved[k]
        filled[k] = ndimage.binary_fill_holes(sl) if sl.any() else sl
    return np.moveaxis(filled, 0, axis)


def largest_component(mask: ArrayLike, connectivity: int = 3) -> np.ndarray:
    """Keep the largest connected component of a 3D mask.

    Args:
        mask: ``(X, Y, Z)`` mask (non-zero = foreground).
        connectivity: 1 (faces, 6 neighbours), 2 (faces + edges, 18) or 3 (full, 26; BrainMaGe).

    Returns:
        A boolean mask holding only the largest component (the first in raster order on a tie);
        all false if ``mask`` is empty.
    """
    m = _mask(mask)
    if connectivity not in (1, 2, 3):
        raise ValueError(f"connectivity must be 1, 2 or 3, got {connectivity}")
    labels, n = ndimage.label(m, structure=ndimage.generate_binary_structure(3, connectivity))
    if n <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def brainmage_postprocess(
    prob: ArrayLike, threshold: float = 0.9, axis: int = 2, connectivity: int = 3
) -> np.ndarray:
    """BrainMaGe's mask from a probability map: ``>= threshold``, slice-wise hole filling, LCC.

    Args:
        prob: ``(X, Y, Z)`` foreground probability on the image (atlas) grid.
        threshold: foreground threshold (0.9 in BrainMaGe).
        axis: slicing axis of the hole filling (2 = ``z``).
        connectivity: of the largest-component step (3 = 26-connectivity, BrainMaGe).

    Returns:
        uint8 ``(X, Y, Z)`` mask of 0/1.
    """
    if np.ndim(prob) != 3:
        raise ValueError(f"prob must be a 3D (X, Y, Z) array, got shape {np.shape(prob)}")
    mask = _threshold(prob, threshold)
    mask = fill_holes_slicewise(mask, axis=axis)
    return largest_component(mask, connectivity=connectivity).astype(np.uint8)
