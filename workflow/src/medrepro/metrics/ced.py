"""2D landmark metrics of the face landmark paper: ME, CED, AUC, FR and NME, in pixels.

Fu, Jiao, Suttie, Noble, MLMI 2020, Sec. 4 ("Evaluation metrics"):

- the point-to-point error ``e_nk = ||p̂_nk - p_nk||_2`` in pixels of the network input image;
- the per-image error ``e_n = (1 / K) sum_k e_nk``; the mean error ``ME = mean_n e_n`` is **not**
  normalised (one eye only in the paper, so no inter-ocular distance);
- the cumulative error distribution ``CED(t) = (1 / N) sum_n 1[e_n <= t]`` over per-image errors;
- ``AUC_a = (1 / a) integral_0^a CED(t) dt`` in ``[0, 1]``;
- the failure rate ``FR_a = (1 / N) sum_n 1[e_n > a]`` (strict: an image whose error equals the
  threshold is not a failure, so ``FR_a = 1 - CED(a)``);
- optionally ``NME_n = e_n / ||p_n,left - p_n,right||`` (300-W style, outer eye corners).

The AUC is computed as the face-alignment codes do: ``t = np.linspace(0, a, n)``,
``scipy.integrate.simpson(CED(t), x=t) / a``. Two pitfalls:

- ``scipy.integrate.simps`` was removed in SciPy 1.14 (deprecated since 1.12); use ``simpson``
  (keyword ``x=``).
- ``np.arange(0, a, step)`` excludes ``a`` and, through floating-point accumulation, may or may
  not end near it, so the integral silently stops short of the threshold; ``np.linspace`` always
  contains both ends exactly.

Simpson's rule on the step function CED differs from the exact integral (and from the trapezoid
rule) by at most about one grid step times the largest jump: in the 4th decimal with 1001
points. NaN policy: every function raises :class:`ValueError` on NaN or infinite input.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.integrate import simpson

__all__ = [
    "point_errors",
    "image_errors",
    "mean_error",
    "ced_curve",
    "ced_auc",
    "failure_rate",
    "normalised_mean_error",
]


def _points(values: ArrayLike, name: str) -> np.ndarray:
    """``(N, K, D)`` float64, non-empty and finite, else ValueError."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 3 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty (N, K, 2) array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _pair(pred: ArrayLike, truth: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, t = _points(pred, "pred"), _points(truth, "truth")
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and truth {t.shape} differ in shape")
    return p, t


def _image_errors_1d(errors: ArrayLike) -> np.ndarray:
    """Per-image errors ``(N,)``: non-empty, finite, non-negative, else ValueError."""
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 1 or e.size == 0:
        raise ValueError(
            f"errors must be a non-empty (N,) array of per-image errors, got {e.shape}"
        )
    if not np.all(np.isfinite(e)):
        raise ValueError("errors contains NaN or infinite values")
    if np.any(e < 0):
        raise ValueError("errors must be non-negative distances")
    return e


def _positive(value: float, name: str) -> float:
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return v


def point_errors(pred: ArrayLike, truth: ArrayLike) -> np.ndarray:
    """Euclidean point-to-point errors.

    Args:
        pred: ``(N, K, 2)`` predicted ``(x, y)`` in pixels.
        truth: ``(N, K, 2)`` annotated ``(x, y)`` in pixels.

    Returns:
        ``(N, K)`` float64 errors in pixels.

    Example:
        >>> point_errors([[[3.0, 4.0]]], [[[0.0, 0.0]]])
        array([[5.]])
    """
    p, t = _pair(pred, truth)
    return np.linalg.norm(p - t, axis=-1)


