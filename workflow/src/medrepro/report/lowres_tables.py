"""Tables of the LowRes report, as pure functions of validated inputs.

- ``timing.csv`` (long form): seconds per study, mean/SD/median, per dataset, model, runtime and
  thread count, peak RSS and the RAM limit.
- ``quality.csv`` (long form): average recall over 0-5 FP per scan (bootstrap SD), object Dice,
  image Dice, FP per scan at p > 0.5, recall of small and large objects.
- ``table1_luna16.csv``, ``table2_metastases.csv``: the paper's Tables 1-2 with ours beside the
  published values (``published_`` columns), plus OpenVINO FP32/INT8 columns.
- ``speedups.csv``: time of each model relative to 3D U-Net (PyTorch), OpenVINO vs PyTorch per
  model, LowRes vs 3D U-Net per runtime.

Speed-ups are ratios of mean seconds per study: ``reference_time_s / time_s`` (> 1: faster).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from medrepro.report.lowres_inputs import REFERENCE_MODEL, REFERENCE_RUNTIME, ReportInputs
from medrepro.report.published import lowres as pub

__all__ = [
    "RUNTIME_NAMES",
    "TIMING_COLUMNS",
    "QUALITY_COLUMNS",
    "SPEEDUP_COLUMNS",
    "model_name",
    "timing_table",
    "quality_table",
    "paper_table",
    "speedups_table",
    "TIMING_KEY",
    "QUALITY_KEY",
    "index_rows",
    "time_of",
    "quality_of",
    "small_object_recall",
]

#: display names of the runtimes
RUNTIME_NAMES: dict[str, str] = {
    "torch": "PyTorch FP32",
    "openvino_fp32": "OpenVINO FP32",
    "openvino_int8": "OpenVINO INT8",
}

TIMING_COLUMNS: tuple[str, ...] = (
    "dataset",
    "model",
    "runtime",
    "threads",
    "source",
    "n_studies",
    "mean_s",
    "sd_s",
    "median_s",
    "min_s",
    "max_s",
    "stage1_mean_s",
    "stage2_mean_s",
    "n_components_mean",
    "n_patches_mean",
    "peak_rss_mb",
    "ram_limit_mb",
    "within_ram_limit",
    "warmup_s",
)
QUALITY_COLUMNS: tuple[str, ...] = (
    "dataset",
    "model",
    "runtime",
    "avg_recall",
    "avg_recall_sd",
    "object_dice_mean",
    "object_dice_sd",
    "image_dice_mean",
    "n_studies",
    "n_objects",
    "n_found",
    "fp_per_scan_at_05",
    "small_threshold_mm",
    "n_small",
    "recall_small",
    "n_large",
    "recall_large",
)
SPEEDUP_COLUMNS: tuple[str, ...] = (
    "dataset",
    "comparison",
    "model",
    "runtime",
    "threads",
    "reference_model",
    "reference_runtime",
    "time_s",
    "reference_time_s",
    "speedup",
    "published_threads",
    "published_speedup",
)


def model_name(model: str) -> str:
    """The paper's name of a model (the key itself if unknown)."""
    return pub.MODEL_NAMES.get(model, model)


