"""Tables of the cerebellum YOLO report, as pure functions of validated inputs.

Table 1 (best YOLOv1 checkpoint per grid size S), Table 2 (tiny YOLO momentum x learning-rate
grid), transfer learning at S = 7 (stand-in pre-training vs scratch), deployment (PyTorch /
OpenVINO FP32 / INT8: AP, F1, latency) and annotation box statistics. AP is the paper's: mean IoU
of the top box over the annotated test images (a fraction in [0, 1]); iterations are batches.
Published values sit beside ours in ``published_*`` columns.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from medrepro.report.brain_extraction_tables import BENCH_OF_CONFIG, speed_rows
from medrepro.report.cerebellum_yolo_inputs import (
    REFERENCE,
    TINY_ARCH,
    YOLO_ARCH,
    ReportInputs,
    RunSpec,
)
from medrepro.report.published import cerebellum_yolo as pub

__all__ = [
    "RUN_COLUMNS",
    "spearman",
    "published_cell",
    "run_summary",
    "run_summaries",
    "table1_yolo_best",
    "table2_tiny_grid",
    "transfer_table",
    "deployment_table",
    "annotation_table",
    "speed_rows",
]

#: columns of :func:`run_summary`
RUN_COLUMNS: tuple[str, ...] = (
    "run", "arch", "S", "pretrained", "lr", "momentum", "n_checkpoints", "best_ap",
    "best_iteration", "f1_at_best", "tp_at_best", "fp_at_best", "fn_at_best", "best_f1",
    "best_f1_iteration", "first_ap", "final_ap", "final_f1", "final_iteration", "mean_ap",
    "ap_std", "f1_std", "fp_mean", "fp_std", "fp_first", "fp_last", "fp_rho", "fp_decreasing",
    "iterations_to_near_peak",
)  # fmt: skip


def spearman(x: Any, y: Any) -> float:
    """Spearman rank correlation of two sequences; NaN with < 2 points or a constant one."""
    a, b = pd.Series(np.asarray(x, dtype=float)), pd.Series(np.asarray(y, dtype=float))
    if len(a) < 2 or a.nunique() < 2 or b.nunique() < 2:
        return math.nan
    return float(a.rank().corr(b.rank()))


def published_cell(momentum: float, lr: float) -> tuple[float, float] | None:
    """The Table 2 key matching ``(momentum, lr)`` (relative tolerance 1e-6), or ``None``."""
    for m, r in pub.TABLE2:
        if math.isclose(m, momentum, rel_tol=1e-6) and math.isclose(r, lr, rel_tol=1e-6):
            return (m, r)
    return None


def _std(x: pd.Series) -> float:
    return float(x.std(ddof=1)) if len(x) > 1 else math.nan


def run_summary(spec: RunSpec, ck: pd.DataFrame, near_peak: float, fp_rho: float) -> dict[str, Any]:
    """Per-run summary of the checkpoint curve.

    Args:
        spec: the run's settings.
        ck: its ``checkpoints.csv`` sorted by iteration.
        near_peak: ``iterations_to_near_peak`` is the first iteration whose AP reaches
            ``near_peak * best_ap`` (training needed to (nearly) peak).
        fp_rho: FP counts as decreasing when Spearman rho(iteration, FP) <= ``-fp_rho`` and the
            last checkpoint has fewer FP than the first.

    Returns:
        A dict with the keys of :data:`RUN_COLUMNS` (best AP: ties go to the earlier checkpoint).
    """
    best = ck.loc[ck["ap"].idxmax()]
    best_f1 = ck.loc[ck["f1"].idxmax()]
    first, last = ck.iloc[0], ck.iloc[-1]
    rho = spearman(ck["iteration"], ck["fp"])
    reached = ck[ck["ap"] >= near_peak * float(best["ap"]) - 1e-12]
    return {
        "run": spec.name,
        "arch": spec.arch,
        "S": spec.S,
        "pretrained": spec.pretrained,
        "lr": spec.lr,
        "momentum": spec.momentum,
        "n_checkpoints": len(ck),
        "best_ap": float(best["ap"]),
        "best_iteration": int(best["iteration"]),
        "f1_at_best": float(best["f1"]),
        "tp_at_best": int(best["tp"]),
        "fp_at_best": int(best["fp"]),
        "fn_at_best": int(best["fn"]),
        "best_f1": float(best_f1["f1"]),
        "best_f1_iteration": int(best_f1["iteration"]),
        "first_ap": float(first["ap"]),
        "final_ap": float(last["ap"]),
        "final_f1": float(last["f1"]),
        "final_iteration": int(last["iteration"]),
        "mean_ap": float(ck["ap"].mean()),
        "ap_std": _std(ck["ap"]),
        "f1_std": _std(ck["f1"]),
        "fp_mean": float(ck["fp"].mean()),
        "fp_std": _std(ck["fp"]),
        "fp_first": int(first["fp"]),
        "fp_last": int(last["fp"]),
        "fp_rho": rho,
        "fp_decreasing": bool(
            not math.isnan(rho) and rho <= -fp_rho and float(last["fp"]) < float(first["fp"])
        ),
        "iterations_to_near_peak": int(reached["iteration"].iloc[0]),
    }


def run_summaries(inputs: ReportInputs) -> pd.DataFrame:
    """:func:`run_summary` of every run, in ``--runs`` order."""
    o = inputs.options
    rows = [
        run_summary(spec, inputs.checkpoints[name], o["near_peak"], o["fp_trend_rho"])
        for name, spec in inputs.runs.items()
    ]
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


_T1_KEEP = (
    "run", "best_ap", "best_iteration", "f1_at_best", "tp_at_best", "fp_at_best", "fn_at_best",
    "final_ap", "final_iteration", "iterations_to_near_peak", "n_checkpoints",
)  # fmt: skip


def table1_yolo_best(summary: pd.DataFrame) -> pd.DataFrame:
    """Table 1: best checkpoint of each pre-trained YOLOv1 run per S, published values beside.

    Every S of the paper gets a row (``status`` ``not run`` when no run has it).
    """
    runs = summary[(summary["arch"] == YOLO_ARCH) & summary["pretrained"].astype(bool)]
    grid = sorted(set(pub.TABLE1) | {int(s) for s in runs["S"]})
    rows = []
    for s in grid:
        sel = runs[runs["S"] == s]
        p = pub.TABLE1.get(s, {})
        base = {"S": s, "cells": s * s}
        if sel.empty:
            ours = {k: math.nan for k in _T1_KEEP} | {"run": "", "status": "not run"}
        else:
            ours = {k: sel.iloc[0][k] for k in _T1_KEEP} | {"status": "ok"}
        ap = float(ours["best_ap"]) if not sel.empty else math.nan
        pap = float(p.get("ap", math.nan))
        rows.append(
            base
            | ours
            | {
                "published_ap": pap,
                "published_iteration": p.get("iteration", math.nan),
                "ap_minus_published": ap - pap,
            }
        )
    cols = ["S", "cells", "status", *_T1_KEEP, "published_ap", "published_iteration"]
    return pd.DataFrame(rows, columns=[*cols, "ap_minus_published"])


_T2_KEEP = (
    "run", "S", "best_ap", "best_iteration", "f1_at_best", "best_f1", "best_f1_iteration",
    "final_ap", "ap_std", "f1_std", "fp_mean", "fp_std", "fp_first", "fp_last", "fp_rho",
    "fp_decreasing", "n_checkpoints",
)  # fmt: skip


def table2_tiny_grid(summary: pd.DataFrame) -> pd.DataFrame:
    """Table 2: best AP and F1 of each tiny YOLO run per momentum x lr, published beside.

    ``best_f1`` is the best F1 over the checkpoints (as Table 2 "best models"), ``f1_at_best``
    the F1 of the best-AP checkpoint. Published cells without a run get ``status`` ``not run``.
    """
    runs = summary[summary["arch"] == TINY_ARCH]
    rows = []
    matched: set[tuple[float, float]] = set()
    for _, r in runs.iterrows():
        key = published_cell(float(r["momentum"]), float(r["lr"]))
        if key is not None:
            matched.add(key)
        rows.append(_t2_row(float(r["momentum"]), float(r["lr"]), r, key))
    for key in pub.TABLE2:
        if key not in matched:
            rows.append(_t2_row(key[0], key[1], None, key))
    df = pd.DataFrame(rows)
    return df.sort_values(["lr", "momentum", "run"]).reset_index(drop=True)


def _t2_row(
    momentum: float, lr: float, r: pd.Series | None, key: tuple[float, float] | None
) -> dict[str, Any]:
    p = pub.TABLE2.get(key, {}) if key else {}
    ours = (
        {k: math.nan for k in _T2_KEEP} | {"run": "", "status": "not run"}
        if r is None
        else {k: r[k] for k in _T2_KEEP} | {"status": "ok"}
    )
    return (
        {"momentum": momentum, "lr": lr}
        | {"status": ours.pop("status")}
        | ours
        | {
            "published_ap": p.get("ap", math.nan),
            "published_f1": p.get("f1", math.nan),
            "published_fp_decreasing": pub.FP_DECREASING.get(key) if key else None,
        }
    )


def transfer_table(inputs: ReportInputs, summary: pd.DataFrame) -> pd.DataFrame:
    """Transfer learning: each S with a from-scratch YOLOv1 run, pre-trained vs scratch.

    The pre-training is the synthetic stand-in task of ``yolo-pretrain`` (not ImageNet); its
    iterations and final accuracy are given on the pre-trained rows.
    """
    cols = [
        "S", "run", "pretrained", "best_ap", "best_iteration", "f1_at_best", "first_ap",
        "final_ap", "mean_ap", "iterations_to_near_peak", "n_checkpoints",
    ]  # fmt: skip
    yolo = summary[summary["arch"] == YOLO_ARCH]
    scratch_s = sorted({int(s) for s in yolo.loc[~yolo["pretrained"].astype(bool), "S"]})
    hist = inputs.pretrain.get(YOLO_ARCH)
    rows = []
    for s in scratch_s:
        for _, r in yolo[yolo["S"] == s].sort_values("pretrained", ascending=False).iterrows():
            row = {c: r[c] for c in cols}
            pre = bool(r["pretrained"]) and hist is not None and not hist.empty
            row["pretrain_iterations"] = int(hist["iteration"].max()) if pre else math.nan
            row["pretrain_final_accuracy"] = float(hist["accuracy"].iloc[-1]) if pre else math.nan
            rows.append(row)
    return pd.DataFrame(rows, columns=[*cols, "pretrain_iterations", "pretrain_final_accuracy"])


def deployment_table(inputs: ReportInputs, speed: pd.DataFrame) -> pd.DataFrame:
    """PyTorch FP32 / OpenVINO FP32 / INT8 on the test images: AP, F1, counts, latency (ms).

    Latency: median of the batch-1 sync benchmark at the largest thread count;
    ``speedup_vs_pytorch`` = PyTorch f32 latency / the configuration's. ``ap_drop_vs_pytorch`` =
    PyTorch AP - the configuration's AP. ``parity_max_abs_diff``: raw-output difference against
    PyTorch from ``export/parity.json`` (OpenVINO FP32 only).
    """
    dep = inputs.deployment
    ref_ap = float(dep.loc[dep["config"] == REFERENCE, "ap"].iloc[0])
    rows = []
    for _, r in dep.iterrows():
        config = str(r["config"])
        backend, precision = BENCH_OF_CONFIG[config]
        s = speed[(speed["backend"] == backend) & (speed["precision"] == precision)]
        srow = s.iloc[0] if not s.empty else None
        rows.append(
            {
                "config": config,
                "ap": float(r["ap"]),
                "f1": float(r["f1"]),
                "tp": int(r["tp"]),
                "fp": int(r["fp"]),
                "fn": int(r["fn"]),
                "n_images": int(r["n_images"]),
                "ap_drop_vs_pytorch": ref_ap - float(r["ap"]),
                "bench_status": "not benchmarked" if srow is None else str(srow["status"]),
                "threads": math.nan if srow is None else srow["threads"],
                "latency_median_ms": math.nan if srow is None else srow["latency_median_ms"],
                "fps": math.nan if srow is None else srow["fps"],
                "peak_rss_mb": math.nan if srow is None else srow["peak_rss_mb"],
                "speedup_vs_pytorch": math.nan if srow is None else srow["speedup"],
                "parity_max_abs_diff": float(inputs.parity["openvino_fp32"])
                if config == "openvino_fp32"
                else math.nan,
            }
        )
    return pd.DataFrame(rows)


def annotation_table(boxes: pd.DataFrame) -> pd.DataFrame:
    """Box statistics per split and overall: empty masks, components, box size (fractions of W, H).

    Box sizes ``w``, ``h`` are fractions of the image width and height; ``area`` = w * h.
    """
    rows = []
    splits = [*sorted(set(boxes["split"])), "all"]
    for split in splits:
        sub = boxes if split == "all" else boxes[boxes["split"] == split]
        full = sub[~sub["empty"]]
        area = full["w"] * full["h"]
        rows.append(
            {
                "split": split,
                "n_images": len(sub),
                "n_volumes": sub["volume_id"].nunique(),
                "n_empty": int(sub["empty"].sum()),
                "n_one_component": int((full["n_components"] == 1).sum()),
                "n_multi_component": int((full["n_components"] > 1).sum()),
                "max_components": int(full["n_components"].max()) if len(full) else 0,
                "cx_mean": full["cx"].mean(),
                "cy_mean": full["cy"].mean(),
                "w_mean": full["w"].mean(),
                "w_min": full["w"].min(),
                "w_max": full["w"].max(),
                "h_mean": full["h"].mean(),
                "h_min": full["h"].min(),
                "h_max": full["h"].max(),
                "area_mean": area.mean(),
            }
        )
    return pd.DataFrame(rows)
