"""Tables of the ``face-report`` stage, computed from validated inputs (nothing written here).

- ``table1_methods``: method x (ME, SD, median, AUC, FR) at the full budget (PyTorch) beside the
  published values (``None``: lost in the text extraction);
- ``budget_sweep``: method x budget x (ME, SD, SE, AUC, FR);
- ``deployment``: runtime x (batch-1 sync latency, peak RSS, ME, AUC, FR) of the selected model;
- ``settings``: the run's settings beside the paper's (report.md only);
- ``landmark_errors``: mean error per landmark and method at the full budget (report.md only);
- :func:`paired_bootstrap`: the 95 % interval of a paired mean difference over test images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from medrepro.report.face_landmarks_inputs import (
    REFERENCE_RUNTIME,
    RUNTIME_BACKEND,
    RUNTIMES,
    ReportInputs,
    benchmark_row,
)
from medrepro.report.published import face_landmarks as pub

__all__ = [
    "RUNTIME_NAMES",
    "method_name",
    "metric",
    "table1_methods",
    "budget_sweep",
    "deployment_table",
    "settings_table",
    "landmark_errors",
    "paired_errors",
    "paired_bootstrap",
]

#: display names of the runtimes
RUNTIME_NAMES: dict[str, str] = {
    "torch": "PyTorch FP32",
    "onnxruntime": "ONNX Runtime FP32",
    "openvino_fp32": "OpenVINO FP32",
    "openvino_int8": "OpenVINO INT8",
}


def method_name(method: str) -> str:
    """The paper's name of a method (``ctd_ed`` -> ``CTD-ED``)."""
    return pub.METHOD_NAMES.get(method, method)


def metric(summary: pd.DataFrame, method: str, budget: int, column: str) -> float | None:
    """One number of the PyTorch summary (None if the method/budget was not run)."""
    sel = summary[(summary["method"] == method) & (summary["budget"] == budget)]
    if sel.empty:
        return None
    v = float(sel[column].iloc[0])
    return None if np.isnan(v) else v


def _rows(summary: pd.DataFrame, methods: Sequence[str], budgets: Sequence[int]) -> pd.DataFrame:
    order = {m: i for i, m in enumerate(methods)}
    df = summary[summary["method"].isin(methods) & summary["budget"].isin(budgets)].copy()
    df["_o"] = df["method"].map(order)
    return df.sort_values(["_o", "budget"]).drop(columns="_o").reset_index(drop=True)


def table1_methods(inputs: ReportInputs) -> pd.DataFrame:
    """Table 1: one row per method at the full budget, ours and published (NaN: not in the text)."""
    df = _rows(inputs.summary, inputs.methods, [inputs.full_budget])
    out = pd.DataFrame(
        {
            "method": df["method"],
            "method_name": [method_name(m) for m in df["method"]],
            "budget": df["budget"],
            "n_train": df["n_train"],
            "n_test": df["n_test"],
            "me_px": df["me_px"],
            "sd_px": df["sd_px"],
            "median_px": df["median_px"],
            "auc": df["auc"],
            "fr": df["fr"],
            "threshold_px": df["threshold_px"],
        }
    )
    for key in ("me_px", "auc", "fr"):
        out[f"published_{key}"] = [
            pub.TABLE1.get(m, {}).get(key) for m in out["method"]
        ]  # None -> NaN in the CSV
        out[f"published_{key}"] = pd.to_numeric(out[f"published_{key}"], errors="coerce")
    return out


def budget_sweep(inputs: ReportInputs) -> pd.DataFrame:
    """ME (SD, standard error SD / sqrt(n_test)), median, AUC and FR per method and budget."""
    df = _rows(inputs.summary, inputs.methods, inputs.budgets)
    n = df["n_test"].astype(float)
    return pd.DataFrame(
        {
            "method": df["method"],
            "method_name": [method_name(m) for m in df["method"]],
            "budget": df["budget"],
            "n_train": df["n_train"],
            "n_test": df["n_test"],
            "me_px": df["me_px"],
            "sd_px": df["sd_px"],
            "se_px": df["sd_px"] / np.sqrt(n.where(n > 0)),
            "median_px": df["median_px"],
            "auc": df["auc"],
            "fr": df["fr"],
        }
    )


def deployment_table(inputs: ReportInputs) -> pd.DataFrame:
    """Per runtime of the selected model: latency and memory (batch 1, sync) and quality.

    ``delta_me_px`` is the runtime's ME minus PyTorch's on the same test images. An ONNX
    Runtime row is added when the benchmark has one (no quality: it is not evaluated).
    """
    dep = inputs.deploy_summary.set_index("runtime")
    ref = float(dep.loc[REFERENCE_RUNTIME, "me_px"])
    rows: list[dict[str, Any]] = []
    runtimes = list(RUNTIMES)
    if benchmark_row(inputs.benchmark, "onnxruntime") is not None:
        runtimes.insert(1, "onnxruntime")
    for r in runtimes:
        bench = benchmark_row(inputs.benchmark, r) or {}
        q = dep.loc[r] if r in dep.index else None
        backend, precision = RUNTIME_BACKEND[r]
        rows.append(
            {
                "runtime": r,
                "runtime_name": RUNTIME_NAMES[r],
                "method": inputs.selection.get("method"),
                "budget": inputs.selection.get("budget"),
                "backend": backend,
                "precision": precision,
                "threads": bench.get("threads", np.nan),
                "latency_median_ms": bench.get("latency_median_ms", np.nan),
                "latency_p90_ms": bench.get("latency_p90_ms", np.nan),
                "fps": bench.get("fps", np.nan),
                "peak_rss_mb": bench.get("peak_rss_mb", np.nan),
                "n_test": np.nan if q is None else q["n_test"],
                "me_px": np.nan if q is None else q["me_px"],
                "sd_px": np.nan if q is None else q["sd_px"],
                "auc": np.nan if q is None else q["auc"],
                "fr": np.nan if q is None else q["fr"],
                "delta_me_px": np.nan if q is None else float(q["me_px"]) - ref,
            }
        )
    df = pd.DataFrame(rows)
    df["threads"] = df["threads"].astype("Int64")
    df["n_test"] = pd.to_numeric(df["n_test"]).astype("Int64")
    return df