def _num(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x


def _col_mean(times: pd.DataFrame, column: str) -> float:
    if column not in times.columns:
        return math.nan
    x = times[column].to_numpy(dtype=float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def timing_table(inputs: ReportInputs) -> pd.DataFrame:
    """Long-form timing: one row per (dataset, model, runtime, threads) measured.

    ``mean_s``, ``sd_s``, ``median_s`` and the memory columns come from ``summary.json`` (the
    inference stage's numbers); min/max and the LowRes stage columns from ``times.csv``.
    """
    rows = []
    for name, data in inputs.datasets.items():
        for (model, runtime), run in data.runs.items():
            for t, timing in run.timing.items():
                s, times = timing.summary, timing.times
                rows.append(
                    {
                        "dataset": name,
                        "model": model,
                        "runtime": runtime,
                        "threads": t,
                        "source": timing.source,
                        "n_studies": int(_num(s.get("n_studies"))),
                        "mean_s": _num(s.get("mean_s")),
                        "sd_s": _num(s.get("sd_s")),
                        "median_s": _num(s.get("median_s")),
                        "min_s": float(times["seconds"].min()),
                        "max_s": float(times["seconds"].max()),
                        "stage1_mean_s": _col_mean(times, "stage1_seconds"),
                        "stage2_mean_s": _col_mean(times, "stage2_seconds"),
                        "n_components_mean": _col_mean(times, "n_components"),
                        "n_patches_mean": _col_mean(times, "n_patches"),
                        "peak_rss_mb": _num(s.get("peak_rss_mb")),
                        "ram_limit_mb": _num(s.get("ram_limit_mb")),
                        "within_ram_limit": s.get("within_ram_limit"),
                        "warmup_s": _num(s.get("warmup_s")),
                    }
                )
    return pd.DataFrame(rows, columns=list(TIMING_COLUMNS))


def small_object_recall(objects: pd.DataFrame, threshold_mm: float) -> dict[str, float]:
    """Recall at p > 0.5 of ground-truth objects below / at or above ``threshold_mm``.

    A ground-truth object counts as found when ``hit_dice > 0`` (it overlaps a predicted
    component). Diameters are the evaluation's (equivalent-sphere, mm).
    """
    gt = objects[objects["kind"] == "gt"]
    found = gt["hit_dice"].fillna(0).to_numpy(dtype=float) > 0
    diam = gt["diameter_mm"].to_numpy(dtype=float)
    small = diam < threshold_mm
    large = diam >= threshold_mm
    return {
        "n_small": int(small.sum()),
        "recall_small": float(found[small].mean()) if small.any() else math.nan,
        "n_large": int(large.sum()),
        "recall_large": float(found[large].mean()) if large.any() else math.nan,
    }


def quality_table(inputs: ReportInputs) -> pd.DataFrame:
    """Long-form quality: one row per (dataset, model, runtime) evaluated."""
    rows = []
    for name, data in inputs.datasets.items():
        thr = pub.SMALL_OBJECT_MM.get(name, math.nan)
        for (model, runtime), run in data.runs.items():
            e = run.evaluation
            rows.append(
                {
                    "dataset": name,
                    "model": model,
                    "runtime": runtime,
                    **{k: e[k] for k in QUALITY_COLUMNS[3:12]},
                    "small_threshold_mm": thr,
                    **small_object_recall(run.objects, thr),
                }
            )
    df = pd.DataFrame(rows, columns=list(QUALITY_COLUMNS))
    for c in ("n_studies", "n_objects", "n_found"):
        df[c] = df[c].astype("Int64")
    return df


#: key columns of the timing and quality lookups
TIMING_KEY: tuple[str, ...] = ("dataset", "model", "runtime", "threads")
QUALITY_KEY: tuple[str, ...] = ("dataset", "model", "runtime")

Index = dict[tuple[Any, ...], dict[str, Any]]


def index_rows(table: pd.DataFrame, keys: Sequence[str]) -> Index:
    """Rows of ``table`` as dicts keyed by the tuple of their ``keys`` values (first row wins)."""
    out: Index = {}
    for row in table.to_dict("records"):
        out.setdefault(tuple(row[k] for k in keys), row)
    return out


def _lookup(index: Index | pd.DataFrame, keys: Sequence[str], key: tuple, column: str):
    if isinstance(index, pd.DataFrame):
        index = index_rows(index, keys)
    row = index.get(key)
    if row is None:
        return None
    v = _num(row.get(column))
    return None if math.isnan(v) else v


def time_of(
    timing: Index | pd.DataFrame,
    dataset: str,
    model: str,
    runtime: str,
    threads: int,
    column: str = "mean_s",
) -> float | None:
    """One timing value (``mean_s`` by default); None if not measured.

    Args:
        timing: :func:`timing_table`, or its :func:`index_rows` by :data:`TIMING_KEY` (fast).
    """
    return _lookup(timing, TIMING_KEY, (dataset, model, runtime, int(threads)), column)


def quality_of(
    quality: Index | pd.DataFrame, dataset: str, model: str, runtime: str, column: str
) -> float | None:
    """One quality value; None if not evaluated or undefined (NaN).

    Args:
        quality: :func:`quality_table`, or its :func:`index_rows` by :data:`QUALITY_KEY` (fast).
    """
    return _lookup(quality, QUALITY_KEY, (dataset, model, runtime), column)


def _nan(v: float | None) -> float:
    return math.nan if v is None else v


def paper_table(
    inputs: ReportInputs, dataset: str, timing: pd.DataFrame, quality: pd.DataFrame
) -> pd.DataFrame:
    """Table 1 (LUNA16) or 2 (metastases): ours beside the published values.

    Columns: ``model, model_name``; ours (PyTorch FP32): ``time_t{T}_mean, time_t{T}_sd`` for
    each of our thread counts, ``avg_recall, avg_recall_sd, object_dice, object_dice_sd``; per
    OpenVINO runtime ``{runtime}_time_t{threads}``, ``{runtime}_avg_recall``,
    ``{runtime}_object_dice``; then the paper's ``published_time_t{4,8,16}_mean/_sd``,
    ``published_avg_recall(_sd)``, ``published_object_dice(_sd)`` (NaN for a model the paper
    does not have).
    """
    published = pub.TABLES.get(dataset, {})
    t0 = inputs.threads
    timing, quality = index_rows(timing, TIMING_KEY), index_rows(quality, QUALITY_KEY)
    rows = []
    for model in inputs.models:
        row: dict[str, Any] = {"model": model, "model_name": model_name(model)}
        for t in inputs.threads_list:
            row[f"time_t{t}_mean"] = _nan(time_of(timing, dataset, model, REFERENCE_RUNTIME, t))
            row[f"time_t{t}_sd"] = _nan(
                time_of(timing, dataset, model, REFERENCE_RUNTIME, t, "sd_s")
            )
        for ours, col in (
            ("avg_recall", "avg_recall"),
            ("avg_recall_sd", "avg_recall_sd"),
            ("object_dice", "object_dice_mean"),
            ("object_dice_sd", "object_dice_sd"),
        ):
            row[ours] = _nan(quality_of(quality, dataset, model, REFERENCE_RUNTIME, col))
        for runtime in inputs.openvino_runtimes:
            row[f"{runtime}_time_t{t0}"] = _nan(time_of(timing, dataset, model, runtime, t0))
            row[f"{runtime}_avg_recall"] = _nan(
                quality_of(quality, dataset, model, runtime, "avg_recall")
            )
            row[f"{runtime}_object_dice"] = _nan(
                quality_of(quality, dataset, model, runtime, "object_dice_mean")
            )
        p = published.get(model, {})
        for t in pub.THREADS:
            row[f"published_time_t{t}_mean"] = p.get(f"time_t{t}_mean", math.nan)
            row[f"published_time_t{t}_sd"] = p.get(f"time_t{t}_sd", math.nan)
        for k in ("avg_recall", "avg_recall_sd", "object_dice", "object_dice_sd"):
            row[f"published_{k}"] = p.get(k, math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def _published_speedup(dataset: str, model: str, ref: str, threads: int) -> tuple[float, float]:
    """``(paper threads, published ratio)``: at ``threads`` if the paper has it, else 8 (Fig. 1)."""
    table = pub.TABLES.get(dataset, {})
    pt = threads if threads in pub.THREADS else 8
    a, b = table.get(model, {}), table.get(ref, {})
    key = f"time_t{pt}_mean"
    if key in a and key in b and a[key] > 0:
        return float(pt), float(b[key] / a[key])
    return float(pt), math.nan


def _speedup_row(
    timing: Index,
    dataset: str,
    comparison: str,
    model: str,
    runtime: str,
    ref_model: str,
    ref_runtime: str,
    threads: int,
) -> dict[str, Any] | None:
    t = time_of(timing, dataset, model, runtime, threads)
    r = time_of(timing, dataset, ref_model, ref_runtime, threads)
    if t is None or r is None:
        return None
    pt, ps = (math.nan, math.nan)
    if runtime == REFERENCE_RUNTIME and ref_runtime == REFERENCE_RUNTIME:
        pt, ps = _published_speedup(dataset, model, ref_model, threads)
    return {
        "dataset": dataset,
        "comparison": comparison,
        "model": model,
        "runtime": runtime,
        "threads": threads,
        "reference_model": ref_model,
        "reference_runtime": ref_runtime,
        "time_s": t,
        "reference_time_s": r,
        "speedup": r / t,
        "published_threads": pt,
        "published_speedup": ps,
    }


def speedups_table(inputs: ReportInputs, timing: pd.DataFrame) -> pd.DataFrame:
    """Speed-ups (``reference_time_s / time_s``) at every measured thread count.

    ``comparison``:

    - ``vs_unet3d_torch``: each model (PyTorch) against 3D U-Net (PyTorch), published ratio at
      the same thread count when the paper has it (else at 8 threads, its Fig. 1);
    - ``openvino_vs_torch``: each model in each OpenVINO runtime against itself in PyTorch;
    - ``lowres_vs_unet3d``: LowRes against 3D U-Net in the same runtime.
    """
    rows: list[dict[str, Any] | None] = []
    timing = index_rows(timing, TIMING_KEY)  # type: ignore[assignment]
    for name in inputs.datasets:
        for t in inputs.threads_list:
            for model in inputs.models:
                rows.append(
                    _speedup_row(timing, name, "vs_unet3d_torch", model, REFERENCE_RUNTIME,
                                 REFERENCE_MODEL, REFERENCE_RUNTIME, t)
                )  # fmt: skip
            for model in inputs.models:
                for runtime in inputs.openvino_runtimes:
                    rows.append(
                        _speedup_row(timing, name, "openvino_vs_torch", model, runtime, model,
                                     REFERENCE_RUNTIME, t)
                    )  # fmt: skip
            for runtime in inputs.runtimes:
                rows.append(
                    _speedup_row(timing, name, "lowres_vs_unet3d", "lowres", runtime,
                                 REFERENCE_MODEL, runtime, t)
                )  # fmt: skip
    return pd.DataFrame([r for r in rows if r is not None], columns=list(SPEEDUP_COLUMNS))
