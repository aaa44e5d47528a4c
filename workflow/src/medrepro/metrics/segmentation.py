"""Binary segmentation metrics: Dice, surface distances and HD95 in millimetres.

Definitions (``papers.md``, "Cross-cutting metric definitions"; ``docs/brain_extraction.md``):

- Dice ``(2|P∩G| + eps) / (|P| + |G| + eps)`` with ``eps = 1e-7`` (BrainMaGe's form), so two
  empty masks score 1.
- Boundary of a mask ``M``: ``M XOR erode(M)`` with face connectivity (6-neighbourhood in 3D);
  voxels on the array border count as boundary (the erosion pads with background), as in medpy.
- Directed surface distances ``A -> B``: for every boundary voxel of ``A``, the Euclidean
  distance in mm to the nearest boundary voxel of ``B`` (an EDT of the complement of ``B``'s
  boundary with ``sampling=spacing``).
- HD95 ``pooled``: the 95th percentile of the union of both directed distance sets, which is
  ``medpy.metric.binary.hd95`` (BrainMaGe's and GaNDLF's number); ``max_directed``: the larger
  of the two directed 95th percentiles (MONAI's ``compute_hausdorff_distance``). The two can
  differ by several mm.
- Empty masks: both empty -> HD 0.0; exactly one empty -> NaN. Callers record the flags
  (:func:`score_masks`), keep the case in per-case tables and exclude it from means, reporting
  the count (:func:`mean_excluding_nan`); never a silent 0 or a silent drop.

Arrays are ``(X, Y, Z)`` in voxel order with ``spacing = (sx, sy, sz)`` mm along the same axes
(any dimensionality works as long as ``len(spacing) == mask.ndim``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

__all__ = [
    "HD_MODES",
    "dice",
    "boundary",
    "surface_distances",
    "hd95",
    "score_masks",
    "mean_excluding_nan",
]

#: the two HD95 conventions (see the module docstring)
HD_MODES = ("pooled", "max_directed")


def _binary(mask: ArrayLike, name: str) -> np.ndarray:
    """``mask`` as a non-empty boolean array (non-zero = foreground)."""
    arr = np.asarray(mask)
    if arr.ndim == 0 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty array, got shape {arr.shape}")
    return arr.astype(bool, copy=False)


def _pair(pred: ArrayLike, gt: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, g = _binary(pred, "pred"), _binary(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred and gt shapes differ: {p.shape} vs {g.shape}")
    return p, g


def _spacing(spacing: Sequence[float] | ArrayLike, ndim: int) -> np.ndarray:
    s = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if s.shape != (ndim,):
        raise ValueError(f"spacing must have {ndim} values (one per axis), got {s.tolist()}")
    if not np.all(np.isfinite(s)) or not np.all(s > 0):
        raise ValueError(f"spacing must be finite and > 0 mm, got {s.tolist()}")
    return s


def dice(pred: ArrayLike, gt: ArrayLike, eps: float = 1e-7) -> float:
    """Dice overlap ``(2|P∩G| + eps) / (|P| + |G| + eps)``; 1.0 when both masks are empty.

    Args:
        pred: predicted mask, any shape (non-zero = foreground).
        gt: ground-truth mask, same shape.
        eps: smoothing term of BrainMaGe's formula.
    """
    p, g = _pair(pred, gt)
    inter = np.count_nonzero(p & g)
    return float((2.0 * inter + eps) / (np.count_nonzero(p) + np.count_nonzero(g) + eps))


def boundary(mask: ArrayLike) -> np.ndarray:
    """Boundary voxels ``mask XOR erode(mask)`` (face connectivity, background outside the array)."""
    m = _binary(mask, "mask")
    structure = ndimage.generate_binary_structure(m.ndim, 1)
    return m ^ ndimage.binary_erosion(m, structure=structure, border_value=0)


def _bounding_slices(mask: np.ndarray) -> tuple[slice, ...]:
    """Slices of the smallest box holding every foreground voxel of a non-empty ``mask``."""
    nz = np.nonzero(mask)
    return tuple(slice(int(ax.min()), int(ax.max()) + 1) for ax in nz)


def _directed(a_border: np.ndarray, b_border: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distances (mm) from each ``a_border`` voxel to the nearest ``b_border`` voxel."""
    dt = ndimage.distance_transform_edt(~b_border, sampling=spacing)
    return np.asarray(dt[a_border], dtype=np.float64)


