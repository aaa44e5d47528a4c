"""Tables of the brain extraction report, as pure functions of validated inputs.

Table 4 (Dice, HD95 in mm, memory and latency speed-up normalised to PyTorch FP32), conversion
routes (ONNX -> IR vs PyTorch -> IR), INT8 quantization (both NNCF modes), core scaling (Fig. 5),
registration QC and Dice per input modality.

HD95 means exclude the items where exactly one mask is empty (HD95 undefined, NaN); the number
excluded is always reported beside the mean (``hd95_excluded``), never dropped silently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from medrepro.report.brain_extraction_inputs import REFERENCE, ReportInputs
from medrepro.report.cephalometry_tables import BACKEND_NAMES, main_threads, select
from medrepro.report.published import brain_extraction as pub

__all__ = [
    "BENCH_OF_CONFIG",
    "VERSION_KEY",
    "ROUTES",
    "mean_sd",
    "accuracy_summary",
    "paired_difference",
    "speed_rows",
    "table4_summary",
    "routes_table",
    "quantization_table",
    "core_scaling_table",
    "qc_table",
    "per_modality_table",
    "value",
]

#: evaluation configuration -> (backend, precision) of its benchmark row (sync, batch 1)
BENCH_OF_CONFIG: dict[str, tuple[str, str]] = {
    "pytorch_fp32": ("pytorch", "f32"),
    "onnxruntime_fp32": ("onnxruntime", "f32"),
    "openvino_fp32": ("openvino", "f32"),
    "openvino_bf16": ("openvino", "bf16"),
    "openvino_int8": ("openvino", "int8"),
}
#: framework (evaluation.csv) -> package whose version sysinfo records
VERSION_KEY = {"pytorch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}

#: conversion routes: (route, evaluation config or None, parity.json key, description)
ROUTES: tuple[tuple[str, str | None, str, str], ...] = (
    ("direct", "openvino_fp32", "openvino_fp32", "PyTorch -> OpenVINO IR (ov.convert_model)"),
    ("onnx", "openvino_fp32_onnx", "openvino_from_onnx", "PyTorch -> ONNX -> OpenVINO IR"),
    ("onnxruntime", "onnxruntime_fp32", "onnxruntime", "PyTorch -> ONNX, ONNX Runtime"),
    ("direct_fp16", None, "openvino_fp16", "PyTorch -> OpenVINO IR, FP16 weights"),
)


def mean_sd(values: Sequence[float] | np.ndarray | pd.Series) -> tuple[float, float, int, int]:
    """Mean and sample SD over the finite values; NaN entries are counted, not dropped silently.

    Returns:
        ``(mean, sd, n_used, n_excluded)``; ``sd`` is NaN below two values, ``mean`` with none.
    """
    x = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(x)
    used = x[ok]
    mean = float(used.mean()) if used.size else math.nan
    sd = float(used.std(ddof=1)) if used.size > 1 else math.nan
    return mean, sd, int(used.size), int(x.size - used.size)


def _summary_row(df: pd.DataFrame) -> dict[str, Any]:
    d_mean, d_sd, n, _ = mean_sd(df["dice"])
    h_mean, h_sd, h_n, h_ex = mean_sd(df["hd95_mm"])
    m_mean, m_sd, _, _ = mean_sd(df["hd95_max_mm"])
    return {
        "n_items": n,
        "dice_mean": d_mean,
        "dice_sd": d_sd,
        "hd95_mean": h_mean,
        "hd95_sd": h_sd,
        "hd95_n": h_n,
        "hd95_excluded": h_ex,
        "hd95_max_mean": m_mean,
        "hd95_max_sd": m_sd,
        "n_empty_pred": int(df["empty_pred"].sum()),
        "n_empty_gt": int(df["empty_gt"].sum()),
    }


def accuracy_summary(inputs: ReportInputs, by_modality: bool = False) -> pd.DataFrame:
    """Dice and HD95 (mm) mean/SD per configuration (and modality), HD95 exclusions counted."""
    ev = inputs.evaluation
    rows = []
    for config in inputs.configs:
        sub = ev[ev["config"] == config]
        groups = sorted(sub.groupby("modality")) if by_modality else [("all", sub)]
        for modality, g in groups:
            rows.append({"config": config, "modality": modality, **_summary_row(g)})
    return pd.DataFrame(rows)


def paired_difference(
    evaluation: pd.DataFrame, config: str, column: str = "dice", reference: str = REFERENCE
) -> pd.Series:
    """Per-item ``config - reference`` of ``column`` on the items both evaluated (NaN kept)."""
    key = ["subject_id", "modality"]
    a = evaluation[evaluation["config"] == config].set_index(key)[column]
    b = evaluation[evaluation["config"] == reference].set_index(key)[column]
    common = a.index.intersection(b.index)
    return (a.loc[common] - b.loc[common]).sort_index()


def value(table: pd.DataFrame, config: str, column: str, key: str = "config") -> float | None:
    """One cell of a table keyed by ``config``; ``None`` if absent or NaN."""
    sel = table[table[key] == config] if key in table.columns else table.iloc[0:0]
    if sel.empty or column not in sel.columns:
        return None
    v = sel.iloc[0][column]
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def speed_rows(bench: pd.DataFrame, threads: int | None = None) -> pd.DataFrame:
    """Batch-1 sync rows: latency (ms), speed-up and memory normalised to PyTorch f32.

    ``speedup`` = PyTorch f32 latency_median_ms / latency_median_ms; ``memory_norm`` =
    peak_rss_mb / PyTorch f32 peak_rss_mb (both at the same thread count, batch 1, sync).
    """
    if threads is None:
        threads = main_threads(bench)
    ref = select(bench, "pytorch", "f32", "sync", 1, threads)
    ref_lat = float(ref["latency_median_ms"]) if ref is not None else math.nan
    ref_mem = float(ref["peak_rss_mb"]) if ref is not None else math.nan
    rows = []
    sel = bench[(bench["mode"] == "sync") & (bench["batch"] == 1) & (bench["threads"] == threads)]
    combos = sel[["backend", "precision"]].drop_duplicates().itertuples(index=False, name=None)
    for backend, precision in combos:
        r = select(bench, backend, precision, "sync", 1, threads, ok_only=False)
        ok = r is not None and r["status"] == "ok"
        lat = float(r["latency_median_ms"]) if ok else math.nan
        mem = float(r["peak_rss_mb"]) if ok else math.nan
        rows.append(
            {
                "backend": backend,
                "precision": precision,
                "label": f"{BACKEND_NAMES.get(backend, backend)} {precision}",
                "status": "not run" if r is None else str(r["status"]),
                "threads": threads,
                "latency_median_ms": lat,
                "latency_p90_ms": float(r["latency_p90_ms"]) if ok else math.nan,
                "fps": float(r["fps"]) if ok else math.nan,
                "peak_rss_mb": mem,
                "speedup": ref_lat / lat if ok and lat > 0 else math.nan,
                "memory_norm": mem / ref_mem if ok and ref_mem > 0 else math.nan,
            }
        )
    cols = [
        "backend",
        "precision",
        "label",
        "status",
        "threads",
        "latency_median_ms",
        "latency_p90_ms",
        "fps",
        "peak_rss_mb",
        "speedup",
        "memory_norm",
    ]
    return pd.DataFrame(rows, columns=cols)


def _version(sysinfo: dict[str, Any], framework: str) -> str:
    versions = sysinfo.get("versions")
    key = VERSION_KEY.get(framework, framework)
    if isinstance(versions, dict) and versions.get(key):
        return str(versions[key])
    return ""


def table4_summary(inputs: ReportInputs, acc: pd.DataFrame, speed: pd.DataFrame) -> pd.DataFrame:
    """Table 4: accuracy per evaluated configuration, speed and memory of its benchmark row.

    Published values (Table 4, normalised to PyTorch 1.5.1; Section 3 text vs PyTorch 1.9.0)
    sit beside the rows they reproduce (:data:`pub.CONFIG_TO_ROW`), labelled ``published_``.
    """
    ev = inputs.evaluation
    rows = []
    for config in inputs.configs:
        first = ev[ev["config"] == config].iloc[0]
        framework = str(first["framework"])
        a = acc[acc["config"] == config].iloc[0]
        bkey = BENCH_OF_CONFIG.get(config)
        s = (
            speed[(speed["backend"] == bkey[0]) & (speed["precision"] == bkey[1])]
            if bkey
            else speed.iloc[0:0]
        )
        srow = s.iloc[0] if not s.empty else None
        prow = pub.CONFIG_TO_ROW.get(config)
        p = pub.TABLE4.get(prow, {}) if prow else {}
        rows.append(
            {
                "config": config,
                "framework": framework,
                "version": _version(inputs.sysinfo, framework),
                "precision": str(first["precision"]),
                "route": str(first["route"]),
                **{k: a[k] for k in ("n_items", "dice_mean", "dice_sd", "hd95_mean", "hd95_sd")},
                "hd95_excluded": int(a["hd95_excluded"]),
                "hd95_max_mean": a["hd95_max_mean"],
                "latency_median_ms": srow["latency_median_ms"] if srow is not None else math.nan,
                "peak_rss_mb": srow["peak_rss_mb"] if srow is not None else math.nan,
                "memory_norm": srow["memory_norm"] if srow is not None else math.nan,
                "speedup": srow["speedup"] if srow is not None else math.nan,
                "bench_status": srow["status"] if srow is not None else "not benchmarked",
                "published_row": pub.TABLE4_LABELS[prow] if prow else "",
                "published_dice": p.get("dice", math.nan),
                "published_hd95_mean": p.get("hd95_mean", math.nan),
                "published_hd95_sd": p.get("hd95_sd", math.nan),
                "published_memory_norm_vs_pt151": p.get("memory_norm", math.nan),
                "published_speedup_vs_pt151": p.get("speedup", math.nan),
                "published_speedup_vs_pt190": pub.SPEEDUP_VS_PT190.get(
                    config, 1.0 if config == REFERENCE else math.nan
                ),
            }
        )
    return pd.DataFrame(rows)


def routes_table(inputs: ReportInputs, acc: pd.DataFrame) -> pd.DataFrame:
    """Conversion routes: Dice/HD95 (mm) of each vs PyTorch FP32, and parity max abs difference."""
    ev = inputs.evaluation
    tol = inputs.parity.get("tolerance")
    ok = inputs.parity.get("tolerance_ok")
    rows = []
    for route, config, key, description in ROUTES:
        evaluated = config is not None and (ev["config"] == config).any()
        d = paired_difference(ev, config, "dice") if evaluated else pd.Series(dtype=float)
        h = paired_difference(ev, config, "hd95_mm") if evaluated else pd.Series(dtype=float)
        h_mean, _, _, h_ex = mean_sd(h) if evaluated else (math.nan, math.nan, 0, 0)
        given = isinstance(tol, dict) and key in tol
        parity_tol = float(tol[key]) if given else float(inputs.options["parity_tolerance"])
        diff = float(inputs.parity[key])
        rows.append(
            {
                "route": route,
                "description": description,
                "config": config or "",
                "parity_key": key,
                "parity_max_abs_diff": diff,
                "parity_tolerance": parity_tol,
                "parity_tolerance_source": "parity.json" if given else "--parity-tolerance",
                "parity_ok": bool(ok[key])
                if given and isinstance(ok, dict) and key in ok
                else diff <= parity_tol,
                "n_items": int(d.size),
                "dice_mean": value(acc, config, "dice_mean") if evaluated else math.nan,
                "dice_diff_mean": float(d.mean()) if d.size else math.nan,
                "dice_absdiff_max": float(d.abs().max()) if d.size else math.nan,
                "hd95_mean": value(acc, config, "hd95_mean") if evaluated else math.nan,
                "hd95_excluded": value(acc, config, "hd95_excluded") if evaluated else math.nan,
                "hd95_diff_mean": h_mean,
                "hd95_diff_excluded": h_ex,
            }
        )
    return pd.DataFrame(rows)


_QUANT_CONFIG = {"accuracy_control": "openvino_int8", "default": "openvino_int8_default"}


def quantization_table(inputs: ReportInputs, acc: pd.DataFrame) -> pd.DataFrame:
    """Both NNCF modes: validation metric and drop, FakeQuantize counts, test-set Dice drops."""
    rows = []
    ov32 = value(acc, "openvino_fp32", "dice_mean")
    pt = value(acc, REFERENCE, "dice_mean")
    for mode, q in inputs.quantization.items():
        config = _QUANT_CONFIG[mode]
        d8 = value(acc, config, "dice_mean")
        total, kept = float(q["fake_quantize_total"]), float(q["fake_quantize_kept"])
        floats = q.get("float_operations")
        rows.append(
            {
                "mode": mode,
                "config": config,
                "metric_fp32": float(q["metric_fp32"]),
                "metric_int8": float(q["metric_int8"]),
                "drop": float(q["drop"]),
                "max_drop": float(q["max_drop"]),
                "target_reached": q.get("target_reached"),
                "fake_quantize_total": int(total),
                "fake_quantize_kept": int(kept),
                "fake_quantize_kept_share": kept / total if total > 0 else math.nan,
                "float_operations": len(floats) if isinstance(floats, list) else math.nan,
                "seconds": float(q["seconds"])
                if isinstance(q.get("seconds"), int | float)
                else math.nan,
                "test_dice_int8": math.nan if d8 is None else d8,
                "test_dice_drop_vs_openvino_fp32": math.nan
                if d8 is None or ov32 is None
                else ov32 - d8,
                "test_dice_drop_vs_pytorch_fp32": math.nan if d8 is None or pt is None else pt - d8,
            }
        )
    return pd.DataFrame(rows)


def core_scaling_table(inputs: ReportInputs) -> pd.DataFrame:
    """Fig. 5: batch-1 sync latency (ms) per thread count and framework/precision.

    ``speedup_vs_pytorch_min_threads`` divides PyTorch f32's latency at the smallest thread count
    (normally 1) by the row's latency; ``speedup_vs_pytorch_same_threads`` uses PyTorch at the
    row's thread count; ``scaling_vs_own_min_threads`` the configuration's own latency at the
    smallest thread count.
    """
    cols = [
        "threads",
        "backend",
        "precision",
        "label",
        "status",
        "latency_median_ms",
        "fps",
        "peak_rss_mb",
        "speedup_vs_pytorch_min_threads",
        "speedup_vs_pytorch_same_threads",
        "scaling_vs_own_min_threads",
        "reference_threads",
    ]
    if not inputs.scaling:
        return pd.DataFrame(columns=cols)
    frames = [speed_rows(df, k) for k, df in sorted(inputs.scaling.items())]
    table = pd.concat(frames, ignore_index=True)
    kmin = int(table["threads"].min())
    lat = table.set_index(["backend", "precision", "threads"])["latency_median_ms"]

    def lookup(backend: str, precision: str, k: int) -> float:
        v = lat.get((backend, precision, k), math.nan)
        return float(v) if not isinstance(v, pd.Series) else float(v.iloc[0])

    ref0 = lookup("pytorch", "f32", kmin)
    table["speedup_vs_pytorch_min_threads"] = ref0 / table["latency_median_ms"]
    table["speedup_vs_pytorch_same_threads"] = table["speedup"]
    table["scaling_vs_own_min_threads"] = [
        lookup(b, p, kmin) / v if v > 0 else math.nan
        for b, p, v in zip(
            table["backend"], table["precision"], table["latency_median_ms"], strict=True
        )
    ]
    table["reference_threads"] = kmin
    order = {"pytorch": 0, "onnxruntime": 1, "openvino": 2}
    porder = {"f32": 0, "bf16": 1, "int8": 2}
    table = table.assign(
        _b=table["backend"].map(order).fillna(9), _p=table["precision"].map(porder).fillna(9)
    ).sort_values(["_b", "_p", "threads"])
    return table[cols].reset_index(drop=True)


def qc_table(inputs: ReportInputs) -> pd.DataFrame:
    """Registration QC per subject, with the threshold and whether the subject fell below it."""
    qc = inputs.qc.copy()
    threshold = inputs.options.get("qc_min_dice")
    qc["qc_min_dice"] = math.nan if threshold is None else float(threshold)
    qc["below_threshold"] = qc["mask_dice_vs_atlas"] < threshold if threshold is not None else pd.NA
    tested = set(inputs.evaluation["subject_id"])
    qc["in_test_set"] = qc["subject_id"].isin(tested)
    return qc.sort_values("subject_id").reset_index(drop=True)


def per_modality_table(inputs: ReportInputs) -> pd.DataFrame:
    """Dice and HD95 (mm) per configuration and input modality (the model is modality-agnostic)."""
    return accuracy_summary(inputs, by_modality=True)
