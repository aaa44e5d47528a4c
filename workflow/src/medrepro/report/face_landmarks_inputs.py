"""Inputs of the ``face-report`` stage: every artefact read and validated before any write.

Layout (``docs/face_landmarks.md``), under ``results_dir`` (``results/face_landmarks``):

- ``evaluation/summary.csv``, ``ced.csv``, ``per_image.csv``, ``predictions.csv`` (PyTorch,
  every method x budget) and ``heatmaps.npz`` (Fig. 3);
- ``source/metrics.json`` (the source network's identity accuracy);
- ``preprocessed/splits.csv`` (counts) and ``dataset.npz`` (only ``landmark_names`` is read);
- ``deploy/best/selection.json``, ``deploy/best/export/parity.json``,
  ``deploy/best/int8/quantization.json``, ``deploy/benchmark.csv`` (the shared benchmark stage)
  and ``deploy/evaluation/summary.csv`` + ``ced.csv`` (runtimes torch, openvino_fp32,
  openvino_int8 of the selected model).

A missing or malformed artefact raises :class:`~medrepro.io.errors.InputError` naming it.
"""

from __future__ import annotations

import argparse
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medrepro.io.errors import InputError
from medrepro.report.inputs import numeric, parse_config, read_csv, read_json, require, scaled_block

__all__ = [
    "REFERENCE_RUNTIME",
    "RUNTIMES",
    "RUNTIME_BACKEND",
    "CTD_METHODS",
    "FINETUNE_METHODS",
    "SUMMARY_COLUMNS",
    "PER_IMAGE_COLUMNS",
    "CED_COLUMNS",
    "PREDICTION_COLUMNS",
    "SPLITS_COLUMNS",
    "BENCH_COLUMNS",
    "Figure3Data",
    "ReportInputs",
    "face_block",
    "load_summary",
    "load_per_image",
    "load_ced",
    "load_predictions",
    "load_splits",
    "load_landmark_names",
    "load_figure3",
    "load_benchmark",
    "benchmark_row",
    "load_inputs",
]

#: the paper's runtime, reference of every deployment comparison
REFERENCE_RUNTIME = "torch"
#: deployment runtimes of the selected model (``deploy/evaluation``)
RUNTIMES: tuple[str, ...] = ("torch", "openvino_fp32", "openvino_int8")
#: runtime -> (benchmark ``backend``, ``precision``)
RUNTIME_BACKEND: dict[str, tuple[str, str]] = {
    "torch": ("pytorch", "f32"),
    "onnxruntime": ("onnxruntime", "f32"),
    "openvino_fp32": ("openvino", "f32"),
    "openvino_int8": ("openvino", "int8"),
}
#: the cross-task distillation variants
CTD_METHODS: tuple[str, ...] = ("ctd_cd", "ctd_ed", "ctd_com")
#: the fine-tuning baselines without regularisation
FINETUNE_METHODS: tuple[str, ...] = ("fe", "ftp", "ft")

SUMMARY_COLUMNS: tuple[str, ...] = (
    "method", "budget", "runtime", "n_train", "n_test", "me_px", "sd_px", "median_px", "auc",
    "fr", "threshold_px", "nme",
)  # fmt: skip
PER_IMAGE_COLUMNS: tuple[str, ...] = ("method", "budget", "runtime", "case_id", "error_px")
CED_COLUMNS: tuple[str, ...] = ("method", "budget", "runtime", "threshold_px", "fraction")
PREDICTION_COLUMNS: tuple[str, ...] = (
    "method", "budget", "runtime", "case_id", "landmark", "x_true", "y_true", "x_pred",
    "y_pred", "error_px",
)  # fmt: skip
SPLITS_COLUMNS: tuple[str, ...] = ("case_id", "split", "budget_rank")
#: benchmark columns the report needs (the shared stage writes more)
BENCH_COLUMNS: tuple[str, ...] = (
    "model", "backend", "precision", "mode", "batch", "threads", "status", "latency_median_ms",
    "peak_rss_mb",
)  # fmt: skip
_BENCH_NUMERIC = ("batch", "threads", "nreq", "latency_median_ms", "latency_p90_ms",
                  "latency_mean_ms", "fps", "peak_rss_mb", "samples")  # fmt: skip