def _setting(block: dict[str, Any], *keys: str) -> Any:
    cur: Any = block
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            return None
        cur = cur[k]
    return cur


def _paper(key: str) -> str:
    v = pub.SETTINGS.get(key)
    return pub.NOT_IN_TEXT if v is None else str(v)


def _source_text(inputs: ReportInputs) -> str:
    kwargs = _setting(inputs.block, "source", "model_kwargs")
    arch = f"ResNet {kwargs}" if isinstance(kwargs, dict) else "ResNet"
    m = inputs.source_metrics
    return (
        f"{arch}, identity val accuracy {m.get('val_accuracy', '–')} on "
        f"{m.get('n_identities', '–')} identities"
    )


def settings_table(inputs: ReportInputs) -> pd.DataFrame:
    """The run's settings (from the configuration and the artefacts) beside the paper's."""
    b = inputs.block
    n_all = len(inputs.splits)
    rows = [
        ("images (train + test)", f"{n_all} ({inputs.n_train} + {inputs.n_test})",
         f"{pub.DATASET['n_images']} ({pub.DATASET['split']})"),
        ("landmarks K", f"{len(inputs.landmark_names)} ({', '.join(inputs.landmark_names)})",
         str(pub.DATASET["landmarks"])),
        ("label budgets (% of train)", ", ".join(map(str, inputs.budgets)), "100 (full set)"),
        ("image size (px)", _setting(b, "image_size"), _paper("image_size")),
        ("heatmap sigma (heatmap px)", _setting(b, "sigma"), _paper("sigma")),
        ("lambda_cd / lambda_ed", f"{_setting(b, 'regularisation', 'lambda_cd')} / "
         f"{_setting(b, 'regularisation', 'lambda_ed')}", _paper("lambda")),
        ("temperature T", _setting(b, "regularisation", "temperature"), _paper("temperature")),
        ("optimiser, schedule", "Adam, lr (1 - step/steps)^0.9",
         f"{_paper('optimizer')}, {_paper('lr_schedule')}"),
        ("steps (every budget)", _setting(b, "target", "steps"), _paper("epochs") + " (epochs)"),
        ("batch size", _setting(b, "target", "batch_size"), _paper("batch_size")),
        ("learning rate", _setting(b, "target", "lr"), _paper("lr")),
        ("decoder channels", _setting(b, "target", "deconv_channels"), _paper("deconv_channels")),
        ("flip probability", _setting(b, "augmentation", "flip_prob"), _paper("flip_prob")),
        ("scale range (+-)", _setting(b, "augmentation", "scale_range"), _paper("scaling")),
        ("FR threshold (px)", inputs.threshold_px, _paper("threshold_px")),
        ("CED range (px)", inputs.evaluation("ced_max_px"), pub.NOT_IN_TEXT),
        ("source network", _source_text(inputs), _paper("source_network")),
    ]  # fmt: skip
    return pd.DataFrame(
        [{"setting": s, "ours": "–" if o is None else str(o), "paper": p} for s, o, p in rows]
    )


def landmark_errors(inputs: ReportInputs) -> pd.DataFrame:
    """Mean Euclidean error (pixels) per landmark (rows, in dataset order) and method (columns)."""
    df = inputs.predictions
    piv = df.pivot_table(index="landmark", columns="method", values="error_px", aggfunc="mean")
    piv = piv.reindex(index=inputs.landmark_names, columns=inputs.methods)
    piv.columns = [method_name(m) for m in piv.columns]
    return piv.reset_index()


def paired_errors(
    per_image: pd.DataFrame, method_a: str, method_b: str, budget: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image errors (pixels) of two methods on their common test images, aligned by case."""
    sel = per_image[per_image["budget"] == budget]
    a = sel[sel["method"] == method_a].set_index("case_id")["error_px"]
    b = sel[sel["method"] == method_b].set_index("case_id")["error_px"]
    common = a.index.intersection(b.index).sort_values()
    return a.loc[common].to_numpy(float), b.loc[common].to_numpy(float)


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean of ``a - b`` and its percentile bootstrap interval over paired items.

    Args:
        a: ``(N,)`` per-image errors of one method (pixels).
        b: ``(N,)`` the other method's errors on the same images.
        n_boot: bootstrap resamples of the N images (with replacement).
        seed: random seed.
        level: interval coverage.

    Returns:
        ``(mean difference, lower, upper)`` in pixels; NaNs when there are no pairs.
    """
    d = np.asarray(a, float) - np.asarray(b, float)
    if d.size == 0:
        return (np.nan, np.nan, np.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(int(n_boot), d.size))
    means = d[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(d.mean()), float(lo), float(hi)
