"""Inputs of the cerebellum YOLO report: read and validate every artefact before anything is written.

Formats are those of ``docs/cerebellum_yolo.md``: per run ``models/<run>/checkpoints.csv``, the
stand-in pre-training histories, the best run's ``best.json``, ``deployment.csv``,
``predictions.csv``, ``int8/quantization.json``, ``export/parity.json``, the benchmark of the best
model, ``annotations/boxes.csv`` and ``preprocessed/dataset.npz``. The example predictions of
Figs. 5-8 are computed here too (each YOLO S run's ``model.pt`` on a few fixed test images), so
that a broken bundle fails before any output exists. A missing or malformed artefact raises
:class:`~medrepro.io.errors.InputError` naming the file.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medrepro.io.errors import InputError
from medrepro.report.cephalometry_inputs import load_benchmark
from medrepro.report.inputs import (
    number,
    parse_config,
    read_csv,
    read_json,
    read_json_numbers,
    require,
)

__all__ = [
    "ARCHS",
    "YOLO_ARCH",
    "TINY_ARCH",
    "CONFIGS",
    "REFERENCE",
    "CHECKPOINT_COLUMNS",
    "PRETRAIN_COLUMNS",
    "DEPLOYMENT_COLUMNS",
    "PREDICTION_COLUMNS",
    "BOX_COLUMNS",
    "QUANT_KEYS",
    "RunSpec",
    "Examples",
    "ReportInputs",
    "paper_block",
    "parse_runs",
    "load_checkpoints",
    "load_pretrain_history",
    "load_best",
    "load_deployment",
    "load_predictions",
    "load_boxes",
    "load_quantization",
    "load_parity",
    "choose_examples",
    "predict_top_boxes",
    "load_examples",
    "load_inputs",
]

#: the two architectures of the paper (registry keys of ``medrepro.nets``)
YOLO_ARCH = "yolov1"
TINY_ARCH = "tiny_yolov1"
ARCHS: tuple[str, ...] = (YOLO_ARCH, TINY_ARCH)
#: deployment configurations in display order (``yolo-evaluate``)
CONFIGS: tuple[str, ...] = ("pytorch_fp32", "openvino_fp32", "openvino_int8")
#: the configuration every other one is compared with
REFERENCE = "pytorch_fp32"

#: required columns of ``checkpoints.csv`` (``n_images`` is used when present)
CHECKPOINT_COLUMNS: tuple[str, ...] = ("iteration", "loss", "ap", "f1", "tp", "fp", "fn")
PRETRAIN_COLUMNS: tuple[str, ...] = ("iteration", "loss", "accuracy")
DEPLOYMENT_COLUMNS: tuple[str, ...] = ("config", "ap", "f1", "tp", "fp", "fn", "n_images")
PREDICTION_COLUMNS: tuple[str, ...] = (
    "config", "image_id", "cx", "cy", "w", "h", "conf", "gt_cx", "gt_cy", "gt_w", "gt_h", "iou",
)  # fmt: skip
BOX_COLUMNS: tuple[str, ...] = (
    "image_id", "volume_id", "split", "n_components", "cx", "cy", "w", "h", "empty",
)  # fmt: skip
#: numeric keys every ``quantization.json`` must have (deployment/quantize.py)
QUANT_KEYS: tuple[str, ...] = ("metric_fp32", "metric_int8", "drop", "max_drop")

_TRUE = {"true", "1", "yes", "t", "1.0"}
_FALSE = {"false", "0", "no", "f", "0.0"}
_CONFIG_SOURCE = Path("--config-json")


@dataclass(frozen=True)
class RunSpec:
    """One experiment run (``cerebellum_yolo.experiments.<name>``).

    Attributes:
        name: run name (directory under ``models/``).
        arch: ``yolov1`` or ``tiny_yolov1``.
        S: grid cells per side.
        pretrained: encoder initialised from the stand-in pre-training.
        lr: SGD learning rate.
        momentum: SGD momentum.
    """

    name: str
    arch: str
    S: int
    pretrained: bool
    lr: float
    momentum: float


@dataclass
class Examples:
    """Fixed test images of Figs. 5-8 with annotated and predicted boxes.

    Attributes:
        image_ids: the images shown, ``(K,)``.
        images: viridis RGB at the network input size, uint8 ``(K, H, W, 3)``.
        gt: annotated boxes ``(K, 4)`` normalised ``(cx, cy, w, h)``.
        predictions: row label -> ``(boxes (K, 4), conf (K,))`` top box per image; one row per
            YOLO S run (its best-AP ``model.pt``) and one for the deployed best model.
        iterations: row label -> the checkpoint (batches) shown, when known.
    """

    image_ids: list[str]
    images: np.ndarray
    gt: np.ndarray
    predictions: dict[str, tuple[np.ndarray, np.ndarray]]
    iterations: dict[str, int | None] = field(default_factory=dict)


@dataclass
class ReportInputs:
    """All validated inputs of the report.

    Attributes:
        results_dir: the paper's results directory (outputs go here unless ``--out-dir``).
        runs: run name -> its settings, in ``--runs`` order.
        checkpoints: run name -> ``checkpoints.csv`` sorted by iteration (numbers coerced).
        pretrain: arch -> stand-in pre-training ``history.csv``.
        best: ``models/best/best.json`` (``run``, ``iteration``, ``ap``).
        deployment: ``models/best/deployment.csv``.
        predictions: ``models/best/predictions.csv``.
        quantization: ``models/best/int8/quantization.json``.
        parity: ``models/best/export/parity.json``.
        bench: ``benchmark/best.csv`` (numbers coerced).
        sysinfo: ``benchmark/best_sysinfo.json``.
        boxes: ``annotations/boxes.csv`` (``empty`` bool).
        examples: Figs. 5-8 images and boxes, or ``None`` without annotated test images.
        config: the configuration as given.
        block: the ``cerebellum_yolo`` block, scale settings merged in.
        seed: the run's seed.
        paths: every file read (for provenance).
        options: thresholds of the claims.
    """

    results_dir: Path
    runs: dict[str, RunSpec]
    checkpoints: dict[str, pd.DataFrame]
    pretrain: dict[str, pd.DataFrame]
    best: dict[str, Any]
    deployment: pd.DataFrame
    predictions: pd.DataFrame
    quantization: dict[str, Any]
    parity: dict[str, Any]
    bench: pd.DataFrame
    sysinfo: dict[str, Any]
    boxes: pd.DataFrame
    examples: Examples | None
    config: dict[str, Any]
    block: dict[str, Any]
    seed: int | None
    paths: list[Path]
    options: dict[str, Any]

    def runs_of(self, arch: str, pretrained: bool | None = None) -> list[RunSpec]:
        """Runs of ``arch`` (optionally only pre-trained or only from scratch), sorted by S."""
        sel = [
            r
            for r in self.runs.values()
            if r.arch == arch and (pretrained is None or r.pretrained == pretrained)
        ]
        return sorted(sel, key=lambda r: (r.S, r.lr, r.momentum, r.name))


def _numbers(df: pd.DataFrame, path: Path, columns: Sequence[str], finite: bool = True) -> None:
    """Coerce ``columns`` to float in place; non-numbers (and NaN if ``finite``) are errors."""
    for c in columns:
        raw = df[c]
        df[c] = pd.to_numeric(raw, errors="coerce")
        bad = df[c].isna() & raw.notna()
        if bad.any():
            raise InputError(path, f"column {c}: not a number: {raw[bad].iloc[0]!r}")
        if finite and not np.isfinite(df[c].to_numpy(dtype=float)).all():
            raise InputError(path, f"column {c}: missing or infinite values")


def _in_unit(df: pd.DataFrame, path: Path, columns: Sequence[str]) -> None:
    for c in columns:
        x = df[c].to_numpy(dtype=float)
        x = x[np.isfinite(x)]
        if ((x < -1e-9) | (x > 1 + 1e-9)).any():
            raise InputError(path, f"column {c}: values must lie in [0, 1]")


def _counts(df: pd.DataFrame, path: Path, columns: Sequence[str]) -> None:
    for c in columns:
        x = df[c].to_numpy(dtype=float)
        if (x < 0).any() or (np.abs(x - np.round(x)) > 1e-9).any():
            raise InputError(path, f"column {c}: counts must be integers >= 0")


def _as_bool(value: Any, path: Path, what: str) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InputError(path, f"{what}: not a boolean: {value!r}")


def paper_block(config: dict[str, Any]) -> dict[str, Any]:
    """The ``cerebellum_yolo`` block with the settings of its scale merged in.

    ``config`` may be the whole pipeline configuration (``cerebellum_yolo`` and ``scale``) or the
    block itself (already merged or with ``scales``). A scale's ``experiments`` list (the runs
    done at that scale) never replaces the block's ``experiments`` mapping; it is kept as
    ``experiments_run``. The result has a ``scale`` key (``None`` if unknown).
    """
    block = config.get("cerebellum_yolo", config)
    if not isinstance(block, dict):
        return {"scale": config.get("scale")}
    scale = config.get("scale", block.get("scale"))
    merged = {k: v for k, v in block.items() if k != "scales"}
    scales = block.get("scales")
    if isinstance(scales, dict) and isinstance(scales.get(scale), dict):
        for key, val in scales[scale].items():
            if key == "experiments" and not isinstance(val, dict):
                merged["experiments_run"] = val
            else:
                merged[key] = val
    merged["scale"] = scale
    return merged


def _run_spec(name: str, spec: Any) -> RunSpec:
    if not isinstance(spec, dict):
        raise InputError(_CONFIG_SOURCE, f"experiments.{name}: expected a mapping")
    missing = [k for k in ("arch", "S", "pretrained", "lr", "momentum") if k not in spec]
    if missing:
        raise InputError(_CONFIG_SOURCE, f"experiments.{name}: missing {', '.join(missing)}")
    arch = str(spec["arch"])
    if arch not in ARCHS:
        raise InputError(_CONFIG_SOURCE, f"experiments.{name}: unknown arch {arch!r}")
    s, lr, mom = spec["S"], number(spec["lr"]), number(spec["momentum"])
    if isinstance(s, bool) or not isinstance(s, int) or s < 1:
        raise InputError(_CONFIG_SOURCE, f"experiments.{name}: S must be an integer >= 1")
    if not lr > 0 or not 0 <= mom < 1:
        raise InputError(_CONFIG_SOURCE, f"experiments.{name}: need lr > 0 and 0 <= momentum < 1")
    return RunSpec(name, arch, int(s), _as_bool(spec["pretrained"], _CONFIG_SOURCE, name), lr, mom)


def parse_runs(block: dict[str, Any], names: Sequence[str]) -> dict[str, RunSpec]:
    """Settings of the runs named on the command line, from ``block["experiments"]``.

    Raises:
        InputError: (``--config-json``) no experiments mapping, an unknown or repeated run, or
            an invalid setting.
    """
    experiments = block.get("experiments")
    if not isinstance(experiments, dict):
        raise InputError(_CONFIG_SOURCE, "cerebellum_yolo.experiments must be a mapping")
    if not names:
        raise InputError(Path("--runs"), "no runs given")
    runs: dict[str, RunSpec] = {}
    for name in names:
        if name in runs:
            raise InputError(Path("--runs"), f"run {name!r} given twice")
        if name not in experiments:
            raise InputError(_CONFIG_SOURCE, f"run {name!r} is not in cerebellum_yolo.experiments")
        runs[name] = _run_spec(name, experiments[name])
    return runs


def load_checkpoints(path: Path) -> pd.DataFrame:
    """Read one run's ``checkpoints.csv``, sorted by iteration.

    Checks: iterations unique integers >= 1, AP and F1 in [0, 1], TP/FP/FN counts >= 0.
    """
    df = read_csv(path, CHECKPOINT_COLUMNS, "per-checkpoint test scores")
    _numbers(df, path, [c for c in CHECKPOINT_COLUMNS if c != "loss"])
    _numbers(df, path, ["loss"], finite=False)
    if "n_images" in df.columns:
        _numbers(df, path, ["n_images"])
    _in_unit(df, path, ("ap", "f1"))
    _counts(df, path, ("iteration", "tp", "fp", "fn"))
    if (df["iteration"] < 1).any():
        raise InputError(path, "iteration must be >= 1")
    if df["iteration"].duplicated().any():
        raise InputError(path, f"duplicate iteration {int(df['iteration'][df['iteration'].duplicated()].iloc[0])}")  # fmt: skip
    df["iteration"] = df["iteration"].astype(int)
    return df.sort_values("iteration").reset_index(drop=True)


def load_pretrain_history(path: Path) -> pd.DataFrame:
    """Read a stand-in pre-training ``history.csv`` (iteration, loss, accuracy in [0, 1])."""
    df = read_csv(path, PRETRAIN_COLUMNS, "stand-in pre-training history")
    _numbers(df, path, PRETRAIN_COLUMNS, finite=False)
    _in_unit(df, path, ("accuracy",))
    return df.sort_values("iteration").reset_index(drop=True)


def load_best(path: Path, runs: dict[str, RunSpec]) -> dict[str, Any]:
    """Read ``best.json``; its run must be one of the YOLOv1 runs given."""
    obj = read_json(path, "best YOLO run")
    run = obj.get("run")
    if not isinstance(run, str) or run not in runs:
        raise InputError(path, f"run {run!r} is not one of the runs given ({', '.join(runs)})")
    if runs[run].arch != YOLO_ARCH:
        raise InputError(path, f"run {run!r} is not a YOLOv1 run")
    ap, it = number(obj.get("ap")), number(obj.get("iteration"))
    if math.isnan(ap) or not 0 <= ap <= 1 or math.isnan(it):
        raise InputError(path, "ap (in [0, 1]) and iteration must be numbers")
    return {**obj, "ap": ap, "iteration": int(it)}


def load_deployment(path: Path) -> pd.DataFrame:
    """Read ``deployment.csv`` (one row per configuration; ``pytorch_fp32`` required)."""
    df = read_csv(path, DEPLOYMENT_COLUMNS, "deployment scores")
    df["config"] = df["config"].astype(str).str.strip()
    _numbers(df, path, DEPLOYMENT_COLUMNS[1:])
    _in_unit(df, path, ("ap", "f1"))
    _counts(df, path, ("tp", "fp", "fn", "n_images"))
    unknown = sorted(set(df["config"]) - set(CONFIGS))
    if unknown:
        raise InputError(path, f"unknown configuration(s): {', '.join(unknown)}")
    if df["config"].duplicated().any():
        raise InputError(path, "duplicate configuration rows")
    if not (df["config"] == REFERENCE).any():
        raise InputError(path, f"no {REFERENCE} row (the reference of every comparison)")
    order = {c: i for i, c in enumerate(CONFIGS)}
    return df.sort_values("config", key=lambda s: s.map(order)).reset_index(drop=True)


def load_predictions(path: Path) -> pd.DataFrame:
    """Read the best model's per-image ``predictions.csv`` (boxes may be NaN: no box / no object)."""
    df = read_csv(path, PREDICTION_COLUMNS, "per-image predictions")
    df["config"] = df["config"].astype(str).str.strip()
    df["image_id"] = df["image_id"].astype(str)
    _numbers(df, path, PREDICTION_COLUMNS[2:], finite=False)
    if df.duplicated(["config", "image_id"]).any():
        raise InputError(path, "duplicate (config, image_id) rows")
    return df