@dataclass
class Figure3Data:
    """Fig. 3 arrays from ``heatmaps.npz``.

    Attributes:
        case_id: ``(M,)`` test case ids.
        images: ``(M, S, S, 3)`` uint8.
        truth: ``(M, K, 2)`` (x, y) pixels.
        pred: method -> ``(M, K, 2)`` (x, y) pixels.
        heatmaps: method -> ``(M, K, h, w)`` float32 (stride ``S / w``).
    """

    case_id: list[str]
    images: np.ndarray
    truth: np.ndarray
    pred: dict[str, np.ndarray]
    heatmaps: dict[str, np.ndarray]


@dataclass
class ReportInputs:
    """Everything the report needs, validated.

    Attributes:
        results_dir: ``results/face_landmarks``.
        methods: methods reported, in order.
        budgets: label budgets (per cent), ascending.
        full_budget: the budget of Table 1 and Fig. 5.
        threshold_px: the failure threshold (pixels).
        summary: ``evaluation/summary.csv``, PyTorch rows (numbers coerced, budget int).
        per_image: ``evaluation/per_image.csv``, PyTorch rows.
        ced: ``evaluation/ced.csv``, PyTorch rows.
        predictions: ``evaluation/predictions.csv``, PyTorch rows at the full budget.
        landmark_names: ``(K,)`` names from ``dataset.npz``.
        splits: ``preprocessed/splits.csv``.
        source_metrics: ``source/metrics.json``.
        selection: ``deploy/best/selection.json``.
        parity: ``deploy/best/export/parity.json``.
        quantization: ``deploy/best/int8/quantization.json``.
        benchmark: ``deploy/benchmark.csv`` (numbers coerced).
        deploy_summary: ``deploy/evaluation/summary.csv`` (one row per runtime).
        deploy_ced: ``deploy/evaluation/ced.csv``.
        figure3: the Fig. 3 arrays.
        config: the configuration given (provenance).
        block: the ``face_landmarks`` block at the run's scale.
        seed: the run's seed.
        paths: small files read (checksummed in the provenance).
        large_paths: containers read partially (sizes only).
        options: claim tolerances and bootstrap settings.
    """

    results_dir: Path
    methods: list[str]
    budgets: list[int]
    full_budget: int
    threshold_px: float
    summary: pd.DataFrame
    per_image: pd.DataFrame
    ced: pd.DataFrame
    predictions: pd.DataFrame
    landmark_names: list[str]
    splits: pd.DataFrame
    source_metrics: dict[str, Any]
    selection: dict[str, Any]
    parity: dict[str, Any]
    quantization: dict[str, Any]
    benchmark: pd.DataFrame
    deploy_summary: pd.DataFrame
    deploy_ced: pd.DataFrame
    figure3: Figure3Data
    config: dict[str, Any]
    block: dict[str, Any]
    seed: int | None
    paths: list[Path] = field(default_factory=list)
    large_paths: list[Path] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def scale(self) -> str | None:
        """The pipeline scale (``smoke``, ``quick``, ``paper``) or None if unknown."""
        s = self.block.get("scale")
        return str(s) if s else None

    @property
    def smallest_budget(self) -> int:
        """The few-labels budget (per cent)."""
        return min(self.budgets)

    @property
    def n_train(self) -> int:
        """Training cases of the split."""
        return int((self.splits["split"] == "train").sum())

    @property
    def n_test(self) -> int:
        """Test cases of the split."""
        return int((self.splits["split"] == "test").sum())

    def evaluation(self, name: str) -> dict[str, Any]:
        """A setting of the block's ``evaluation`` sub-block (None if absent)."""
        ev = self.block.get("evaluation")
        return ev.get(name) if isinstance(ev, dict) else None