def image_errors(pred: ArrayLike, truth: ArrayLike, visible: ArrayLike | None = None) -> np.ndarray:
    """Per-image error: the mean point-to-point error over the image's landmarks.

    Args:
        pred: ``(N, K, 2)`` predicted ``(x, y)`` in pixels.
        truth: ``(N, K, 2)`` annotated ``(x, y)`` in pixels.
        visible: optional ``(N, K)`` bool; if given, the mean is over the visible landmarks only
            (every image needs at least one).

    Returns:
        ``(N,)`` float64 errors in pixels.
    """
    e = point_errors(pred, truth)
    if visible is None:
        return e.mean(axis=1)
    v = np.asarray(visible)
    if v.shape != e.shape or v.dtype != bool:
        raise ValueError(
            f"visible must be a bool array of shape {e.shape}, got {v.dtype} {v.shape}"
        )
    count = v.sum(axis=1)
    if np.any(count == 0):
        raise ValueError(f"images {np.flatnonzero(count == 0).tolist()} have no visible landmark")
    return (e * v).sum(axis=1) / count


def mean_error(errors: ArrayLike) -> float:
    """The paper's ME: mean of the ``(N,)`` per-image errors (pixels)."""
    return float(_image_errors_1d(errors).mean())


def ced_curve(
    errors: ArrayLike, max_threshold: float, n_points: int = 1001
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution on ``[0, max_threshold]``.

    Args:
        errors: ``(N,)`` per-image errors in pixels.
        max_threshold: the last threshold (pixels, > 0), included exactly.
        n_points: number of thresholds (>= 2; odd suits Simpson's rule).

    Returns:
        ``(thresholds, fractions)``, both ``(n_points,)`` float64:
        ``thresholds = np.linspace(0, max_threshold, n_points)`` and
        ``fractions[i] = mean(errors <= thresholds[i])``.
    """
    e = _image_errors_1d(errors)
    a = _positive(max_threshold, "max_threshold")
    if int(n_points) != n_points or n_points < 2:
        raise ValueError(f"n_points must be an integer >= 2, got {n_points}")
    thresholds = np.linspace(0.0, a, int(n_points))
    fractions = np.mean(e[None, :] <= thresholds[:, None], axis=1)  # ties count as <=
    return thresholds, fractions


def ced_auc(errors: ArrayLike, max_threshold: float, n_points: int = 1001) -> float:
    """Area under the CED up to ``max_threshold``, normalised to ``[0, 1]``.

    ``simpson(fractions, x=thresholds) / max_threshold`` on :func:`ced_curve` (1 if every error
    is 0, 0 if every error exceeds the threshold).
    """
    thresholds, fractions = ced_curve(errors, max_threshold, n_points)
    return float(simpson(fractions, x=thresholds) / thresholds[-1])


def failure_rate(errors: ArrayLike, threshold: float) -> float:
    """Share of images whose error is strictly greater than ``threshold`` (pixels)."""
    e = _image_errors_1d(errors)
    t = float(threshold)
    if not np.isfinite(t) or t < 0:
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold}")
    return float(np.mean(e > t))


def normalised_mean_error(
    pred: ArrayLike, truth: ArrayLike, left_index: int, right_index: int
) -> np.ndarray:
    """Per-image error divided by the distance between two annotated landmarks.

    Args:
        pred: ``(N, K, 2)`` predicted ``(x, y)`` in pixels.
        truth: ``(N, K, 2)`` annotated ``(x, y)`` in pixels.
        left_index, right_index: the normalising landmarks (e.g. the outer eye corners).

    Returns:
        ``(N,)`` float64 ``mean_k e_nk / ||truth[n, left] - truth[n, right]||`` (unitless).

    Raises:
        ValueError: on bad indices or a zero normalising distance.
    """
    p, t = _pair(pred, truth)
    k = t.shape[1]
    for name, i in (("left_index", left_index), ("right_index", right_index)):
        if not 0 <= int(i) < k:
            raise ValueError(f"{name} {i} is outside 0..{k - 1}")
    if int(left_index) == int(right_index):
        raise ValueError("left_index and right_index must differ")
    d = np.linalg.norm(t[:, int(left_index)] - t[:, int(right_index)], axis=-1)
    if np.any(d <= 0):
        raise ValueError(f"zero normalising distance in images {np.flatnonzero(d <= 0).tolist()}")
    return np.linalg.norm(p - t, axis=-1).mean(axis=1) / d