def load_boxes(path: Path) -> pd.DataFrame:
    """Read ``annotations/boxes.csv``; non-empty rows need a box inside the unit square."""
    df = read_csv(path, BOX_COLUMNS, "annotation boxes")
    df["image_id"] = df["image_id"].astype(str)
    df["volume_id"] = df["volume_id"].astype(str)
    df["split"] = df["split"].astype(str).str.strip()
    df["empty"] = [_as_bool(v, path, "column empty") for v in df["empty"]]
    _numbers(df, path, ("n_components",))
    _numbers(df, path, ("cx", "cy", "w", "h"), finite=False)
    if df["image_id"].duplicated().any():
        raise InputError(path, f"duplicate image_id {df['image_id'][df['image_id'].duplicated()].iloc[0]}")  # fmt: skip
    full = df.loc[~df["empty"], ["cx", "cy", "w", "h"]].to_numpy(dtype=float)
    if full.size and (~np.isfinite(full).all() or (full < 0).any() or (full > 1 + 1e-9).any()):
        raise InputError(path, "non-empty rows need cx, cy, w, h in [0, 1]")
    return df


def load_quantization(path: Path) -> dict[str, Any]:
    """Read ``int8/quantization.json``; the keys of :data:`QUANT_KEYS` must be numbers."""
    return read_json_numbers(path, "INT8 quantization summary", QUANT_KEYS)