def _both_directed(
    a: np.ndarray, b: np.ndarray, spacing: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Directed distances ``a -> b`` and ``b -> a`` (mm) for two non-empty masks.

    The work is done inside the bounding box of ``a | b``: every boundary voxel lies in it, the
    erosion gives the same result there (the neighbours outside the box are background), and the
    EDT is an exact Euclidean distance to the nearest zero, which is unchanged by the crop.
    """
    box = _bounding_slices(a | b)
    ba, bb = boundary(a[box]), boundary(b[box])
    return _directed(ba, bb, spacing), _directed(bb, ba, spacing)


def surface_distances(a: ArrayLike, b: ArrayLike, spacing: Sequence[float]) -> np.ndarray:
    """Directed surface distances (mm) from the boundary voxels of ``a`` to the boundary of ``b``.

    Args:
        a: mask ``(X, Y, Z)`` whose boundary voxels are measured from.
        b: mask of the same shape whose boundary is measured to.
        spacing: ``(sx, sy, sz)`` voxel size in mm.

    Returns:
        One distance per boundary voxel of ``a`` (in C order of the voxel indices), float64 mm.

    Raises:
        ValueError: either mask is empty, shapes differ, or bad spacing.
    """
    pa, pb = _pair(a, b)
    s = _spacing(spacing, pa.ndim)
    if not pa.any() or not pb.any():
        raise ValueError("surface distances need two non-empty masks")
    return _both_directed(pa, pb, s)[0]


def _hd_from_directed(d_pg: np.ndarray, d_gp: np.ndarray, mode: str, percentile: float) -> float:
    if mode == "pooled":
        return float(np.percentile(np.concatenate([d_pg, d_gp]), percentile))
    if mode == "max_directed":
        return float(max(np.percentile(d_pg, percentile), np.percentile(d_gp, percentile)))
    raise ValueError(f"mode must be one of {HD_MODES}, got {mode!r}")


def hd95(
    pred: ArrayLike,
    gt: ArrayLike,
    spacing: Sequence[float],
    mode: str = "pooled",
    percentile: float = 95.0,
) -> float:
    """95th-percentile Hausdorff distance in mm.

    Args:
        pred: predicted mask ``(X, Y, Z)``.
        gt: ground-truth mask, same shape.
        spacing: ``(sx, sy, sz)`` voxel size in mm.
        mode: ``"pooled"`` (P95 of both directed sets together, medpy's ``hd95``) or
            ``"max_directed"`` (max of the two directed P95s, MONAI).
        percentile: the percentile (95 for HD95, 100 for the Hausdorff distance).

    Returns:
        The distance in mm; 0.0 if both masks are empty, NaN if exactly one is.
    """
    p, g = _pair(pred, gt)
    s = _spacing(spacing, p.ndim)
    if mode not in HD_MODES:
        raise ValueError(f"mode must be one of {HD_MODES}, got {mode!r}")
    has_p, has_g = bool(p.any()), bool(g.any())
    if not has_p and not has_g:
        return 0.0
    if not has_p or not has_g:
        return math.nan
    return _hd_from_directed(*_both_directed(p, g, s), mode, percentile)


def score_masks(
    pred: ArrayLike, gt: ArrayLike, spacing: Sequence[float]
) -> dict[str, float | bool]:
    """Every per-case number of ``evaluation.csv`` for one predicted mask.

    Args:
        pred: predicted mask ``(X, Y, Z)``.
        gt: ground-truth mask, same shape and grid.
        spacing: ``(sx, sy, sz)`` voxel size in mm.

    Returns:
        ``dice``, ``hd95_mm`` (pooled), ``hd95_max_mm`` (max directed), ``empty_pred``,
        ``empty_gt`` and the volumes ``pred_volume_ml``, ``gt_volume_ml`` (1 ml = 1000 mm³).
        Both HD95s are NaN when exactly one mask is empty and 0.0 when both are.
    """
    p, g = _pair(pred, gt)
    s = _spacing(spacing, p.ndim)
    voxel_ml = float(np.prod(s)) / 1000.0
    empty_p, empty_g = not p.any(), not g.any()
    if empty_p and empty_g:
        hd_pooled = hd_max = 0.0
    elif empty_p or empty_g:
        hd_pooled = hd_max = math.nan
    else:
        d_pg, d_gp = _both_directed(p, g, s)
        hd_pooled = _hd_from_directed(d_pg, d_gp, "pooled", 95.0)
        hd_max = _hd_from_directed(d_pg, d_gp, "max_directed", 95.0)
    return {
        "dice": dice(p, g),
        "hd95_mm": hd_pooled,
        "hd95_max_mm": hd_max,
        "empty_pred": empty_p,
        "empty_gt": empty_g,
        "pred_volume_ml": np.count_nonzero(p) * voxel_ml,
        "gt_volume_ml": np.count_nonzero(g) * voxel_ml,
    }


def mean_excluding_nan(values: ArrayLike) -> tuple[float, float, int]:
    """``(mean, sample SD, excluded)`` of the finite values; ``excluded`` counts the others (NaN).

    The aggregation rule for HD95 with one-sided empty masks: the NaN cases are left out of the
    mean and counted, never dropped silently. Mean and SD are NaN if no value is finite; the SD
    (``ddof=1``) is NaN with a single value.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = v[np.isfinite(v)]
    excluded = int(v.size - finite.size)
    if finite.size == 0:
        return math.nan, math.nan, excluded
    sd = float(np.std(finite, ddof=1)) if finite.size > 1 else math.nan
    return float(np.mean(finite)), sd, excluded
