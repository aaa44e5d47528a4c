"""Inputs of the cephalometry report: read and validate every artefact before anything is written.

Formats are those of ``docs/architecture.md``; a missing or malformed artefact raises
:class:`~medrepro.io.errors.InputError` naming the file.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medrepro.benchmark.driver import COLUMNS as BENCHMARK_COLUMNS
from medrepro.io.errors import InputError
from medrepro.metrics.landmarks import radial_errors
from medrepro.report.inputs import numeric, parse_config, read_csv, read_json, require

__all__ = [
    "BACKENDS",
    "SDR_RADII",
    "ERROR_TOLERANCE_MM",
    "PREDICTION_COLUMNS",
    "HISTORY_COLUMNS",
    "BENCH_COLUMNS",
    "PERF_COLUMNS",
    "DATASET_KEYS",
    "PARITY_KEYS",
    "ModelArtefacts",
    "ReportInputs",
    "load_dataset",
    "load_splits",
    "load_predictions",
    "load_benchmark",
    "load_perf",
    "load_model",
    "load_inputs",
]

#: prediction backends, in display order
BACKENDS: tuple[str, ...] = ("pytorch_fp32", "openvino_fp32", "openvino_int8")
#: SDR radii in mm (Table 2)
SDR_RADII: tuple[float, ...] = (2.0, 3.0, 4.0)
#: tolerance (mm) between ``error_mm`` and the distance recomputed from the coordinates
ERROR_TOLERANCE_MM = 0.01

PREDICTION_COLUMNS = (
    "case_id",
    "patient_id",
    "backend",
    "landmark",
    "pred_x",
    "pred_y",
    "pred_z",
    "gt_x",
    "gt_y",
    "gt_z",
    "error_mm",
)
HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_metric", "seconds")
#: the benchmark driver's aggregated table (one source of truth for its layout)
BENCH_COLUMNS = tuple(BENCHMARK_COLUMNS)
BENCH_NUMERIC = tuple(
    c for c in BENCH_COLUMNS if c not in ("model", "backend", "precision", "mode", "status")
)
PERF_COLUMNS = ("precision", "node_type", "time_ms", "share")
DATASET_KEYS = ("images", "landmarks_mm", "origin", "spacing", "direction", "case_id", "labels")
PARITY_KEYS = ("onnxruntime", "openvino_fp32", "openvino_fp16", "openvino_from_onnx")


@dataclass
class ModelArtefacts:
    """Everything the report reads for one model.

    Attributes:
        name: model name (directory under ``models/``).
        role: the paper's role (``direct_regression``/``hourglass``) or ``None``.
        predictions: validated ``predictions.csv`` restricted to test cases, with ``error_calc``
            (mm, recomputed from the coordinates).
        history: ``history.csv``.
        parity: ``export/parity.json``.
        quantization: ``int8/quantization.json``.
        bench: ``benchmark/<model>.csv`` with numeric columns coerced.
        perf: ``benchmark/<model>_perf_counters.csv``.
        sizes_mb: size of exported files in MB (``None`` when absent).
        n_params: trainable parameter count from ``model.pt`` (``None`` if unavailable).
    """

    name: str
    role: str | None
    predictions: pd.DataFrame
    history: pd.DataFrame
    parity: dict[str, Any]
    quantization: dict[str, Any]
    bench: pd.DataFrame
    perf: pd.DataFrame
    sizes_mb: dict[str, float | None] = field(default_factory=dict)
    n_params: int | None = None


@dataclass
class ReportInputs:
    """All validated inputs of the report.

    Attributes:
        results_dir: the paper's results directory (outputs go here too).
        models: per model, in ``--models`` order.
        labels: landmark names in dataset order.
        dataset: the arrays of ``dataset.npz`` the report uses.
        splits: ``splits.csv``.
        sysinfo: ``benchmark/<first model>_sysinfo.json``.
        config: the run's configuration.
        seed: the run's seed.
        paths: every file read (for provenance).
        options: thresholds used by the claims.
    """

    results_dir: Path
    models: dict[str, ModelArtefacts]
    labels: list[str]
    dataset: dict[str, np.ndarray]
    splits: pd.DataFrame
    sysinfo: dict[str, Any]
    config: dict[str, Any]
    seed: int | None
    paths: list[Path]
    options: dict[str, Any]

    def role_model(self, role: str) -> ModelArtefacts | None:
        """The model playing a paper role, if it was run."""
        for m in self.models.values():
            if m.role == role:
                return m
        return None


def load_dataset(path: Path) -> dict[str, np.ndarray]:
    """Read the arrays of ``dataset.npz`` the report needs (validated)."""
    require(path, "preprocessed dataset")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in DATASET_KEYS if k not in npz.files]
            if missing:
                raise InputError(path, f"missing arrays: {', '.join(missing)}")
            data = {
                k: npz[k] for k in npz.files if k in (*DATASET_KEYS, "landmarks_vox", "patient_id")
            }
    except (OSError, ValueError) as err:
        raise InputError(path, f"not a readable .npz: {err}") from None
    data["case_id"] = data["case_id"].astype(str)
    data["labels"] = data["labels"].astype(str)
    n = len(data["case_id"])
    k = len(data["labels"])
    if data["images"].ndim != 4 or len(data["images"]) != n:
        raise InputError(
            path, f"images must be (N, X, Y, Z) with N={n}, got {data['images'].shape}"
        )
    if data["landmarks_mm"].shape != (n, k, 3):
        raise InputError(
            path, f"landmarks_mm must be ({n}, {k}, 3), got {data['landmarks_mm'].shape}"
        )
    for key, shape in (("origin", (n, 3)), ("spacing", (n, 3)), ("direction", (n, 3, 3))):
        if data[key].shape != shape:
            raise InputError(path, f"{key} must be {shape}, got {data[key].shape}")
    return data


def load_splits(path: Path) -> pd.DataFrame:
    """Read ``splits.csv`` (``case_id, patient_id, split``)."""
    df = read_csv(path, ("case_id", "patient_id", "split"), "patient-level split")
    df["case_id"] = df["case_id"].astype(str)
    bad = sorted(set(df["split"]) - {"train", "val", "test"})
    if bad:
        raise InputError(path, f"unknown split values: {', '.join(map(str, bad))}")
    if df["case_id"].duplicated().any():
        raise InputError(path, "duplicate case_id")
    return df


def load_predictions(
    path: Path, labels: Sequence[str], splits: pd.DataFrame, dataset: dict[str, np.ndarray]
) -> pd.DataFrame:
    """Read and validate ``predictions.csv``; keep the test-split cases.

    Checks the columns, backends, landmarks (must be dataset labels), duplicates, that
    ``error_mm`` agrees with the coordinates within :data:`ERROR_TOLERANCE_MM` and that the
    ground truth agrees with the dataset's ``landmarks_mm``.

    Returns:
        The test-split rows with an extra ``error_calc`` column (mm).
    """
    df = read_csv(path, PREDICTION_COLUMNS, "landmark predictions")
    df["case_id"] = df["case_id"].astype(str)
    df["landmark"] = df["landmark"].astype(str)
    coords = ["pred_x", "pred_y", "pred_z", "gt_x", "gt_y", "gt_z", "error_mm"]
    df = numeric(df, coords)
    if df[coords].isna().any().any() or not np.isfinite(df[coords].to_numpy()).all():
        raise InputError(path, "missing or non-finite coordinates/errors")
    bad = sorted(set(df["backend"]) - set(BACKENDS))
    if bad:
        raise InputError(path, f"unknown backends: {', '.join(map(str, bad))}")
    bad = sorted(set(df["landmark"]) - set(labels))
    if bad:
        raise InputError(path, f"landmarks not in the dataset labels: {', '.join(bad)}")
    if df.duplicated(["case_id", "backend", "landmark"]).any():
        raise InputError(path, "duplicate (case_id, backend, landmark) rows")
    unknown = sorted(set(df["case_id"]) - set(splits["case_id"]))
    if unknown:
        raise InputError(path, f"cases not in splits.csv: {', '.join(unknown[:5])}")
    pred = df[["pred_x", "pred_y", "pred_z"]].to_numpy()[:, None, :]
    gt = df[["gt_x", "gt_y", "gt_z"]].to_numpy()[:, None, :]
    df["error_calc"] = radial_errors(pred, gt)[:, 0]
    worst = float(np.max(np.abs(df["error_calc"] - df["error_mm"])))
    if worst > ERROR_TOLERANCE_MM:
        raise InputError(path, f"error_mm disagrees with the coordinates by up to {worst:.3g} mm")
    index = {c: i for i, c in enumerate(dataset["case_id"])}
    lab = {name: i for i, name in enumerate(labels)}
    missing = sorted(set(df["case_id"]) - set(index))
    if missing:
        raise InputError(path, f"cases not in dataset.npz: {', '.join(missing[:5])}")
    ref = dataset["landmarks_mm"][
        df["case_id"].map(index).to_numpy(), df["landmark"].map(lab).to_numpy()
    ]
    gap = float(np.max(np.linalg.norm(ref - gt[:, 0], axis=1)))
    if gap > ERROR_TOLERANCE_MM:
        raise InputError(
            path, f"ground truth differs from dataset.npz landmarks_mm by up to {gap:.3g} mm"
        )
    test = set(splits.loc[splits["split"] == "test", "case_id"])
    df = df[df["case_id"].isin(test)].reset_index(drop=True)
    if df.empty:
        raise InputError(path, "no predictions for test-split cases")
    return df


def load_benchmark(path: Path, model: str) -> pd.DataFrame:
    """Read ``benchmark/<model>.csv``; numbers coerced, ``ok`` rows must have an FPS."""
    df = read_csv(path, BENCH_COLUMNS, "benchmark results")
    df = numeric(df, BENCH_NUMERIC)
    for c in ("backend", "precision", "mode", "status"):
        df[c] = df[c].astype(str).str.strip()
    df["model"] = model
    ok = df["status"] == "ok"
    if (ok & ~np.isfinite(df["fps"])).any():
        raise InputError(path, "rows with status ok but no fps")
    if df[["batch", "threads"]].isna().any().any():
        raise InputError(path, "batch and threads must be given on every row")
    return df


def load_perf(path: Path) -> pd.DataFrame:
    """Read ``benchmark/<model>_perf_counters.csv`` (may have no rows)."""
    df = read_csv(path, PERF_COLUMNS, "OpenVINO per-node counters", allow_empty=True)
    return numeric(df, ("time_ms", "share"))


def _size_mb(*paths: Path) -> float | None:
    if not all(p.is_file() for p in paths):
        return None
    return sum(p.stat().st_size for p in paths) / 1e6


def _parameter_count(bundle: Path) -> int | None:
    """Parameters in a model bundle's ``state_dict`` (buffers such as running stats excluded)."""
    if not bundle.is_file():
        return None
    try:
        import torch

        obj = torch.load(bundle, map_location="cpu", weights_only=True)
        state = obj["state_dict"]
        skip = ("running_mean", "running_var", "num_batches_tracked")
        return int(
            sum(
                v.numel()
                for k, v in state.items()
                if not k.endswith(skip) and v.is_floating_point()
            )
        )
    except Exception:  # noqa: BLE001 - optional information; any failure means "unknown"
        return None


