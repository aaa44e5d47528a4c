"""Landmark localisation metrics in millimetres.

Definitions follow Vasiliev, Lachinov & Getmanskaya, "DL-inferencing for 3D Cephalometric
Landmarks Regression task using OpenVINO" (GraphiCon 2020), Tables 1 and 2, and the method
paper Lachinov, Getmanskaya & Turlapov 2020 (arXiv 2007.10052):

- radial error ``e_ik = ||p̂_ik - p_ik||_2`` of landmark ``k`` in case ``i`` (mm, in the original
  image's physical space);
- ``RMSE_k = sqrt(mean_i e_ik²)`` per landmark (Table 1 columns);
- the paper's "Total" is the pooled RMSE ``sqrt(mean_k RMSE_k²)``, *not* the arithmetic mean of
  the per-landmark RMSEs (4.58 vs 4.54 mm for the paper's direct regression);
- the mean radial error ``MRE = mean_ik e_ik`` (a different, smaller number than the RMSE);
- the success detection rate ``SDR_r = (1 / NK) sum_ik 1[e_ik <= r]`` (Table 2, r = 2, 3, 4 mm).

NaN policy: every function raises :class:`ValueError` on NaN or infinite input. A missed
landmark must be handled explicitly by the caller (e.g. given a large error), never dropped
silently.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "radial_errors",
    "rmse_per_landmark",
    "combine_rmse",
    "pooled_rmse",
    "mean_radial_error",
    "success_detection_rate",
]


def _finite(a: np.ndarray, name: str) -> np.ndarray:
    """Return ``a`` if it is non-empty and finite, else raise ValueError."""
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _non_negative(
    values: ArrayLike, name: str, ndim: int, shape: str, negative: str = "non-negative"
) -> np.ndarray:
    """``values`` as float64, validated: ``ndim`` axes, non-empty, finite, no value below 0.

    ``shape`` (e.g. ``"(N, K)"``) and ``negative`` (ending ``"{name} must be ..."``) only word the
    ValueError raised otherwise.
    """
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    _finite(a, name)
    if np.any(a < 0):
        raise ValueError(f"{name} must be {negative}")
    return a


def _errors(errors: ArrayLike) -> np.ndarray:
    """Validate a radial error matrix: ``(N, K)``, finite, non-negative (mm)."""
    return _non_negative(errors, "errors", 2, "(N, K)", "non-negative distances")


def radial_errors(pred_mm: ArrayLike, gt_mm: ArrayLike) -> np.ndarray:
    """Euclidean distance between predicted and true landmarks.

    Args:
        pred_mm: predicted positions, ``(N, K, D)`` mm (``D`` is 3 for volumes).
        gt_mm: ground-truth positions, same shape, mm.

    Returns:
        ``(N, K)`` float64 radial errors in mm.

    Raises:
        ValueError: if the shapes differ, are not ``(N, K, D)``, or contain NaN/inf.

    Example:
        >>> radial_errors([[[3.0, 4.0, 0.0]]], [[[0.0, 0.0, 0.0]]])
        array([[5.]])
    """
    pred = np.asarray(pred_mm, dtype=np.float64)
    gt = np.asarray(gt_mm, dtype=np.float64)
    if pred.ndim != 3:
        raise ValueError(f"pred_mm must have shape (N, K, D), got {pred.shape}")
    if pred.shape != gt.shape:
        raise ValueError(f"pred_mm {pred.shape} and gt_mm {gt.shape} differ in shape")
    _finite(pred, "pred_mm")
    _finite(gt, "gt_mm")
    return np.linalg.norm(pred - gt, axis=-1)


def rmse_per_landmark(errors: ArrayLike) -> np.ndarray:
    """Root-mean-square radial error of each landmark over cases (Table 1 columns).

    Args:
        errors: ``(N, K)`` radial errors in mm.

    Returns:
        ``(K,)`` RMSE in mm, ``sqrt(mean_i e_ik²)``.
    """
    e = _errors(errors)
    return np.sqrt(np.mean(e**2, axis=0))


def combine_rmse(rmse_k: ArrayLike) -> float:
    """Pool per-landmark RMSEs into one RMSE, ``sqrt(mean_k RMSE_k²)`` (mm).

    This is how the paper's "Total" column relates to its per-landmark columns:
    ``combine_rmse([4.14, 3.78, 5.03, 5.22])`` is 4.58 mm, whereas the arithmetic mean is 4.54.

    Args:
        rmse_k: ``(K,)`` per-landmark RMSEs in mm.

    Returns:
        The pooled RMSE in mm.
    """
    r = _non_negative(rmse_k, "rmse_k", 1, "(K,)")
    return float(np.sqrt(np.mean(r**2)))


def pooled_rmse(errors: ArrayLike) -> float:
    """The paper's "Total" RMSE, ``sqrt(mean_k RMSE_k²)`` in mm.

    With the same number of cases per landmark it equals ``sqrt(mean_ik e_ik²)``.

    Args:
        errors: ``(N, K)`` radial errors in mm.

    Returns:
        Pooled RMSE in mm.
    """
    return combine_rmse(rmse_per_landmark(errors))


def mean_radial_error(errors: ArrayLike, per_landmark: bool = False) -> float | np.ndarray:
    """Mean radial error (MRE) in mm.

    Args:
        errors: ``(N, K)`` radial errors in mm.
        per_landmark: if true, return the ``(K,)`` MRE of each landmark instead of one number.

    Returns:
        ``mean_ik e_ik`` (float) or ``mean_i e_ik`` per landmark (``(K,)``), mm.
    """
    e = _errors(errors)
    if per_landmark:
        return e.mean(axis=0)
    return float(e.mean())


def success_detection_rate(
    errors: ArrayLike, radii: Iterable[float] = (2.0, 3.0, 4.0)
) -> dict[float, float]:
    """Share of all landmark predictions within ``r`` mm of the truth (Table 2).

    Args:
        errors: ``(N, K)`` radial errors in mm.
        radii: radii in mm; an error equal to the radius counts as a success.

    Returns:
        ``{r: SDR_r}`` with ``SDR_r = (1 / NK) sum_ik 1[e_ik <= r]`` in ``[0, 1]``, keyed by the
        radii as floats in the given order.

    Raises:
        ValueError: on invalid errors, or a negative or non-finite radius.
    """
    e = _errors(errors)
    out: dict[float, float] = {}
    for r in radii:
        r = float(r)
        if not np.isfinite(r) or r < 0:
            raise ValueError(f"radius must be a finite non-negative number, got {r}")
        out[r] = float(np.mean(e <= r))
    return out
