"""Tables of the cephalometry report, as pure functions of validated inputs.

Accuracy (paper Tables 1-2, mm), batch-1 speed (Tables 3, 5), batch sweeps (Tables 4, 6),
deployment checks and the OpenVINO per-node profile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from medrepro.io.errors import InputError
from medrepro.metrics.landmarks import (
    mean_radial_error,
    pooled_rmse,
    rmse_per_landmark,
    success_detection_rate,
)
from medrepro.report.cephalometry_inputs import (
    BACKENDS,
    PARITY_KEYS,
    PERF_COLUMNS,
    SDR_RADII,
    ReportInputs,
)
from medrepro.report.markdown import format_value

__all__ = [
    "BACKEND_NAMES",
    "DASH",
    "error_matrix",
    "accuracy_tables",
    "accuracy_value",
    "config_label",
    "main_threads",
    "select",
    "sort_configs",
    "speed_table",
    "batch_table",
    "as_number",
    "parity_routes",
    "parity_tolerance",
    "deployment_table",
    "perf_counter_table",
    "node_share",
    "format_deployment_cell",
    "deployment_digits",
]

#: display names of the benchmark backends
BACKEND_NAMES = {"pytorch": "PyTorch", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}
#: display order of backends, precisions and modes
BACKEND_ORDER = {"pytorch": 0, "onnxruntime": 1, "openvino": 2}
PRECISION_ORDER = {"f32": 0, "bf16": 1, "int8": 2}
MODE_ORDER = {"sync": 0, "async": 1}


def error_matrix(
    pred: pd.DataFrame, backend: str, labels: Sequence[str]
) -> tuple[np.ndarray, list[str], list[str]]:
    """Radial errors ``(N, K)`` mm of one backend, cases sorted, landmarks in ``labels`` order.

    Returns:
        ``(errors, case_ids, landmarks)``.

    Raises:
        ValueError: if some case lacks some landmark (the caller turns it into an InputError).
    """
    sub = pred[pred["backend"] == backend]
    table = sub.pivot(index="case_id", columns="landmark", values="error_calc")
    present = [lab for lab in labels if lab in table.columns]
    table = table.reindex(columns=present).sort_index()
    if table.isna().any().any():
        raise ValueError(f"backend {backend}: some cases lack some landmarks")
    return table.to_numpy(dtype=np.float64), list(table.index), present


def accuracy_tables(
    inputs: ReportInputs,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[tuple[str, str], np.ndarray]]:
    """Tables 1 (RMSE per landmark, pooled total, MRE; mm) and 2 (SDR at 2/3/4 mm).

    Returns:
        ``(table1, table2, errors)`` where ``errors[(model, backend)]`` is the ``(N, K)`` matrix.
    """
    rows1, rows2, errors = [], [], {}
    for m in inputs.models.values():
        for backend in BACKENDS:
            if not (m.predictions["backend"] == backend).any():
                continue
            try:
                e, _, labels = error_matrix(m.predictions, backend, inputs.labels)
            except ValueError as err:
                raise InputError(
                    inputs.results_dir / "models" / m.name / "predictions.csv", str(err)
                ) from None
            errors[(m.name, backend)] = e
            rmse = rmse_per_landmark(e)
            row1: dict[str, Any] = {"model": m.name, "backend": backend}
            row1.update({lab: float(v) for lab, v in zip(labels, rmse, strict=True)})
            row1.update(
                {
                    "total": pooled_rmse(e),
                    "mre": mean_radial_error(e),
                    "n_cases": e.shape[0],
                    "paper_role": m.role or "",
                }
            )
            rows1.append(row1)
            sdr = success_detection_rate(e, SDR_RADII)
            row2: dict[str, Any] = {"model": m.name, "backend": backend}
            row2.update({f"{r:g} mm": v for r, v in sdr.items()})
            row2.update({"n_cases": e.shape[0], "paper_role": m.role or ""})
            rows2.append(row2)
    t1_cols = ["model", "backend", *inputs.labels, "total", "mre", "n_cases", "paper_role"]
    t2_cols = ["model", "backend", *[f"{r:g} mm" for r in SDR_RADII], "n_cases", "paper_role"]
    return pd.DataFrame(rows1, columns=t1_cols), pd.DataFrame(rows2, columns=t2_cols), errors


def accuracy_value(
    table: pd.DataFrame, model: str | None, backend: str, column: str
) -> float | None:
    if model is None:
        return None
    sel = table[(table["model"] == model) & (table["backend"] == backend)]
    if sel.empty or pd.isna(sel.iloc[0][column]):
        return None
    return float(sel.iloc[0][column])


def config_label(
    backend: str, precision: str, mode: str, nreq: Any = None, threads: Any = None
) -> str:
    """Human-readable configuration, e.g. ``OpenVINO f32 async (4 requests)``."""
    text = f"{BACKEND_NAMES.get(backend, backend)} {precision} {mode}"
    if mode == "async" and nreq is not None and not pd.isna(nreq):
        text += f" ({int(nreq)} requests)"
    if threads is not None and not pd.isna(threads):
        text += f", {int(threads)} threads"
    return text


def main_threads(bench: pd.DataFrame) -> int | None:
    """The thread count the headline comparisons use: the largest one benchmarked."""
    if bench.empty:
        return None
    return int(bench["threads"].max())


def select(
    bench: pd.DataFrame,
    backend: str,
    precision: str,
    mode: str,
    batch: int = 1,
    threads: int | None = None,
    nreq: int | None = None,
    ok_only: bool = True,
) -> pd.Series | None:
    """One benchmark row; for async without ``nreq`` the one with 4 requests, else the fastest."""
    if threads is None:
        threads = main_threads(bench)
    sel = bench[
        (bench["backend"] == backend)
        & (bench["precision"] == precision)
        & (bench["mode"] == mode)
        & (bench["batch"] == batch)
        & (bench["threads"] == threads)
    ]
    if ok_only:
        sel = sel[sel["status"] == "ok"]
    if nreq is not None:
        sel = sel[sel["nreq"] == nreq]
    elif mode == "async" and (sel["nreq"] == 4).any():
        sel = sel[sel["nreq"] == 4]
    if sel.empty:
        return None
    if ok_only:
        return sel.sort_values("fps", ascending=False).iloc[0]
    ok = sel[sel["status"] == "ok"]
    return (ok if not ok.empty else sel).iloc[0]


def _reference_fps(bench: pd.DataFrame, threads: int) -> float | None:
    ref = select(bench, "pytorch", "f32", "sync", 1, threads)
    if ref is None:
        ref = select(bench, "pytorch", "f32", "sync", 1)
    return None if ref is None else float(ref["fps"])


def sort_configs(df: pd.DataFrame) -> pd.DataFrame:
    """Sort benchmark configurations: PyTorch, ONNX Runtime, OpenVINO; f32, bf16, int8; sync, async."""
    keys = {
        "_b": df["backend"].map(BACKEND_ORDER).fillna(9),
        "_p": df["precision"].map(PRECISION_ORDER).fillna(9),
        "_m": df["mode"].map(MODE_ORDER).fillna(9),
    }
    extra = [c for c in ("threads", "nreq") if c in df.columns]
    return df.assign(**keys).sort_values([*keys, *extra]).drop(columns=list(keys))


def speed_table(inputs: ReportInputs) -> pd.DataFrame:
    """Tables 3 and 5: every batch-1 configuration with latency (s), FPS and speed-up.

    The speed-up is the FPS ratio over PyTorch f32 sync batch 1 at the same thread count, as in
    the paper (13.752 = 74.990 / 5.453).
    """
    rows = []
    for m in inputs.models.values():
        b1 = m.bench[m.bench["batch"] == 1]
        if b1.empty:
            continue
        multi_threads = b1["threads"].nunique() > 1
        for _, r in sort_configs(b1).iterrows():
            ok = r["status"] == "ok"
            ref = _reference_fps(m.bench, int(r["threads"]))
            rows.append(
                {
                    "model": m.name,
                    "framework_mode": config_label(
                        r["backend"],
                        r["precision"],
                        r["mode"],
                        r["nreq"],
                        r["threads"] if multi_threads else None,
                    ),
                    "latency_median_s": r["latency_median_ms"] / 1000 if ok else math.nan,
                    "latency_p90_s": r["latency_p90_ms"] / 1000 if ok else math.nan,
                    "total_time_s": r["total_time_s"] if ok else math.nan,
                    "fps": r["fps"] if ok else math.nan,
                    "speedup_vs_pytorch": r["fps"] / ref if ok and ref else math.nan,
                    "peak_rss_mb": r["peak_rss_mb"] if ok else math.nan,
                    "status": r["status"],
                    "backend": r["backend"],
                    "precision": r["precision"],
                    "mode": r["mode"],
                    "batch": int(r["batch"]),
                    "threads": int(r["threads"]),
                    "nreq": r["nreq"],
                    "samples": r["samples"],
                    "paper_role": m.role or "",
                }
            )
    cols = [
        "model",
        "framework_mode",
        "latency_median_s",
        "latency_p90_s",
        "total_time_s",
        "fps",
        "speedup_vs_pytorch",
        "peak_rss_mb",
        "status",
        "backend",
        "precision",
        "mode",
        "batch",
        "threads",
        "nreq",
        "samples",
        "paper_role",
    ]
    return pd.DataFrame(rows, columns=cols)


DASH = "–"
_BATCH_FRAMEWORKS = (
    ("pytorch", "pytorch", "sync"),
    ("ov_sync", "openvino", "sync"),
    ("ov_async", "openvino", "async"),
)


def batch_table(inputs: ReportInputs, precision: str = "f32") -> pd.DataFrame:
    """Tables 4 and 6: total time (s) and FPS per batch for PyTorch, OpenVINO sync and async.

    ``–`` marks a configuration that ran out of memory, timed out or failed (the status column
    says which); an empty cell one that was not run. ``precision`` applies to all frameworks
    (the paper's runs were FP32).
    """
    rows = []
    for m in inputs.models.values():
        threads = main_threads(m.bench)
        batches = sorted(int(b) for b in m.bench["batch"].dropna().unique())
        for batch in batches:
            row: dict[str, Any] = {"model": m.name, "batch": batch}
            statuses: dict[str, Any] = {}
            for key, backend, mode in _BATCH_FRAMEWORKS:
                r = select(m.bench, backend, precision, mode, batch, threads, ok_only=False)
                if r is None:
                    row[f"{key}_total_s"], row[f"{key}_fps"] = math.nan, math.nan
                    statuses[f"{key}_status"] = "not run"
                elif r["status"] == "ok":
                    row[f"{key}_total_s"], row[f"{key}_fps"] = (
                        float(r["total_time_s"]),
                        float(r["fps"]),
                    )
                    statuses[f"{key}_status"] = "ok"
                else:
                    row[f"{key}_total_s"], row[f"{key}_fps"] = DASH, DASH
                    statuses[f"{key}_status"] = r["status"]
                if key == "ov_async":
                    statuses["ov_async_nreq"] = (
                        None if r is None or pd.isna(r["nreq"]) else int(r["nreq"])
                    )
            row.update(statuses)
            row.update({"threads": threads, "precision": precision, "paper_role": m.role or ""})
            rows.append(row)
    cols = ["model", "batch"]
    cols += [f"{k}_{s}" for k, _, _ in _BATCH_FRAMEWORKS for s in ("total_s", "fps")]
    cols += [f"{k}_status" for k, _, _ in _BATCH_FRAMEWORKS]
    cols += ["ov_async_nreq", "threads", "precision", "paper_role"]
    return pd.DataFrame(rows, columns=cols)


def as_number(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return math.nan
    if isinstance(value, (list, tuple)):
        return float(len(value))
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def parity_routes(parity: dict[str, Any]) -> list[str]:
    """Export routes in ``parity.json``: the contract's four, then any other with a tolerance."""
    tol = parity.get("tolerance")
    extra = sorted(set(tol) - set(PARITY_KEYS)) if isinstance(tol, dict) else []
    return [*PARITY_KEYS, *extra]


def parity_tolerance(
    parity: dict[str, Any], route: str, default: float | None = None
) -> float | None:
    """The export stage's own tolerance for ``route`` (``parity.json`` ``tolerance``), else ``default``."""
    tol = parity.get("tolerance")
    value = as_number(tol.get(route)) if isinstance(tol, dict) else math.nan
    return default if math.isnan(value) else value


def deployment_table(inputs: ReportInputs, table1: pd.DataFrame) -> pd.DataFrame:
    """Parity (max abs output difference), INT8 accuracy and FakeQuantize counts, file sizes."""
    rows = []
    for m in inputs.models.values():
        q = m.quantization
        row: dict[str, Any] = {"model": m.name}
        for key in parity_routes(m.parity):
            row[f"parity_{key}"] = as_number(m.parity.get(key))
            row[f"parity_tolerance_{key}"] = parity_tolerance(m.parity, key)
        rmse = {b: accuracy_value(table1, m.name, b, "total") for b in BACKENDS}
        row.update(
            {
                "rmse_pytorch_fp32_mm": rmse["pytorch_fp32"],
                "rmse_openvino_fp32_mm": rmse["openvino_fp32"],
                "rmse_openvino_int8_mm": rmse["openvino_int8"],
                "int8_rmse_change_mm": (rmse["openvino_int8"] - rmse["openvino_fp32"])
                if rmse["openvino_int8"] is not None and rmse["openvino_fp32"] is not None
                else None,
                "nncf_metric_fp32": as_number(q.get("metric_fp32")),
                "nncf_metric_int8": as_number(q.get("metric_int8")),
                "nncf_drop": as_number(q.get("drop")),
                "nncf_max_drop": as_number(q.get("max_drop")),
                "fq_kept": as_number(q.get("fake_quantize_kept")),
                "fq_total": as_number(q.get("fake_quantize_total")),
                "reverted": as_number(q.get("reverted")),
                "quantize_s": as_number(q.get("seconds")),
                "onnx_mb": m.sizes_mb.get("onnx"),
                "ir_fp32_mb": m.sizes_mb.get("ir_fp32"),
                "ir_fp16_mb": m.sizes_mb.get("ir_fp16"),
                "ir_int8_mb": m.sizes_mb.get("ir_int8"),
                "params": m.n_params,
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)


def perf_counter_table(inputs: ReportInputs) -> pd.DataFrame:
    """Per-node-type OpenVINO time, with ``share_calc`` recomputed as time / total per precision."""
    frames = []
    for m in inputs.models.values():
        if m.perf.empty:
            continue
        df = m.perf.copy()
        df.insert(0, "model", m.name)
        total = df.groupby("precision")["time_ms"].transform("sum")
        df["share_calc"] = df["time_ms"] / total.where(total > 0)
        frames.append(df.sort_values(["precision", "time_ms"], ascending=[True, False]))
    cols = ["model", *PERF_COLUMNS, "share_calc"]
    if not frames:
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True)[cols]


def node_share(
    perf: pd.DataFrame, model: str, pattern: str, precision: str = "f32"
) -> float | None:
    """Share of OpenVINO time in node types matching ``pattern`` (case-insensitive regex)."""
    sel = perf[(perf["model"] == model) & (perf["precision"] == precision)]
    if sel.empty:
        return None
    mask = sel["node_type"].astype(str).str.contains(pattern, case=False, regex=True)
    return float(sel.loc[mask, "share_calc"].sum())


def format_deployment_cell(quantity: str, value: Any) -> str:
    """Format one deployment quantity (parity in scientific notation)."""
    if quantity.startswith("parity_") and not pd.isna(value):
        return f"{float(value):.1e}"
    return format_value(value, deployment_digits(quantity))


def deployment_digits(quantity: str) -> int:
    """Decimals for a deployment quantity: 3 for mm and NNCF metrics, 0 for counts, else 2."""
    if quantity.endswith("_mm") or quantity.startswith("nncf_"):
        return 3
    if quantity in ("fq_kept", "fq_total", "reverted", "params"):
        return 0
    if quantity == "quantize_s":
        return 1
    return 2