def load_model(
    results_dir: Path,
    name: str,
    role: str | None,
    labels: Sequence[str],
    splits: pd.DataFrame,
    dataset: dict[str, np.ndarray],
) -> tuple[ModelArtefacts, list[Path]]:
    """Read one model's artefacts; InputError names the first missing or malformed one."""
    mdir = results_dir / "models" / name
    bdir = results_dir / "benchmark"
    p = {
        "predictions": mdir / "predictions.csv",
        "history": mdir / "history.csv",
        "parity": mdir / "export" / "parity.json",
        "quantization": mdir / "int8" / "quantization.json",
        "bench": bdir / f"{name}.csv",
        "perf": bdir / f"{name}_perf_counters.csv",
    }
    predictions = load_predictions(p["predictions"], labels, splits, dataset)
    history = numeric(read_csv(p["history"], HISTORY_COLUMNS, "training history"), HISTORY_COLUMNS)
    parity = read_json(p["parity"], "export parity")
    quantization = read_json(p["quantization"], "INT8 quantization summary")
    bench = load_benchmark(p["bench"], name)
    perf = load_perf(p["perf"])
    export = mdir / "export"
    sizes = {
        "onnx": _size_mb(export / "model.onnx"),
        "ir_fp32": _size_mb(export / "model_fp32.xml", export / "model_fp32.bin"),
        "ir_fp16": _size_mb(export / "model_fp16.xml", export / "model_fp16.bin"),
        "ir_int8": _size_mb(mdir / "int8" / "model_int8.xml", mdir / "int8" / "model_int8.bin"),
    }
    art = ModelArtefacts(
        name=name,
        role=role,
        predictions=predictions,
        history=history,
        parity=parity,
        quantization=quantization,
        bench=bench,
        perf=perf,
        sizes_mb=sizes,
        n_params=_parameter_count(mdir / "model.pt"),
    )
    return art, list(p.values())


