"""Object-wise detection and segmentation metrics of the LowRes paper (Shirokikh et al., 2021).

This is the LowRes paper's variant (its code, ``lowres/metric.py``), **not LUNA16's CPM**: objects
are 3D connected components of voxel masks (not points within a radius), the FROC runs over
thresholds on the maximum probability of the components fixed at p > 0.5, and the single score
is the recall averaged over 0, 0.01, ..., 5 false positives per scan (not 7 fixed FP rates).
Definitions (``docs/lowres.md``, "Evaluation"; ``papers.md`` section 003, "Metrics"):

- Predicted mask ``prob > 0.5``; components of it and of the ground truth with full
  (26-) connectivity.
- Per ground-truth object: ``hit_dice`` = max Dice ``2|g∩p| / (|g| + |p|)`` with an overlapping
  predicted component (0 if none; ties: the lowest component label), ``hit_stat`` = the max
  probability inside that best component (0 if none).
- Per predicted component: ``self_stat`` = its max probability; ``hit_dice`` = max Dice with an
  overlapping ground-truth object (> 0 iff it overlaps one).
- For theta in :data:`THRESHOLDS` = sigmoid(linspace(0, 5, 51)): TP = GT objects with
  ``hit_dice > 0`` and ``hit_stat >= theta``; FP = predicted components overlapping no GT object
  with ``self_stat > theta``; recall = TP / #GT; FP per scan = FP / #studies.
- Average recall: the FROC recall interpolated (``np.interp`` on the FP-sorted curve, for equal
  FP the max recall) at 0, 0.01, ..., 5 FP per scan and averaged; recall is held at the first
  point's value below the smallest FP and at the last point's beyond the largest (the components
  are fixed at p > 0.5, which caps the reachable FP range).
- Object Dice: mean (and population SD, ``np.std``) of ``hit_dice`` over the objects found at
  p > 0.5 (``hit_dice > 0``). Image Dice: 1 when both masks are empty.

Volumes are ``(z, y, x)`` arrays with ``spacing = (sz, sy, sx)`` mm. Records are pandas tables
with the columns :data:`GT_COLUMNS` and :data:`PRED_COLUMNS`; a study is the pair
``(gt_records, pred_records)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import ndimage

__all__ = [
    "GT_COLUMNS",
    "PRED_COLUMNS",
    "FROC_COLUMNS",
    "THRESHOLDS",
    "StudyRecords",
    "components",
    "object_records",
    "study_counts",
    "froc",
    "average_recall",
    "object_dice",
    "image_dice",
    "bootstrap_average_recall",
]

#: columns of a study's ground-truth records
GT_COLUMNS = ["object", "size_voxels", "diameter_mm", "hit_dice", "hit_stat"]
#: columns of a study's predicted-component records
PRED_COLUMNS = ["object", "size_voxels", "diameter_mm", "hit_dice", "self_stat"]
#: columns of :func:`froc`
FROC_COLUMNS = ["threshold", "fp_per_scan", "recall", "n_tp", "n_fp"]
#: the paper's probability thresholds, sigmoid(linspace(0, 5, 51)); the first is 0.5
THRESHOLDS = 1.0 / (1.0 + np.exp(-np.linspace(0.0, 5.0, 51)))

#: one study: (ground-truth records, predicted-component records)
StudyRecords = tuple[pd.DataFrame, pd.DataFrame]

_FULL = np.ones((3, 3, 3), dtype=bool)


def components(mask: ArrayLike) -> tuple[np.ndarray, int]:
    """Labels ``(z, y, x)`` int32 (0 background, 1..n) of the 26-connected components of ``mask``."""
    m = np.asarray(mask).astype(bool, copy=False)
    if m.ndim != 3:
        raise ValueError(f"mask must be 3D (z, y, x), got shape {m.shape}")
    labels, n = ndimage.label(m, structure=_FULL)
    return labels.astype(np.int32, copy=False), int(n)


def _diameters(sizes: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Equivalent-sphere diameters (mm) ``(6 V / pi)^(1/3)`` of ``sizes`` voxels."""
    volume = sizes.astype(np.float64) * float(np.prod(np.asarray(spacing, dtype=np.float64)))
    return np.cbrt(6.0 * volume / math.pi)