def load_parity(path: Path) -> dict[str, Any]:
    """Read ``export/parity.json``; ``openvino_fp32`` must be a max abs difference >= 0."""
    obj = read_json(path, "export parity")
    diff = number(obj.get("openvino_fp32"))
    if math.isnan(diff) or diff < 0:
        raise InputError(path, f"openvino_fp32: expected a number >= 0, got {obj.get('openvino_fp32')!r}")  # fmt: skip
    return obj


def choose_examples(boxes: pd.DataFrame, k: int = 3) -> list[str]:
    """``k`` fixed test images for Figs. 5-8: evenly spaced among the annotated test images.

    Images are sorted by ``image_id``, so the choice depends only on the annotations.
    """
    test = boxes[(boxes["split"] == "test") & ~boxes["empty"]].sort_values("image_id")
    ids = list(test["image_id"])
    if not ids or k < 1:
        return []
    idx = np.unique(np.round(np.linspace(0, len(ids) - 1, min(k, len(ids)))).astype(int))
    return [ids[i] for i in idx]


def predict_top_boxes(bundle: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-confidence box per image from a detector bundle.

    Args:
        bundle: a ``model.pt`` written by ``yolo-train`` (``output_kind="yolo"``,
            ``extra={"S", "B", "C"}``).
        images: uint8 ``(K, H, W, 3)`` viridis RGB; resized as in training
            (:func:`medrepro.training.detection.network_batch`) to the bundle's input size if it
            differs (boxes are normalised, so they are unaffected).

    Returns:
        ``(boxes (K, 4) normalised cx, cy, w, h; conf (K,))``.

    Raises:
        InputError: if the bundle cannot be loaded or run.
    """
    import torch

    from medrepro.nets.bundle import load_bundle
    from medrepro.training.detection import network_batch
    from medrepro.transforms.yolo_grid import decode_top_box

    try:
        model, meta = load_bundle(bundle)
    except Exception as err:  # noqa: BLE001 - any failure to rebuild is bad input
        raise InputError(bundle, f"cannot load the model bundle: {err}") from None
    shape = meta.get("input_shape") or []
    size = int(shape[-1]) if len(shape) == 4 else int(images.shape[1])
    # the same conversion and resize as training and evaluation (yolo-train, yolo-evaluate)
    x = torch.from_numpy(network_batch(images, size))
    B = int((meta.get("extra") or {}).get("B", 2))
    try:
        with torch.no_grad():
            raw = model(x).detach().cpu().numpy()
    except Exception as err:  # noqa: BLE001
        raise InputError(bundle, f"the model failed on the example images: {err}") from None
    boxes, conf = decode_top_box(raw, B)
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(conf, dtype=np.float64)


def _best_row(ck: pd.DataFrame) -> pd.Series:
    """The best-AP checkpoint (ties: the earlier)."""
    return ck.loc[ck["ap"].idxmax()]


def load_examples(
    results_dir: Path,
    runs: dict[str, RunSpec],
    checkpoints: dict[str, pd.DataFrame],
    boxes: pd.DataFrame,
    predictions: pd.DataFrame,
    best: dict[str, Any],
    k: int,
) -> tuple[Examples | None, list[Path]]:
    """Figs. 5-8: the fixed test images, their annotations and the predictions to draw.

    Rows: each pre-trained YOLOv1 run (sorted by S), predicted by its ``model.pt``; then the
    deployed best model, from ``predictions.csv`` (OpenVINO INT8 if present, else PyTorch FP32).

    Returns:
        ``(examples or None, files read)``.
    """
    ids = choose_examples(boxes, k)
    path = results_dir / "preprocessed" / "dataset.npz"
    if not ids:
        return None, []
    require(path, "dataset with the network inputs")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "images" not in npz or "image_id" not in npz:
                raise InputError(path, "needs arrays images and image_id")
            all_ids = [str(s) for s in npz["image_id"]]
            images = npz["images"]
    except (OSError, ValueError) as err:
        raise InputError(path, f"not a readable npz: {err}") from None
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise InputError(path, f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")  # fmt: skip
    if len(all_ids) != images.shape[0]:
        raise InputError(path, "images and image_id differ in length")
    pos = {s: i for i, s in enumerate(all_ids)}
    missing = [s for s in ids if s not in pos]
    if missing:
        raise InputError(
            path, f"test image {missing[0]} of annotations/boxes.csv not in the dataset"
        )
    sel = images[[pos[s] for s in ids]]
    gt = boxes.set_index("image_id").loc[ids, ["cx", "cy", "w", "h"]].to_numpy(dtype=np.float64)
    preds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    iterations: dict[str, int | None] = {}
    read = [path]
    for spec in sorted(
        (r for r in runs.values() if r.arch == YOLO_ARCH and r.pretrained), key=lambda r: r.S
    ):
        bundle = require(results_dir / "models" / spec.name / "model.pt", f"best checkpoint of {spec.name}")  # fmt: skip
        b, c = predict_top_boxes(bundle, sel)
        if b.shape != (len(ids), 4) or c.shape != (len(ids),):
            raise InputError(bundle, f"decoded boxes of shape {b.shape}, expected ({len(ids)}, 4)")
        label = f"S={spec.S} ({spec.name})"
        preds[label] = (b, c)
        iterations[label] = int(_best_row(checkpoints[spec.name])["iteration"])
        read.append(bundle)
    configs = set(predictions["config"])
    config = "openvino_int8" if "openvino_int8" in configs else REFERENCE
    rows = predictions[predictions["config"] == config].set_index("image_id")
    if config in configs:
        b = np.full((len(ids), 4), np.nan)
        c = np.full(len(ids), np.nan)
        for i, s in enumerate(ids):
            if s in rows.index:
                b[i] = rows.loc[s, ["cx", "cy", "w", "h"]].to_numpy(dtype=float)
                c[i] = float(rows.loc[s, "conf"])
        label = f"best {best['run']}, {config}"
        preds[label] = (b, c)
        iterations[label] = int(best["iteration"])
    return Examples(ids, sel, gt, preds, iterations), read


def load_inputs(args: argparse.Namespace) -> ReportInputs:
    """Read and validate every input named on the command line.

    Args:
        args: the parsed ``yolo-report`` arguments (see
            :func:`medrepro.report.cerebellum_yolo.build_parser`).

    Returns:
        The validated inputs.

    Raises:
        InputError: naming the first missing or malformed artefact.
    """
    results_dir = Path(args.results_dir)
    config = parse_config(args.config_json)
    block = paper_block(config)
    runs = parse_runs(block, list(args.runs))
    mdir = results_dir / "models"
    paths: list[Path] = []
    checkpoints = {}
    for name in runs:
        p = mdir / name / "checkpoints.csv"
        checkpoints[name] = load_checkpoints(p)
        paths.append(p)
    pretrain = {}
    for arch in sorted({r.arch for r in runs.values() if r.pretrained}):
        p = mdir / f"pretrained_{arch}" / "history.csv"
        pretrain[arch] = load_pretrain_history(p)
        paths.append(p)
    bdir = mdir / "best"
    p = {
        "best": bdir / "best.json",
        "deployment": bdir / "deployment.csv",
        "predictions": bdir / "predictions.csv",
        "quantization": bdir / "int8" / "quantization.json",
        "parity": bdir / "export" / "parity.json",
        "bench": results_dir / "benchmark" / "best.csv",
        "sysinfo": results_dir / "benchmark" / "best_sysinfo.json",
        "boxes": results_dir / "annotations" / "boxes.csv",
    }
    best = load_best(p["best"], runs)
    deployment = load_deployment(p["deployment"])
    predictions = load_predictions(p["predictions"])
    quantization = load_quantization(p["quantization"])
    parity = load_parity(p["parity"])
    bench = load_benchmark(require(p["bench"], "benchmark results"), "best")
    sysinfo = read_json(p["sysinfo"], "benchmark system information")
    boxes = load_boxes(p["boxes"])
    paths += list(p.values())
    examples, read = load_examples(
        results_dir, runs, checkpoints, boxes, predictions, best, int(args.n_examples)
    )
    paths += read
    quant = block.get("quantization") if isinstance(block.get("quantization"), dict) else {}
    max_drop = number(quant.get("max_drop"))
    if math.isnan(max_drop):
        max_drop = float(quantization["max_drop"])
    conf = number(block.get("conf_threshold"))
    options = {
        "conf_threshold": 0.25 if math.isnan(conf) else conf,
        "max_drop": max_drop,
        "noise_margin": float(args.noise_margin),
        "identical_ap": float(args.identical_ap),
        "far_margin": float(args.far_margin),
        "high_f1": float(args.high_f1),
        "near_peak": float(args.near_peak),
        "fp_trend_rho": float(args.fp_trend_rho),
        "n_examples": int(args.n_examples),
    }
    return ReportInputs(
        results_dir=results_dir,
        runs=runs,
        checkpoints=checkpoints,
        pretrain=pretrain,
        best=best,
        deployment=deployment,
        predictions=predictions,
        quantization=quantization,
        parity=parity,
        bench=bench,
        sysinfo=sysinfo,
        boxes=boxes,
        examples=examples,
        config=config,
        block=block,
        seed=args.seed,
        paths=paths,
        options=options,
    )