def load_inputs(args: argparse.Namespace) -> ReportInputs:
    """Read and validate every input named on the command line.

    Args:
        args: the parsed ``ceph-report`` arguments (``results_dir``, ``models``,
            ``paper_models``, ``config_json``, ``seed``, ``dataset``, ``splits`` and the claim
            thresholds ``parity_tolerance``, ``int8_tolerance_mm``, ``noise_margin``,
            ``deconv_pair``, ``bn_pair``).

    Returns:
        The validated inputs.

    Raises:
        InputError: naming the first missing or malformed artefact.
    """
    results_dir = Path(args.results_dir)
    config = parse_config(args.config_json)
    dataset = load_dataset(Path(args.dataset))
    splits = load_splits(Path(args.splits))
    labels = list(dataset["labels"])
    roles = {args.paper_models[0]: "direct_regression", args.paper_models[1]: "hourglass"}
    sysinfo_path = results_dir / "benchmark" / f"{args.models[0]}_sysinfo.json"
    sysinfo = read_json(sysinfo_path, "benchmark system information")
    paths = [Path(args.dataset), Path(args.splits), sysinfo_path]
    models: dict[str, ModelArtefacts] = {}
    for name in dict.fromkeys(args.models):
        art, used = load_model(results_dir, name, roles.get(name), labels, splits, dataset)
        models[name] = art
        paths += used
    return ReportInputs(
        results_dir=results_dir,
        models=models,
        labels=labels,
        dataset=dataset,
        splits=splits,
        sysinfo=sysinfo,
        config=config,
        seed=args.seed,
        paths=paths,
        options={
            "parity_tolerance": args.parity_tolerance,
            "int8_tolerance_mm": args.int8_tolerance_mm,
            "noise_margin": args.noise_margin,
            "deconv_pair": tuple(args.deconv_pair),
            "bn_pair": tuple(args.bn_pair),
        },
    )