def _best_hits(dice_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: max Dice (0 if the row has no overlap) and its column (-1 if none)."""
    if dice_matrix.shape[1] == 0:
        n = dice_matrix.shape[0]
        return np.zeros(n), np.full(n, -1)
    best = np.argmax(dice_matrix, axis=1)  # first maximum: the lowest label
    value = dice_matrix[np.arange(dice_matrix.shape[0]), best]
    return value, np.where(value > 0, best, -1)


def object_records(prob: ArrayLike, gt: ArrayLike, spacing: Sequence[float]) -> StudyRecords:
    """Object records of one study.

    Args:
        prob: foreground probabilities ``(z, y, x)`` in [0, 1]; predicted mask is ``prob > 0.5``.
        gt: ground-truth mask ``(z, y, x)`` (non-zero = object), same shape.
        spacing: ``(sz, sy, sx)`` voxel size in mm (for ``diameter_mm``).

    Returns:
        ``(gt_records, pred_records)`` tables with :data:`GT_COLUMNS` and :data:`PRED_COLUMNS`,
        one row per component in label order (``object`` = 1-based label, ``size_voxels``,
        ``diameter_mm`` of the equivalent sphere).
    """
    p = np.asarray(prob, dtype=np.float32)
    g = np.asarray(gt)
    if p.shape != g.shape or p.ndim != 3:
        raise ValueError(f"prob {p.shape} and gt {g.shape} must be equal 3D shapes")
    if len(spacing) != 3:
        raise ValueError(f"spacing must have 3 values (z, y, x) mm, got {list(spacing)}")
    gl, ng = components(g != 0)
    pl, npr = components(p > 0.5)
    g_sizes = np.bincount(gl.ravel(), minlength=ng + 1)[1:]
    p_sizes = np.bincount(pl.ravel(), minlength=npr + 1)[1:]
    both = (gl > 0) & (pl > 0)
    pairs = (gl[both].astype(np.int64) - 1) * max(npr, 1) + (pl[both] - 1)
    overlap = np.bincount(pairs, minlength=ng * npr).reshape(ng, npr).astype(np.float64)
    dice = 2.0 * overlap / (g_sizes[:, None] + p_sizes[None, :]).clip(min=1)
    self_stat = (
        np.asarray(ndimage.maximum(p, pl, index=np.arange(1, npr + 1)), dtype=np.float64)
        if npr
        else np.zeros(0)
    )
    g_hit, g_best = _best_hits(dice)
    p_hit, _ = _best_hits(dice.T)
    hit_stat = np.where(g_best >= 0, self_stat[np.maximum(g_best, 0)] if npr else 0.0, 0.0)
    gt_records = pd.DataFrame(
        {
            "object": np.arange(1, ng + 1),
            "size_voxels": g_sizes.astype(np.int64),
            "diameter_mm": _diameters(g_sizes, spacing),
            "hit_dice": g_hit.astype(np.float64),
            "hit_stat": hit_stat.astype(np.float64),
        },
        columns=GT_COLUMNS,
    )
    pred_records = pd.DataFrame(
        {
            "object": np.arange(1, npr + 1),
            "size_voxels": p_sizes.astype(np.int64),
            "diameter_mm": _diameters(p_sizes, spacing),
            "hit_dice": p_hit.astype(np.float64),
            "self_stat": self_stat,
        },
        columns=PRED_COLUMNS,
    )
    return gt_records, pred_records


def _as_list(records_per_study: Sequence[StudyRecords] | Mapping[str, StudyRecords]) -> list:
    if isinstance(records_per_study, Mapping):
        return list(records_per_study.values())
    return list(records_per_study)


def study_counts(
    records_per_study: Sequence[StudyRecords] | Mapping[str, StudyRecords],
    thresholds: ArrayLike = THRESHOLDS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-study TP and FP counts at every threshold.

    Returns:
        ``tp (S, T)``, ``fp (S, T)`` int64 and ``n_gt (S,)`` for ``S`` studies, ``T`` thresholds.
    """
    th = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    studies = _as_list(records_per_study)
    tp = np.zeros((len(studies), th.size), dtype=np.int64)
    fp = np.zeros_like(tp)
    n_gt = np.zeros(len(studies), dtype=np.int64)
    for s, (gt_rec, pred_rec) in enumerate(studies):
        hit = gt_rec["hit_dice"].to_numpy(dtype=np.float64) > 0
        hit_stat = gt_rec["hit_stat"].to_numpy(dtype=np.float64)[hit]
        tp[s] = (hit_stat[:, None] >= th[None, :]).sum(axis=0)
        alone = pred_rec["hit_dice"].to_numpy(dtype=np.float64) <= 0
        self_stat = pred_rec["self_stat"].to_numpy(dtype=np.float64)[alone]
        fp[s] = (self_stat[:, None] > th[None, :]).sum(axis=0)
        n_gt[s] = len(gt_rec)
    return tp, fp, n_gt


def _curve(tp: np.ndarray, fp: np.ndarray, n_gt: int, n_studies: int) -> tuple:
    """(fp_per_scan, recall) from summed counts; recall NaN without GT objects."""
    recall = tp / n_gt if n_gt > 0 else np.full(tp.shape, np.nan)
    fp_rate = fp / n_studies if n_studies > 0 else np.full(fp.shape, np.nan)
    return fp_rate.astype(np.float64), np.asarray(recall, dtype=np.float64)


def froc(
    records_per_study: Sequence[StudyRecords] | Mapping[str, StudyRecords],
    thresholds: ArrayLike = THRESHOLDS,
) -> pd.DataFrame:
    """The FROC table (:data:`FROC_COLUMNS`), one row per threshold, in threshold order.

    ``fp_per_scan`` = FP / number of studies (every study counts, empty ones included);
    ``recall`` = TP / number of GT objects (NaN when there is none).
    """
    th = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    tp, fp, n_gt = study_counts(records_per_study, th)
    n_tp, n_fp = tp.sum(axis=0), fp.sum(axis=0)
    fp_rate, recall = _curve(n_tp, n_fp, int(n_gt.sum()), tp.shape[0])
    return pd.DataFrame(
        {"threshold": th, "fp_per_scan": fp_rate, "recall": recall, "n_tp": n_tp, "n_fp": n_fp},
        columns=FROC_COLUMNS,
    )


def _average_recall(fp_rate: np.ndarray, recall: np.ndarray, fp_max: float, step: float) -> float:
    if fp_rate.size == 0 or not np.all(np.isfinite(recall)) or not np.all(np.isfinite(fp_rate)):
        return math.nan
    xs, inverse = np.unique(fp_rate, return_inverse=True)  # sorted, equal FP grouped
    ys = np.full(xs.size, -np.inf)
    np.maximum.at(ys, inverse.reshape(-1), recall)
    grid = np.linspace(0.0, fp_max, int(round(fp_max / step)) + 1)
    return float(np.mean(np.interp(grid, xs, ys)))


def average_recall(froc_table: pd.DataFrame, fp_max: float = 5.0, step: float = 0.01) -> float:
    """Mean FROC recall at 0, ``step``, ..., ``fp_max`` FP per scan (501 points by default).

    The curve is sorted by FP per scan, equal FP keep their max recall, and ``np.interp`` holds
    the recall of the first point below the smallest FP and that of the last point beyond the
    largest. NaN when the recall is undefined (no ground-truth objects).
    """
    if fp_max <= 0 or step <= 0:
        raise ValueError(f"fp_max and step must be > 0, got {fp_max}, {step}")
    return _average_recall(
        froc_table["fp_per_scan"].to_numpy(dtype=np.float64),
        froc_table["recall"].to_numpy(dtype=np.float64),
        fp_max,
        step,
    )


def object_dice(
    records_per_study: Sequence[StudyRecords] | Mapping[str, StudyRecords],
) -> tuple[float, float, int]:
    """Object Dice: ``(mean, sd, n_found)`` of ``hit_dice`` over GT objects found at p > 0.5.

    ``sd`` is the population SD (``np.std``, as the paper's code); both are NaN if none is found.
    """
    values = [
        gt_rec["hit_dice"].to_numpy(dtype=np.float64) for gt_rec, _ in _as_list(records_per_study)
    ]
    hits = np.concatenate(values) if values else np.zeros(0)
    hits = hits[hits > 0]
    if hits.size == 0:
        return math.nan, math.nan, 0
    return float(hits.mean()), float(hits.std()), int(hits.size)


def image_dice(pred: ArrayLike, gt: ArrayLike) -> float:
    """Dice ``2|P∩G| / (|P| + |G|)`` of two masks (non-zero = foreground); 1.0 when both are empty."""
    p, g = np.asarray(pred).astype(bool, copy=False), np.asarray(gt).astype(bool, copy=False)
    if p.shape != g.shape:
        raise ValueError(f"pred and gt shapes differ: {p.shape} vs {g.shape}")
    total = np.count_nonzero(p) + np.count_nonzero(g)
    return 1.0 if total == 0 else float(2.0 * np.count_nonzero(p & g) / total)


def bootstrap_average_recall(
    records_per_study: Sequence[StudyRecords] | Mapping[str, StudyRecords],
    n: int,
    seed: int,
    thresholds: ArrayLike = THRESHOLDS,
    fp_max: float = 5.0,
    step: float = 0.01,
) -> float:
    """SD (``ddof=1``) of the average recall over ``n`` resamples of the studies with replacement.

    Each resample draws as many studies as there are (``numpy.random.default_rng(seed)``) and
    recomputes the FROC and its average recall; resamples without any GT object (recall
    undefined) are left out. NaN if ``n < 2`` or fewer than two resamples are defined.
    """
    tp, fp, n_gt = study_counts(records_per_study, thresholds)
    n_studies = tp.shape[0]
    if n < 2 or n_studies == 0:
        return math.nan
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        idx = rng.integers(0, n_studies, size=n_studies)
        fp_rate, recall = _curve(
            tp[idx].sum(axis=0), fp[idx].sum(axis=0), int(n_gt[idx].sum()), n_studies
        )
        values.append(_average_recall(fp_rate, recall, fp_max, step))
    finite = np.asarray(values)[np.isfinite(values)]
    return float(np.std(finite, ddof=1)) if finite.size >= 2 else math.nan