def face_block(config: dict[str, Any]) -> dict[str, Any]:
    """The ``face_landmarks`` block with the settings of its scale merged in (one level deep).

    ``config`` may be the whole configuration (with ``face_landmarks`` and ``scale``), the block
    with its ``scales``, or the block already at its scale. The result has a ``scale`` key.
    """
    return scaled_block(config, "face_landmarks")


def _text(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    for c in columns:
        df[c] = df[c].astype(str).str.strip()
    return df


def _budget_ints(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    b = pd.to_numeric(df["budget"], errors="coerce")
    if b.isna().any() or (b != b.round()).any():
        raise InputError(path, "budget must be an integer per cent on every row")
    df["budget"] = b.astype(int)
    return df


def _runtime(df: pd.DataFrame, path: Path, runtime: str) -> pd.DataFrame:
    sel = df[df["runtime"] == runtime].reset_index(drop=True)
    if sel.empty:
        raise InputError(path, f"no rows of runtime {runtime!r}")
    return sel


def _require_cells(
    df: pd.DataFrame, path: Path, methods: Sequence[str], budgets: Sequence[int]
) -> None:
    have = set(zip(df["method"], df["budget"], strict=True))
    missing = [f"{m}/{b}" for m in methods for b in budgets if (m, b) not in have]
    if missing:
        raise InputError(path, f"no rows for method/budget {', '.join(missing)}")


def load_summary(
    path: Path,
    methods: Sequence[str],
    budgets: Sequence[int],
    runtime: str = REFERENCE_RUNTIME,
    threshold_px: float | None = None,
) -> pd.DataFrame:
    """Read an evaluation ``summary.csv``: one row per method x budget of ``runtime``.

    Checks: every (method, budget) present once; ``me_px`` finite and >= 0; ``auc`` and ``fr``
    in [0, 1]; ``threshold_px`` equal to ``threshold_px`` when given.
    """
    df = read_csv(path, SUMMARY_COLUMNS, "evaluation summary")
    df = _budget_ints(_text(df, ("method", "runtime")), path)
    df = _runtime(numeric(df, SUMMARY_COLUMNS[3:]), path, runtime)
    _require_cells(df, path, methods, budgets)
    df = df[df["method"].isin(methods) & df["budget"].isin(budgets)].reset_index(drop=True)
    if df.duplicated(["method", "budget"]).any():
        raise InputError(path, "more than one row for a method/budget")
    me = df["me_px"].to_numpy(dtype=float)
    if not (np.isfinite(me) & (me >= 0)).all():
        raise InputError(path, "me_px must be finite and >= 0 on every row")
    for c in ("auc", "fr"):
        v = df[c].to_numpy(dtype=float)
        if not (np.isfinite(v) & (v >= -1e-9) & (v <= 1 + 1e-9)).all():
            raise InputError(path, f"{c} must be in [0, 1] on every row")
    if threshold_px is not None:
        t = df["threshold_px"].to_numpy(dtype=float)
        if not np.allclose(t, threshold_px, rtol=0, atol=1e-6):
            raise InputError(
                path, f"threshold_px {sorted(set(t.tolist()))} differs from --threshold-px "
                f"{threshold_px:g}"
            )  # fmt: skip
    return df


def load_per_image(
    path: Path, methods: Sequence[str], budgets: Sequence[int], runtime: str = REFERENCE_RUNTIME
) -> pd.DataFrame:
    """Read ``per_image.csv`` (``error_px`` finite, >= 0; every method x budget present)."""
    df = read_csv(path, PER_IMAGE_COLUMNS, "per-image errors")
    df = _budget_ints(_text(df, ("method", "runtime", "case_id")), path)
    df = _runtime(numeric(df, ("error_px", "nme")), path, runtime)
    _require_cells(df, path, methods, budgets)
    df = df[df["method"].isin(methods) & df["budget"].isin(budgets)].reset_index(drop=True)
    e = df["error_px"].to_numpy(dtype=float)
    if not (np.isfinite(e) & (e >= 0)).all():
        raise InputError(path, "error_px must be finite and >= 0 on every row")
    if df.duplicated(["method", "budget", "case_id"]).any():
        raise InputError(path, "more than one row for a method/budget/case_id")
    return df


def load_ced(
    path: Path, methods: Sequence[str], budgets: Sequence[int], runtime: str = REFERENCE_RUNTIME
) -> pd.DataFrame:
    """Read ``ced.csv`` (fraction in [0, 1], thresholds >= 0; the given methods x budgets)."""
    df = read_csv(path, CED_COLUMNS, "CED curves")
    df = _budget_ints(_text(df, ("method", "runtime")), path)
    df = _runtime(numeric(df, ("threshold_px", "fraction")), path, runtime)
    _require_cells(df, path, methods, budgets)
    df = df[df["method"].isin(methods) & df["budget"].isin(budgets)].reset_index(drop=True)
    f, t = df["fraction"].to_numpy(dtype=float), df["threshold_px"].to_numpy(dtype=float)
    if not (np.isfinite(f) & (f >= 0) & (f <= 1) & np.isfinite(t) & (t >= 0)).all():
        raise InputError(path, "fraction must be in [0, 1] and threshold_px >= 0 on every row")
    return df


def load_predictions(
    path: Path, methods: Sequence[str], budget: int, names: Sequence[str]
) -> pd.DataFrame:
    """Read ``predictions.csv`` at ``budget`` (PyTorch); ``landmark`` indices become names."""
    df = read_csv(path, PREDICTION_COLUMNS, "per-landmark predictions")
    df = _budget_ints(_text(df, ("method", "runtime", "case_id", "landmark")), path)
    df = _runtime(df, path, REFERENCE_RUNTIME)
    _require_cells(df, path, methods, [budget])
    df = df[df["method"].isin(methods) & (df["budget"] == budget)].reset_index(drop=True)
    df = numeric(df, PREDICTION_COLUMNS[5:])
    if not np.isfinite(df["error_px"].to_numpy(dtype=float)).all():
        raise InputError(path, "error_px must be finite on every row")
    lm = df["landmark"]
    if lm.str.fullmatch(r"\d+").all():
        idx = lm.astype(int)
        if (idx >= len(names)).any():
            raise InputError(path, f"landmark index beyond the {len(names)} landmarks")
        df["landmark"] = [names[i] for i in idx]
    unknown = sorted(set(df["landmark"]) - set(names))
    if unknown:
        raise InputError(path, f"unknown landmark(s) {unknown[:5]}")
    return df


def load_splits(path: Path) -> pd.DataFrame:
    """Read ``splits.csv`` (split train|test, at least one of each)."""
    df = _text(read_csv(path, SPLITS_COLUMNS, "train/test split"), ("case_id", "split"))
    bad = sorted(set(df["split"]) - {"train", "test"})
    if bad:
        raise InputError(path, f"unknown split(s) {bad}")
    if not {"train", "test"} <= set(df["split"]):
        raise InputError(path, "needs train and test rows")
    return df


def _npz(path: Path, what: str) -> Any:
    require(path, what)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise InputError(path, f"unreadable npz ({err})") from err


def load_landmark_names(path: Path) -> list[str]:
    """``landmark_names`` of ``dataset.npz`` (the images are not loaded)."""
    with _npz(path, "preprocessed dataset") as data:
        if "landmark_names" not in data.files:
            raise InputError(path, "no 'landmark_names' array")
        names = [str(n) for n in np.asarray(data["landmark_names"]).ravel()]
    if not names:
        raise InputError(path, "'landmark_names' is empty")
    return names


def load_figure3(path: Path, methods: Sequence[str], n_landmarks: int) -> Figure3Data:
    """Read ``heatmaps.npz``: images, truth and every method's heatmaps and predictions."""
    with _npz(path, "Fig. 3 heatmaps") as data:
        keys = set(data.files)
        need = ["case_id", "images", "truth"]
        need += [f"{m}/{k}" for m in methods for k in ("heatmaps", "pred")]
        missing = [k for k in need if k not in keys]
        if missing:
            raise InputError(path, f"missing arrays: {', '.join(missing)}")
        arrays = {k: np.asarray(data[k]) for k in need}
    images, truth = arrays["images"], arrays["truth"]
    m = len(arrays["case_id"])
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] != m or images.shape[3] != 3:
        raise InputError(
            path, f"images must be uint8 (M, S, S, 3), got {images.dtype} {images.shape}"
        )
    if truth.shape != (m, n_landmarks, 2):
        raise InputError(path, f"truth must be ({m}, {n_landmarks}, 2), got {truth.shape}")
    pred, hms = {}, {}
    for meth in methods:
        p, h = arrays[f"{meth}/pred"], arrays[f"{meth}/heatmaps"]
        if p.shape != truth.shape:
            raise InputError(path, f"{meth}/pred must be {truth.shape}, got {p.shape}")
        if h.ndim != 4 or h.shape[:2] != (m, n_landmarks):
            raise InputError(
                path, f"{meth}/heatmaps must be ({m}, {n_landmarks}, h, w), got {h.shape}"
            )
        pred[meth], hms[meth] = p.astype(np.float64), h.astype(np.float32)
    return Figure3Data(
        [str(c) for c in arrays["case_id"]], images, truth.astype(np.float64), pred, hms
    )


def load_benchmark(path: Path) -> pd.DataFrame:
    """Read the shared benchmark table (numbers coerced; text columns stripped, lower case)."""
    df = read_csv(path, BENCH_COLUMNS, "benchmark results")
    df = numeric(df, _BENCH_NUMERIC)
    for c in ("backend", "precision", "mode", "status"):
        df[c] = df[c].astype(str).str.strip().str.lower()
    return df


def benchmark_row(bench: pd.DataFrame, runtime: str) -> dict[str, float] | None:
    """Batch-1 sync numbers of ``runtime`` (median over repeated rows), or None if not run ok.

    The thread count is the one benchmarked most often among the batch-1 sync rows (ties: the
    largest), so every runtime is compared at the same threads.
    """
    backend, precision = RUNTIME_BACKEND[runtime]
    ok = bench[(bench["status"] == "ok") & (bench["mode"] == "sync") & (bench["batch"] == 1)]
    if ok.empty:
        return None
    counts = ok["threads"].value_counts()
    threads = max(t for t, n in counts.items() if n == counts.max())
    sel = ok[
        (ok["backend"] == backend) & (ok["precision"] == precision) & (ok["threads"] == threads)
    ]
    if sel.empty:
        return None
    out = {"threads": float(threads)}
    for c in ("latency_median_ms", "latency_p90_ms", "fps", "peak_rss_mb"):
        out[c] = float(sel[c].median()) if c in sel.columns else math.nan
    return out


def _load_deploy_summary(path: Path) -> pd.DataFrame:
    df = read_csv(path, SUMMARY_COLUMNS, "deployment evaluation summary")
    df = _budget_ints(_text(df, ("method", "runtime")), path)
    df = numeric(df, SUMMARY_COLUMNS[3:])
    missing = [r for r in RUNTIMES if r not in set(df["runtime"])]
    if missing:
        raise InputError(path, f"no rows of runtime(s) {', '.join(missing)}")
    if df.duplicated("runtime").any():
        raise InputError(path, "more than one row per runtime")
    if not np.isfinite(df["me_px"].to_numpy(dtype=float)).all():
        raise InputError(path, "me_px must be finite on every row")
    return df.set_index("runtime").loc[list(RUNTIMES)].reset_index()


def _unique(values: Sequence[Any], option: str) -> list[Any]:
    out = list(dict.fromkeys(values))
    if not out:
        raise InputError(Path(option), "at least one value is required")
    return out


def load_inputs(args: argparse.Namespace) -> ReportInputs:
    """Read and validate every input named on the command line.

    Args:
        args: the parsed ``face-report`` arguments (see
            :func:`medrepro.report.face_landmarks.build_parser`).

    Raises:
        InputError: naming the first missing or malformed artefact (or option).
    """
    rd = Path(args.results_dir)
    methods = _unique([str(m) for m in args.methods], "--methods")
    budgets = sorted(_unique([int(b) for b in args.budgets], "--budgets"))
    full = int(args.full_budget)
    if full not in budgets:
        raise InputError(Path("--full-budget"), f"{full} is not one of --budgets {budgets}")
    threshold = float(args.threshold_px)
    if not threshold > 0:
        raise InputError(Path("--threshold-px"), "must be > 0 pixels")
    config = parse_config(args.config_json)
    block = face_block(config)
    ev = rd / "evaluation"
    p = {
        "summary": ev / "summary.csv",
        "ced": ev / "ced.csv",
        "per_image": ev / "per_image.csv",
        "predictions": ev / "predictions.csv",
        "heatmaps": ev / "heatmaps.npz",
        "metrics": rd / "source" / "metrics.json",
        "splits": rd / "preprocessed" / "splits.csv",
        "dataset": rd / "preprocessed" / "dataset.npz",
        "selection": rd / "deploy" / "best" / "selection.json",
        "parity": rd / "deploy" / "best" / "export" / "parity.json",
        "quantization": rd / "deploy" / "best" / "int8" / "quantization.json",
        "benchmark": rd / "deploy" / "benchmark.csv",
        "deploy_summary": rd / "deploy" / "evaluation" / "summary.csv",
        "deploy_ced": rd / "deploy" / "evaluation" / "ced.csv",
    }
    summary = load_summary(p["summary"], methods, budgets, threshold_px=threshold)
    per_image = load_per_image(p["per_image"], methods, budgets)
    ced = load_ced(p["ced"], methods, [full])
    names = load_landmark_names(p["dataset"])
    predictions = load_predictions(p["predictions"], methods, full, names)
    figure3 = load_figure3(p["heatmaps"], methods, len(names))
    splits = load_splits(p["splits"])
    metrics = read_json(p["metrics"], "source network metrics")
    selection = read_json(p["selection"], "deployed model selection")
    for key in ("method", "budget"):
        if key not in selection:
            raise InputError(p["selection"], f"missing key {key!r}")
    parity = read_json(p["parity"], "OpenVINO export parity")
    quant = read_json(p["quantization"], "INT8 quantization report")
    bench = load_benchmark(p["benchmark"])
    deploy = _load_deploy_summary(p["deploy_summary"])
    dced = read_csv(p["deploy_ced"], CED_COLUMNS, "deployment CED curves")
    dced = numeric(_text(dced, ("method", "runtime")), ("threshold_px", "fraction"))
    int8_tol = args.int8_tolerance_px
    if int8_tol is None:
        q = block.get("quantization")
        int8_tol = q.get("max_drop") if isinstance(q, dict) else None
    seed = args.seed if args.seed is not None else config.get("seed", block.get("seed"))
    options = {
        "similar_fraction": float(args.similar_fraction),
        "fp32_tolerance_px": float(args.fp32_tolerance_px),
        "int8_tolerance_px": float(int8_tol if int8_tol is not None else 0.5),
        "n_bootstrap": int(args.n_bootstrap),
        "bootstrap_seed": int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else 0,
    }
    large = [p["dataset"]]
    return ReportInputs(
        results_dir=rd,
        methods=methods,
        budgets=budgets,
        full_budget=full,
        threshold_px=threshold,
        summary=summary,
        per_image=per_image,
        ced=ced,
        predictions=predictions,
        landmark_names=names,
        splits=splits,
        source_metrics=metrics,
        selection=selection,
        parity=parity,
        quantization=quant,
        benchmark=bench,
        deploy_summary=deploy,
        deploy_ced=dced,
        figure3=figure3,
        config=config,
        block=block,
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        paths=[v for k, v in p.items() if k != "dataset"],
        large_paths=large,
        options=options,
    )
